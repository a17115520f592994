"""`issuers`: issuer_id, name, kind, country + optional identifiers, parent and state owner."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    MAX_ROW_ERRORS,
    Adapter,
    LoadContext,
    country_cell,
    duplicate_errors,
)
from app.datasets.csvfile import CellError, CsvRow, parse_percent
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.identifiers import InvalidIdentifier, normalize_lei
from app.kit.vocabulary import IssuerKind
from app.models import IssuerRecord

ISSUER_KINDS = tuple(k.value for k in IssuerKind)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")


def issuer_id_cell(column: str, raw: str) -> str:
    if not _ID.match(raw):
        raise CellError(
            column, f"{raw!r} is not a valid issuer id (1-64 of letters, digits, . _ : -)"
        )
    return raw


class IssuersAdapter(Adapter):
    kind = DatasetKind.issuers
    target = IssuerRecord
    required_columns = ("issuer id", "name", "kind", "country")
    default_provider = "internal"
    as_of_required = False
    stage_columns = (
        ("issuer_id", str),
        ("name", str),
        ("kind", str),
        ("country", str),
        ("lei", str),
        ("parent_issuer_id", str),
        ("parent_control_pct", str),
        ("state_owner_country", str),
        ("state_owner_pct", str),
        ("msci_issuer_id", str),
        ("sustainalytics_entity_id", str),
    )

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        issuer_id = issuer_id_cell("issuer_id", row.require("issuer id"))
        kind = row.require("kind").lower()
        if kind not in ISSUER_KINDS:
            raise CellError("kind", f"{kind!r} is not one of {', '.join(ISSUER_KINDS)}")
        lei = row.get("lei")
        if lei:
            try:
                lei = normalize_lei(lei)
            except InvalidIdentifier as exc:
                raise CellError("lei", str(exc)) from None
        parent = row.get("parent issuer id")
        control = row.get("parent control pct")
        if parent:
            parent = issuer_id_cell("parent_issuer_id", parent)
            if parent == issuer_id:
                raise CellError("parent_issuer_id", "an issuer cannot be its own parent")
        elif control:
            raise CellError("parent_control_pct", "a control percentage needs a parent_issuer_id")
        owner = row.get("state owner country")
        owner_pct = row.get("state owner pct")
        if bool(owner) != bool(owner_pct):
            raise CellError(
                "state_owner_pct" if owner else "state_owner_country",
                "state_owner_country and state_owner_pct go together: give both or neither",
            )
        return [
            (
                issuer_id,
                row.require("name"),
                kind,
                country_cell("country", row.require("country")),
                lei or None,
                parent or None,
                _pct("parent_control_pct", control),
                country_cell("state_owner_country", owner) if owner else None,
                _pct("state_owner_pct", owner_pct),
                row.get("msci issuer id") or None,
                row.get("sustainalytics entity id") or None,
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(conn, stage, ["issuer_id"], "issuer_id")
        # Known: loaded before, or in this file. NOT EXISTS (anti-joins) rather than NOT IN,
        # whose hashed subplan turns quadratic once the issuers outgrow work_mem.
        this_file = stage.alias("this_file")
        orphans = (
            select(stage.c.source_row, stage.c.parent_issuer_id)
            .where(stage.c.parent_issuer_id.is_not(None))
            .where(~exists().where(IssuerRecord.issuer_id == stage.c.parent_issuer_id))
            .where(~exists().where(this_file.c.issuer_id == stage.c.parent_issuer_id))
            .order_by(stage.c.source_row)
            .limit(MAX_ROW_ERRORS)
        )
        errors += [
            FieldError.in_file(
                row, "parent_issuer_id", f"unknown parent issuer {parent!r}: load it first"
            )
            for row, parent in (await conn.execute(orphans)).all()
        ]
        return errors


def _pct(column: str, raw: str) -> str | None:
    if not raw:
        return None
    return format(parse_percent(column, raw).normalize(), "f")
