"""`fund-holdings`: fund_isin, holding_ref, weight_pct + optional as_of (look-through).

Decisions (contract, "Portfolios and holdings"; domain, "Look-through"):
* A load is the complete composition of every fund it names, as of its date: one
  ``fund_compositions`` row per (load, fund), like a holdings report. A row's ``as_of``
  defaults to the load's as_of (else the load's date); all rows of one fund in a load share one
  as_of (a composition has one date). No date is in the future (``provider_date``). Which
  composition is a fund's on a day, as known at a data version, is the newest-dated one (ties:
  the later load) loaded by then and dated on or before that day: an older-dated composition
  loaded later never supersedes a newer one. An index is a composition too (its ISIN as
  ``fund_isin``): an index derivative looks through it.
* ``fund_isin``: a valid ISIN (a wrong check digit is a row error naming it). It need not be
  a known instrument (an index has no instrument record).
* ``holding_ref``: an ISIN (stored normalized) or any issuer reference (issuer id, LEI, MSCI
  ISSUERID, Sustainalytics EntityId), stored as given: it is resolved when a snapshot is read,
  so a constituent loaded later connects, and one never loaded is unknown (uncovered weight).
* ``weight_pct``: the constituent's share of the fund, a decimal from 0 to 100, stored exactly.
  A fund's weights may sum to less than 100 (cash, what the fund does not disclose: uncovered
  weight) but not to more than 100 + ``SUM_TOLERANCE`` (0.01 percentage point, for the
  rounding of published weights): more is a row error on the fund's last row.
* A (fund_isin, holding_ref) appears once per file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    MAX_ROW_ERRORS,
    Adapter,
    LoadContext,
    duplicate_errors,
    one_date_errors,
    provider_date,
)
from app.datasets.csvfile import CellError, CsvRow, parse_date
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.identifiers import InvalidIdentifier, normalize_isin
from app.models import FundComposition, FundHolding

# Published weights are rounded: a composition may sum to this much above 100.
SUM_TOLERANCE = Decimal("0.01")
_SMALLEST_EXPONENT = -12
_MAX_REF = 64


def weight_cell(column: str, raw: str) -> Decimal:
    """A weight in percent: a decimal from 0 to 100 inclusive, exact."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise CellError(column, f"{raw!r} is not a number") from None
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
        raise CellError(column, f"{raw!r} is not a percentage from 0 to 100")
    value = value.normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < _SMALLEST_EXPONENT:
        raise CellError(column, f"{raw!r} has more than {-_SMALLEST_EXPONENT} decimals")
    return value


@lru_cache(maxsize=1 << 16)
def _isin_or_error(raw: str) -> str | InvalidIdentifier:
    """Normalized, or why not (cached: a file names the same funds and holdings many times)."""
    try:
        return normalize_isin(raw)
    except InvalidIdentifier as exc:
        return exc


def holding_ref_cell(column: str, raw: str) -> str:
    """An ISIN (normalized) when the text is one, else the issuer reference as given."""
    if len(raw) > _MAX_REF:
        raise CellError(column, f"is longer than {_MAX_REF} characters")
    found = _isin_or_error(raw)
    return raw if isinstance(found, InvalidIdentifier) else found


def _text(value: Decimal) -> str:
    return format(value, "f")


class FundHoldingsAdapter(Adapter):
    kind = DatasetKind.fund_holdings
    target = FundHolding
    required_columns = ("fund isin", "holding ref", "weight pct")
    default_provider = "internal"
    as_of_required = False
    stage_columns = (
        ("fund_isin", str),
        ("holding_ref", str),
        ("weight_pct", str),
        ("as_of", dt.date),
    )

    def __init__(self) -> None:
        # Per fund: the exact sum of its weights so far and its last row (parse sees every row
        # of the file before ``check``).
        self._sums: dict[str, tuple[Decimal, int]] = {}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        fund = _isin_or_error(row.require("fund isin"))
        if isinstance(fund, InvalidIdentifier):
            raise CellError("fund_isin", str(fund)) from None
        ref = holding_ref_cell("holding_ref", row.require("holding ref"))
        weight = weight_cell("weight_pct", row.require("weight pct"))
        as_of = row.get("as of")
        assert ctx.dated is not None
        total, _ = self._sums.get(fund, (Decimal(0), 0))
        self._sums[fund] = (total + weight, row.number)
        return [
            (
                fund,
                ref,
                _text(weight),
                provider_date("as_of", parse_date("as_of", as_of), ctx) if as_of else ctx.dated,
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(
            conn, stage, ["fund_isin", "holding_ref"], "fund_isin and holding_ref"
        )
        errors += await one_date_errors(conn, stage, "fund_isin", "the composition of fund {key}")
        limit = Decimal(100) + SUM_TOLERANCE
        errors += [
            FieldError.in_file(
                last,
                "weight_pct",
                f"the weights of fund {fund} sum to {_text(total)} %, above 100 % (tolerance "
                f"{_text(SUM_TOLERANCE)}): a composition is at most the whole fund",
            )
            for fund, (total, last) in sorted(self._sums.items(), key=lambda i: i[1][1])
            if total > limit
        ][:MAX_ROW_ERRORS]
        return errors

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        columns = ["source_row", "fund_isin", "holding_ref", "weight_pct"]
        await conn.execute(
            insert(FundHolding).from_select(
                ["dataset_id", *columns],
                select(literal(dataset_id), *(stage.c[c] for c in columns)),
            )
        )
        # One composition per fund the file names (its rows share one as_of: checked); the
        # summed weight computed exactly while parsing.
        dates = select(stage.c.fund_isin, func.min(stage.c.as_of), func.count()).group_by(
            stage.c.fund_isin
        )
        rows = [
            {
                "dataset_id": dataset_id,
                "fund_isin": fund,
                "as_of": as_of,
                "constituents": count,
                "weight_pct": self._sums[fund][0],
            }
            for fund, as_of, count in (await conn.execute(dates)).all()
        ]
        if rows:
            await conn.execute(insert(FundComposition), rows)
