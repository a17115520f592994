"""`msci-esg`: MSCI ESG screening exports, mapped onto the canonical vocabulary.

Rows match issuers by MSCI ISSUERID (the issuer's ``msci_issuer_id``), else by ISSUER_ISIN (an
instrument of ours). A vendor file covers the vendor's whole universe, so rows matching none of
our issuers are set aside and counted in the dataset's summary, not rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, insert, literal, null, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause, Subquery

from app.datasets.adapters.base import (
    FACT_COLUMNS,
    Adapter,
    LoadContext,
    country_cell,
    duplicate_errors,
    literal_date,
)
from app.datasets.adapters.facts import fact_value
from app.datasets.adapters.instruments import identifier_cell
from app.datasets.csvfile import CellError, CsvRow, parse_percent
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.identifiers import normalize_isin
from app.models import Fact, InstrumentRecord, IssuerRecord

# MSCI field (normalized header) -> canonical metric.
DIRECT_FIELDS = {
    "cweap tie": "controversial_weapons.involved",
    "tob max rev pct": "revenue_pct.tobacco",
    "thermal coal max rev pct": "revenue_pct.thermal_coal_extraction",
    "generat max rev thermal coal": "revenue_pct.thermal_coal_power",
    "unconv oil gas max rev pct": "revenue_pct.unconventional_oil_gas",
}
ARCTIC_FIELDS = ("arctic oil max rev pct", "arctic gas max rev pct")
UNGC = {"pass": "compliant", "watch list": "watchlist", "fail": "non_compliant"}


def _vendor_name(normalized: str) -> str:
    return normalized.upper().replace(" ", "_")


class MsciEsgAdapter(Adapter):
    kind = DatasetKind.msci_esg
    filled = Fact
    required_columns = ("issuerid", "issuer name", "issuer isin", "issuer cntry domicile")
    default_provider = "msci"
    stage_columns = (
        ("msci_id", str),
        ("isin", str),
        ("metric", str),
        ("value", str),
        ("source_field", str),
    )
    stored_as = {
        "msci_id": Fact.issuer_ref,
        "isin": InstrumentRecord.isin,
        "metric": Fact.metric,
        "value": Fact.value,
        "source_field": Fact.source_field,
    }
    column_labels = {"msci_id": "ISSUERID", "isin": "ISSUER_ISIN"}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        msci_id = row.require("issuerid")
        raw_isin = row.get("issuer isin")
        isin = identifier_cell("ISSUER_ISIN", raw_isin, normalize_isin) if raw_isin else None
        country_cell("ISSUER_CNTRY_DOMICILE", row.require("issuer cntry domicile"))
        staged: list[tuple[Any, ...]] = []
        for field, metric in DIRECT_FIELDS.items():
            if raw := row.get(field):
                value = fact_value(metric, raw, column=_vendor_name(field))
                staged.append((msci_id, isin, metric, value, _vendor_name(field)))
        arctic = [(f, raw) for f in ARCTIC_FIELDS if (raw := row.get(f))]
        if arctic:
            # Exposure to Arctic oil and to Arctic gas both count: the metric is their sum.
            total = sum(
                (parse_percent(_vendor_name(f), raw) for f, raw in arctic), start=Decimal(0)
            )
            if total > 100:
                raise CellError("ARCTIC_GAS_MAX_REV_PCT", f"Arctic oil + gas is {total}% > 100%")
            staged.append(
                (
                    msci_id,
                    isin,
                    "revenue_pct.arctic_oil_gas",
                    format(total.normalize(), "f"),
                    "+".join(_vendor_name(f) for f, _ in arctic),
                )
            )
        if raw := row.get("ungc compliance"):
            status = UNGC.get(raw.lower())
            if status is None:
                raise CellError("UNGC_COMPLIANCE", f"{raw!r} is not Pass, Watch List or Fail")
            staged.append((msci_id, isin, "norms.status", status, "UNGC_COMPLIANCE"))
        return staged

    def _matches(self, stage: FromClause) -> Subquery:
        pairs = select(stage.c.msci_id, stage.c.isin).distinct().subquery("pairs")
        by_msci = (
            select(func.min(IssuerRecord.issuer_id))
            .where(IssuerRecord.msci_issuer_id == pairs.c.msci_id)
            .scalar_subquery()
        )
        by_isin = (
            select(func.min(InstrumentRecord.issuer_id))
            .where(InstrumentRecord.isin == pairs.c.isin)
            .scalar_subquery()
        )
        return select(
            pairs.c.msci_id, pairs.c.isin, func.coalesce(by_msci, by_isin).label("issuer_id")
        ).subquery("matches")

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(conn, stage, ["msci_id", "metric"], "ISSUERID")
        matches = self._matches(stage)
        unmatched = (
            (
                await conn.execute(
                    select(matches.c.msci_id)
                    .where(matches.c.issuer_id.is_(None))
                    .order_by(matches.c.msci_id)
                )
            )
            .scalars()
            .all()
        )
        if unmatched:
            ctx.note("unmatched_issuers", len(unmatched))
            ctx.note("unmatched_examples", list(unmatched[:20]))
        return errors

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        assert ctx.as_of is not None  # as_of_required
        matches = self._matches(stage)
        await conn.execute(
            insert(Fact).from_select(
                list(FACT_COLUMNS),
                select(
                    literal(dataset_id),
                    stage.c.source_row,
                    matches.c.issuer_id,
                    null(),
                    stage.c.msci_id,
                    stage.c.metric,
                    literal(ctx.provider),
                    stage.c.value,
                    literal_date(ctx.as_of),
                    stage.c.source_field,
                )
                .join(
                    matches,
                    (matches.c.msci_id == stage.c.msci_id)
                    & (matches.c.isin.is_not_distinct_from(stage.c.isin)),
                )
                .where(matches.c.issuer_id.is_not(None)),
            )
        )
