"""`facts`: issuer_ref, metric, value [, as_of] in the canonical vocabulary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, insert, literal, null, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    FACT_COLUMNS,
    Adapter,
    LoadContext,
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


def fact_value(metric_name: str, raw: str, column: str = "value") -> str:
    """Validate a value for its metric; return its canonical text."""
    try:
        return format_value(parse_value(get_metric(metric_name), raw))
    except InvalidValue as exc:
        raise CellError(column, f"{metric_name}: {exc}") from None


class FactsAdapter(Adapter):
    kind = DatasetKind.facts
    required_columns = ("issuer ref", "metric", "value")
    as_of_required = False  # each row may carry its own
    publishes_in_batches = True
    stage_columns = (
        ("issuer_ref", str),
        ("metric", str),
        ("value", str),
        ("as_of", dt.date),
    )
    stored_as = {"issuer_ref": Fact.issuer_ref, "metric": Fact.metric, "value": Fact.value}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        name = row.require("metric")
        try:
            metric = get_metric(name)
        except InvalidValue as exc:
            raise CellError("metric", str(exc)) from None
        if metric.subject is not Subject.issuer or metric.derived_from:
            raise CellError(
                "metric",
                f"{name} is not an issuer metric loaded as a fact (country data comes from "
                "the freedom-house, ti-cpi, ituc and arms-embargoes kinds; derived metrics "
                "are computed)",
            )
        given = optional_date(row, "as of")
        as_of = provider_date("as_of", given, ctx) if given else ctx.as_of
        if as_of is None:
            raise CellError("as_of", "no as-of date: fill the as_of column or pass ?as_of=")
        return [(row.require("issuer ref"), name, fact_value(name, row.require("value")), as_of)]

    def checked_rows(self, stage: Table, dataset_id: int) -> FromClause:
        return (
            select(Fact.source_row, Fact.issuer_ref, Fact.metric, Fact.as_of)
            .where(Fact.dataset_id == dataset_id)
            .subquery("published")
        )

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        return await duplicate_errors(
            conn, stage, ["issuer_ref", "metric", "as_of"], "issuer_ref, metric and as_of"
        ) + await unresolved_ref_errors(conn, stage, "issuer_ref")

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
                    resolve_ref(stage.c.issuer_ref),
                    null(),
                    stage.c.issuer_ref,
                    stage.c.metric,
                    literal(ctx.provider),
                    stage.c.value,
                    stage.c.as_of,
                    null(),
                ),
            )
        )
