"""`instruments`: isin, issuer_id, asset_class + optional underlying and other identifiers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Table, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    MAX_ROW_ERRORS,
    Adapter,
    LoadContext,
    duplicate_errors,
)
from app.datasets.adapters.issuers import issuer_id_cell
from app.datasets.csvfile import CellError, CsvRow
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.identifiers import (
    InvalidIdentifier,
    normalize_cusip,
    normalize_figi,
    normalize_isin,
    normalize_sedol,
)
from app.kit.vocabulary import AssetClass
from app.models import FundComposition, InstrumentRecord, IssuerRecord

ASSET_CLASSES = tuple(a.value for a in AssetClass)


def identifier_cell(column: str, raw: str, normalize: Callable[[str], str]) -> str:
    try:
        return normalize(raw)
    except InvalidIdentifier as exc:
        raise CellError(column, str(exc)) from None


class InstrumentsAdapter(Adapter):
    kind = DatasetKind.instruments
    target = InstrumentRecord
    required_columns = ("isin", "issuer id", "asset class")
    default_provider = "internal"
    as_of_required = False
    publishes_in_batches = True
    stage_columns = (
        ("isin", str),
        ("issuer_id", str),
        ("asset_class", str),
        ("underlying_isin", str),
        ("name", str),
        ("cusip", str),
        ("sedol", str),
        ("figi", str),
    )

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        isin = identifier_cell("isin", row.require("isin"), normalize_isin)
        asset_class = row.require("asset class").lower()
        if asset_class not in ASSET_CLASSES:
            raise CellError(
                "asset_class", f"{asset_class!r} is not one of {', '.join(ASSET_CLASSES)}"
            )
        underlying = row.get("underlying isin")
        if underlying:
            underlying = identifier_cell("underlying_isin", underlying, normalize_isin)
            if underlying == isin:
                raise CellError("underlying_isin", "an instrument cannot be its own underlying")
        cusip, sedol, figi = row.get("cusip"), row.get("sedol"), row.get("figi")
        return [
            (
                isin,
                issuer_id_cell("issuer_id", row.require("issuer id")),
                asset_class,
                underlying or None,
                row.get("name") or None,
                identifier_cell("cusip", cusip, normalize_cusip) if cusip else None,
                identifier_cell("sedol", sedol, normalize_sedol) if sedol else None,
                identifier_cell("figi", figi, normalize_figi) if figi else None,
            )
        ]

    def checked_rows(self, stage: Table, dataset_id: int) -> FromClause:
        record = InstrumentRecord
        return (
            select(record.source_row, record.isin, record.issuer_id, record.underlying_isin)
            .where(record.dataset_id == dataset_id)
            .subquery("published")
        )

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(conn, stage, ["isin"], "isin")
        unknown_issuers = (
            select(stage.c.source_row, stage.c.issuer_id)
            # NOT EXISTS, not NOT IN: an anti-join at any size (NOT IN's hashed subplan falls
            # back to a quadratic scan once the issuers outgrow work_mem: minutes at 400k)
            .where(~exists().where(IssuerRecord.issuer_id == stage.c.issuer_id))
            .order_by(stage.c.source_row)
            .limit(MAX_ROW_ERRORS)
        )
        errors += [
            FieldError.in_file(row, "issuer_id", f"unknown issuer {ref!r}: load the issuer first")
            for row, ref in (await conn.execute(unknown_issuers)).all()
        ]
        # The stage holds this load's published rows, so the table knows its own ISINs too.
        unknown_underlyings = (
            select(stage.c.source_row, stage.c.underlying_isin)
            .where(stage.c.underlying_isin.is_not(None))
            .where(~exists().where(InstrumentRecord.isin == stage.c.underlying_isin))
            # An index is known by its composition (fund-holdings): an index derivative.
            .where(~exists().where(FundComposition.fund_isin == stage.c.underlying_isin))
            .order_by(stage.c.source_row)
            .limit(MAX_ROW_ERRORS)
        )
        errors += [
            FieldError.in_file(
                row,
                "underlying_isin",
                f"unknown underlying {isin!r}: load that instrument (or, for an index, its "
                "composition: kind=fund-holdings) first",
            )
            for row, isin in (await conn.execute(unknown_underlyings)).all()
        ]
        return sorted(errors, key=lambda e: e.row or 0)[:MAX_ROW_ERRORS]
