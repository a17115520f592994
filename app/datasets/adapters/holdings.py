"""`holdings`: portfolio_id, isin, quantity, market_value + optional currency, as_of, position.

Decisions (contract, "Portfolios and holdings"):
* A load is the complete position report of every portfolio it names, as of its date (a
  custodian's statement): one ``holdings_reports`` row per (load, portfolio). A row's
  ``as_of`` defaults to the load's as_of (else the load's date); all rows of one portfolio in
  a load must share one as_of (a report has one date). No date is in the future
  (``provider_date``). Which report is a portfolio's holdings on a day, as known at a data
  version, is the newest-dated one (ties: the later load) loaded by then and dated on or
  before that day: an older-dated report loaded later never supersedes a newer one.
* ``portfolio_id`` names a portfolio known at this data version (loaded by an earlier
  ``portfolios`` load); a portfolio that holds nothing cannot be stated by a row.
* ``isin``: a valid ISIN (``normalize_isin``: a wrong check digit is a row error naming it).
  It need not be a known instrument: a custodian's statement holds what it holds (a check
  then says unknown about it).
* ``quantity``: a required decimal. ``market_value``: a decimal in the portfolio's base
  currency; the cell may be empty (stored NULL: position limits then say unknown, naming the
  row).
* ``position``: ``long`` (default) or ``short``. A long's quantity and market_value are >= 0
  (a negative one is a row error: a short position must say position=short); a short's are
  <= 0 (custodians report shorts signed negative).
* ``currency``: optional ISO 4217. When the portfolio has a base_currency, a row in another
  currency is a row error (market values in mixed currencies are never added up silently);
  without a base_currency, all rows of one portfolio in a load must name the same currency.
  Stored as the row gives it (NULL when empty).
* A (portfolio_id, isin, position) appears once per file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Table, and_, exists, func, insert, literal, select
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
from app.datasets.adapters.portfolios import currency_cell, portfolio_id_cell
from app.datasets.csvfile import CellError, CsvRow, parse_date
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.identifiers import InvalidIdentifier, normalize_isin
from app.models import Holding, HoldingsReport, PortfolioRecord

POSITIONS = ("long", "short")
# Quantities and values beyond these are a damaged file, not a position.
_LARGEST = Decimal("1e20")
_SMALLEST_EXPONENT = -12


def amount_cell(column: str, raw: str) -> Decimal:
    """A quantity or a market value: a finite decimal, as exact text (``DecimalText``)."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise CellError(column, f"{raw!r} is not a number") from None
    if not value.is_finite() or abs(value) >= _LARGEST:
        raise CellError(column, f"{raw!r} is not a number of at most 20 digits")
    value = value.normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < _SMALLEST_EXPONENT:
        raise CellError(column, f"{raw!r} has more than {-_SMALLEST_EXPONENT} decimals")
    return value


def _text(value: Decimal) -> str:
    return format(value, "f")


