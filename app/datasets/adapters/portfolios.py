"""`portfolios`: portfolio_id, name, policy, account + optional base_currency, custodian.

Reference data: ``as_of`` is not required (it defaults to the load's date). A portfolio's
current record is its newest one at a data version: a later load supersedes (like issuers).
* ``portfolio_id``: a token, by the rules of issuer ids (1-64 of letters, digits, . _ : -);
  once per file.
* ``policy``: the key of a policy that exists (any status, a draft too), the house policy or
  a client overlay; an unknown key is a row error listing the known ones.
* ``account``: ``own`` (the house's own account) or ``client``.
* ``base_currency``: ISO 4217 (upper-cased); the currency of its holdings' market values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pycountry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import MAX_ROW_ERRORS, Adapter, LoadContext, duplicate_errors
from app.datasets.adapters.list_entries import POLICY_KEY, unknown_policy_message
from app.datasets.csvfile import CellError, CsvRow
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.vocabulary import ACCOUNTS
from app.models import PortfolioRecord
from app.policies.repository import policy_rule_ids

# The rules of issuer ids (``issuers.issuer_id_cell``).
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")


def portfolio_id_cell(column: str, raw: str) -> str:
    if not _ID.match(raw):
        raise CellError(
            column, f"{raw!r} is not a valid portfolio id (1-64 of letters, digits, . _ : -)"
        )
    return raw


def currency_cell(column: str, raw: str) -> str:
    """An ISO 4217 currency code, upper-cased; anything else is a row error naming it."""
    code = raw.strip().upper()
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise CellError(column, f"{raw!r} is not an ISO 4217 currency code (e.g. EUR, USD)")
    return code


class PortfoliosAdapter(Adapter):
    kind = DatasetKind.portfolios
    target = PortfolioRecord
    required_columns = ("portfolio id", "name", "policy", "account")
    default_provider = "internal"
    as_of_required = False
    stage_columns = (
        ("portfolio_id", str),
        ("name", str),
        ("policy_key", str),
        ("account", str),
        ("base_currency", str),
        ("custodian", str),
    )
    column_labels = {"policy_key": "policy"}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        portfolio_id = portfolio_id_cell("portfolio_id", row.require("portfolio id"))
        policy = row.require("policy")
        if not POLICY_KEY.match(policy):
            raise CellError("policy", f"{policy!r} is not a policy key (e.g. rpf, dk-pension)")
        account = row.require("account").lower()
        if account not in ACCOUNTS:
            raise CellError(
                "account",
                f"{account!r} is not an account type: one of {', '.join(ACCOUNTS)} (own: the "
                "house's own account; client: client money)",
            )
        currency = row.get("base currency")
        return [
            (
                portfolio_id,
                row.require("name"),
                policy,
                account,
                currency_cell("base_currency", currency) if currency else None,
                row.get("custodian") or None,
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(conn, stage, ["portfolio_id"], "portfolio_id")
        known = await policy_rule_ids(conn)
        unknown = (
            select(stage.c.source_row, stage.c.policy_key)
            .where(stage.c.policy_key.not_in(sorted(known)))
            .order_by(stage.c.source_row)
            .limit(MAX_ROW_ERRORS)
        )
        errors += [
            FieldError.in_file(row, "policy", unknown_policy_message(policy, known))
            for row, policy in await conn.execute(unknown)
        ]
        return errors
