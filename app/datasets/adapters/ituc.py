"""`ituc`: ITUC Global Rights Index, `country, rating` (the published map calls it gri_rating)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    Adapter,
    LoadContext,
    country_cell,
    duplicate_errors,
    insert_country_facts,
    literal_date,
)
from app.datasets.adapters.facts import fact_value
from app.datasets.csvfile import CsvRow
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.models import Fact


class ItucAdapter(Adapter):
    kind = DatasetKind.ituc
    filled = Fact
    required_columns = ("country", "rating")
    # The published map calls the rating `gri_rating`; ITUC's own tables say `Rating`.
    column_aliases = {
        "gri rating": "rating",
        "global rights index rating": "rating",
        "gri": "rating",
        "country territory": "country",
        "country name": "country",
    }
    default_provider = "ituc"
    stage_columns = (("country", str), ("rating", str))
    stored_as = {"country": Fact.country, "rating": Fact.value}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        return [
            (
                country_cell("country", row.require("country")),
                fact_value("country.ituc.rating", row.require("rating"), column="rating"),
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        return await duplicate_errors(conn, stage, ["country"], "country")

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        assert ctx.as_of is not None
        await insert_country_facts(
            conn,
            stage,
            dataset_id,
            ctx,
            "country.ituc.rating",
            stage.c.rating,
            literal_date(ctx.as_of),
            "rating",
        )
