"""`facts`: issuer_ref, metric, value [, as_of, country] in the canonical vocabulary.

An issuer metric's row names its issuer (``issuer_ref``). A country metric loaded as a fact
(one no publisher file carries, such as ``country.sanctions.financial``) names its country in
``country`` (or, when that column is absent or empty, in ``issuer_ref``): an ISO code or a
name, resolved like every country cell. Metrics read from their own kinds (arms embargoes,
Freedom House, TI, ITUC, the OFAC list) and derived metrics are refused here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, case, insert, literal, null, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    FACT_COLUMNS,
    Adapter,
    LoadContext,
    country_cell,
    duplicate_errors,
    provider_date,
    resolve_ref,
    unresolved_ref_errors,
)
from app.datasets.csvfile import CellError, CsvRow, optional_date
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.vocabulary import InvalidValue, Subject, format_value, get_metric, parse_value
from app.models import Fact

# Country metrics no publisher file carries: loaded as facts, per country.
COUNTRY_FACTS = frozenset({"country.sanctions.financial"})
# Issuer metrics read from their own kind, never from facts.
NOT_FACTS = frozenset(
    {"sanctions.us_ns_cmic", "peer_exclusion.excluded", "peer_exclusion.observation"}
)


def fact_value(metric_name: str, raw: str, column: str = "value") -> str:
    """Validate a value for its metric; return its canonical text."""
    try:
        return format_value(parse_value(get_metric(metric_name), raw))
    except InvalidValue as exc:
        raise CellError(column, f"{metric_name}: {exc}") from None


class FactsAdapter(Adapter):
    kind = DatasetKind.facts
    filled = Fact
    required_columns = ("issuer ref", "metric", "value")
    as_of_required = False  # each row may carry its own
    publishes_in_batches = True
    stage_columns = (
        ("issuer_ref", str),
        ("metric", str),
        ("value", str),
        ("as_of", dt.date),
        ("country", str),
    )
    stored_as = {
        "issuer_ref": Fact.issuer_ref,
        "metric": Fact.metric,
        "value": Fact.value,
        "country": Fact.country,
    }

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        name = row.require("metric")
        try:
            metric = get_metric(name)
        except InvalidValue as exc:
            raise CellError("metric", str(exc)) from None
        if (metric.subject is not Subject.issuer and name not in COUNTRY_FACTS) or (
            metric.derived_from or name in NOT_FACTS
        ):
            raise CellError(
                "metric",
                f"{name} is not loaded as a fact (country data comes from the freedom-house, "
                "ti-cpi, ituc and arms-embargoes kinds, except "
                f"{', '.join(sorted(COUNTRY_FACTS))}; sanctions.us_ns_cmic from the "
                "ofac-ns-cmic kind; peer_exclusion.* from confirmed resolutions of "
                "published-exclusions entries; derived metrics are computed)",
            )
        given = optional_date(row, "as of")
        as_of = provider_date("as_of", given, ctx) if given else ctx.as_of
        if as_of is None:
            raise CellError("as_of", "no as-of date: fill the as_of column or pass ?as_of=")
        value = fact_value(name, row.require("value"))
        if metric.subject is Subject.country:
            column = "country" if row.get("country") else "issuer ref"
            raw = row.require(column)
            return [(raw, name, value, as_of, country_cell(column, raw))]
        return [(row.require("issuer ref"), name, value, as_of, None)]

    def checked_rows(self, stage: Table, dataset_id: int) -> FromClause:
        return (
            select(
                Fact.source_row,
                # A country's facts are keyed by the country, however the file spelled it.
                case(
                    (Fact.country.is_not(None), literal("country:") + Fact.country),
                    else_=Fact.issuer_ref,
                ).label("issuer_ref"),
                Fact.country,
                Fact.metric,
                Fact.as_of,
            )
            .where(Fact.dataset_id == dataset_id)
            .subquery("published")
        )

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        return await duplicate_errors(
            conn, stage, ["issuer_ref", "metric", "as_of"], "issuer_ref, metric and as_of"
        ) + await unresolved_ref_errors(
            conn,
            select(stage.c.source_row, stage.c.issuer_ref)
            .where(stage.c.country.is_(None))
            .subquery("issuer_rows"),
            "issuer_ref",
        )

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        await conn.execute(
            insert(Fact).from_select(
                list(FACT_COLUMNS),
                select(
                    literal(dataset_id),
                    stage.c.source_row,
                    case(
                        (stage.c.country.is_(None), resolve_ref(stage.c.issuer_ref)),
                        else_=null(),
                    ),
                    stage.c.country,
                    stage.c.issuer_ref,
                    stage.c.metric,
                    literal(ctx.provider),
                    stage.c.value,
                    stage.c.as_of,
                    null(),
                ),
            )
        )