class HoldingsAdapter(Adapter):
    kind = DatasetKind.holdings
    target = Holding
    required_columns = ("portfolio id", "isin", "quantity", "market value")
    default_provider = "internal"
    as_of_required = False
    stage_columns = (
        ("portfolio_id", str),
        ("isin", str),
        ("quantity", str),
        ("market_value", str),
        ("currency", str),
        ("position", str),
        ("as_of", dt.date),
    )

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        portfolio_id = portfolio_id_cell("portfolio_id", row.require("portfolio id"))
        try:
            isin = normalize_isin(row.require("isin"))
        except InvalidIdentifier as exc:
            raise CellError("isin", str(exc)) from None
        position = (row.get("position") or "long").lower()
        if position not in POSITIONS:
            raise CellError("position", f"{position!r} is not one of {', '.join(POSITIONS)}")
        quantity = amount_cell("quantity", row.require("quantity"))
        raw_value = row.get("market value")
        market_value = amount_cell("market_value", raw_value) if raw_value else None
        for column, value in (("quantity", quantity), ("market_value", market_value)):
            if value is None:
                continue
            if position == "long" and value < 0:
                raise CellError(
                    column,
                    f"{_text(value)} is negative on a long position: a short position must "
                    "say position=short",
                )
            if position == "short" and value > 0:
                raise CellError(
                    column,
                    f"{_text(value)} is positive on a short position: a short's quantity and "
                    "market_value are negative (or zero), as custodians report them",
                )
        currency = row.get("currency")
        as_of = row.get("as of")
        assert ctx.dated is not None
        return [
            (
                portfolio_id,
                isin,
                _text(quantity),
                _text(market_value) if market_value is not None else None,
                currency_cell("currency", currency) if currency else None,
                position,
                provider_date("as_of", parse_date("as_of", as_of), ctx) if as_of else ctx.dated,
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await _unknown_portfolio_errors(conn, stage)
        errors += await duplicate_errors(
            conn, stage, ["portfolio_id", "isin", "position"], "portfolio_id, isin and position"
        )
        errors += await one_date_errors(
            conn, stage, "portfolio_id", "the position report of portfolio {key!r}"
        )
        errors += await _currency_errors(conn, stage)
        return errors

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        columns = ["source_row", "portfolio_id", "isin", "quantity", "market_value"]
        columns += ["currency", "position"]
        await conn.execute(
            insert(Holding).from_select(
                ["dataset_id", *columns],
                select(literal(dataset_id), *(stage.c[c] for c in columns)),
            )
        )
        # One report per portfolio the file names (its rows share one as_of: checked).
        await conn.execute(
            insert(HoldingsReport).from_select(
                ["dataset_id", "portfolio_id", "as_of", "positions"],
                select(
                    literal(dataset_id),
                    stage.c.portfolio_id,
                    func.min(stage.c.as_of),
                    func.count(),
                ).group_by(stage.c.portfolio_id),
            )
        )


async def _unknown_portfolio_errors(conn: AsyncConnection, stage: FromClause) -> list[FieldError]:
    """Rows naming a portfolio no earlier ``portfolios`` load described."""
    query = (
        select(stage.c.source_row, stage.c.portfolio_id)
        .where(~exists().where(PortfolioRecord.portfolio_id == stage.c.portfolio_id))
        .order_by(stage.c.source_row)
        .limit(MAX_ROW_ERRORS)
    )
    return [
        FieldError.in_file(
            row,
            "portfolio_id",
            f"unknown portfolio {portfolio_id!r}: load it first (kind=portfolios)",
        )
        for row, portfolio_id in await conn.execute(query)
    ]


def _first_of_portfolio(stage: FromClause, column: str) -> Any:
    """Per row: ``column`` of the first row (in file order) of the same portfolio whose
    ``column`` is given."""
    return (
        func.first_value(stage.c[column], type_=stage.c[column].type)
        .over(
            partition_by=stage.c.portfolio_id,
            order_by=(stage.c[column].is_(None), stage.c.source_row),
        )
        .label("first")
    )


async def _currency_errors(conn: AsyncConnection, stage: FromClause) -> list[FieldError]:
    """Rows in another currency than their portfolio's base currency (its current record),
    or, for a portfolio without one, than the first row of that portfolio naming one."""
    newest = (
        select(PortfolioRecord.portfolio_id, func.max(PortfolioRecord.dataset_id).label("id"))
        .where(PortfolioRecord.portfolio_id.in_(select(stage.c.portfolio_id).distinct()))
        .group_by(PortfolioRecord.portfolio_id)
        .subquery()
    )
    base = (
        select(PortfolioRecord.portfolio_id, PortfolioRecord.base_currency)
        .join(
            newest,
            and_(
                PortfolioRecord.portfolio_id == newest.c.portfolio_id,
                PortfolioRecord.dataset_id == newest.c.id,
            ),
        )
        .subquery()
    )
    numbered = select(
        stage.c.source_row,
        stage.c.portfolio_id,
        stage.c.currency,
        _first_of_portfolio(stage, "currency"),
    ).subquery()
    query = (
        select(numbered, base.c.base_currency)
        .join(base, base.c.portfolio_id == numbered.c.portfolio_id)
        .where(numbered.c.currency.is_not(None))
        .where(func.coalesce(base.c.base_currency, numbered.c.first) != numbered.c.currency)
        .order_by(numbered.c.source_row)
        .limit(MAX_ROW_ERRORS)
    )
    errors = []
    for r in await conn.execute(query):
        if r.base_currency is not None:
            msg = (
                f"market_value must be in the portfolio's base currency {r.base_currency}; "
                f"this row says {r.currency}"
            )
        else:
            msg = (
                f"portfolio {r.portfolio_id!r} has no base currency and an earlier row says "
                f"{r.first}; this row says {r.currency}: market values in mixed currencies are "
                "never added up"
            )
        errors.append(FieldError.in_file(r.source_row, "currency", msg))
    return errors
