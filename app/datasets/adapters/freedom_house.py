"""`freedom-house`: Freedom in the World, as published ("All data FIW 2013-2024" or a summary).

Territories (C/T = t) are set aside. A file with several editions records each as its own point
in time: the newest edition takes the load's as_of; edition E otherwise dates from 1 January E.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    Adapter,
    LoadContext,
    as_of_by_period,
    country_cell,
    duplicate_errors,
    insert_country_facts,
    provider_year,
)
from app.datasets.csvfile import CellError, CsvRow, SkipRow, parse_decimal
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.models import Fact

STATUS = {
    "f": "Free",
    "free": "Free",
    "pf": "Partly Free",
    "partly free": "Partly Free",
    "nf": "Not Free",
    "not free": "Not Free",
}


class FreedomHouseAdapter(Adapter):
    kind = DatasetKind.freedom_house
    filled = Fact
    required_columns = ("country territory", "c t", "edition", "status", "pr rating", "cl rating")
    # Headers as Freedom House's workbooks have spelt them across editions (compared
    # loosely: case, spaces, `/` and `_` do not matter, so `Country/Territory`, `PR Rating`
    # and `country_territory` need no alias).
    column_aliases = {
        "country": "country territory",
        "c t?": "c t",
        "country territory?": "c t",
        "edition year": "edition",
        "survey edition year": "edition",
        "political rights rating": "pr rating",
        "civil liberties rating": "cl rating",
        "pr ratings": "pr rating",
        "cl ratings": "cl rating",
        "freedom status": "status",
    }
    default_provider = "freedom-house"
    stage_columns = (
        ("country", str),
        ("edition", int),
        ("status", str),
        ("pr_rating", str),
        ("cl_rating", str),
    )
    stored_as = {
        "country": Fact.country,
        "status": Fact.value,
        "pr_rating": Fact.value,
        "cl_rating": Fact.value,
    }
    column_labels = {
        "country": "Country/Territory",
        "status": "Status",
        "pr_rating": "PR rating",
        "cl_rating": "CL rating",
    }

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        name = row.require("country territory")
        kind = row.require("c t").lower()
        if kind == "t":
            raise SkipRow("territory", name)
        if kind != "c":
            raise CellError("C/T", f"{kind!r} is neither c (country) nor t (territory)")
        edition = row.require("edition")
        if not (edition.isdigit() and 1970 <= int(edition) <= 2100):
            raise CellError("Edition", f"{edition!r} is not an edition year")
        provider_year("Edition", int(edition), ctx)
        raw_status = row.require("status")
        status = STATUS.get(raw_status.lower())
        if status is None:
            raise CellError("Status", f"{raw_status!r} is not F, PF or NF")
        return [
            (
                country_cell("Country/Territory", name),
                int(edition),
                status,
                _rating("PR rating", row.require("pr rating")),
                _rating("CL rating", row.require("cl rating")),
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        return await duplicate_errors(conn, stage, ["country", "edition"], "country and edition")

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        as_of = await as_of_by_period(conn, stage, "edition", ctx, year_offset=0)
        for metric, column, field in (
            ("country.freedom_house.status", "status", "Status"),
            ("country.freedom_house.pr_rating", "pr_rating", "PR rating"),
            ("country.freedom_house.cl_rating", "cl_rating", "CL rating"),
        ):
            await insert_country_facts(
                conn, stage, dataset_id, ctx, metric, stage.c[column], as_of, field
            )


def _rating(column: str, raw: str) -> str:
    value = parse_decimal(column, raw, Decimal(1), Decimal(7))
    if value != value.to_integral_value():
        raise CellError(column, f"{raw} is not a whole rating 1..7")
    return str(int(value))
