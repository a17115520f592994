"""`ti-cpi`: Transparency International's Corruption Perceptions Index.

Reads the official results sheet (`Country / Territory, ISO3, CPI score 2022, ...`) and the
long time series (`country, iso3, year, cpi_score`). The country is taken from ISO3 (TI writes
Kosovo as KSV), else from the name. A year in the header or a `year` column dates each score:
the newest year takes the load's as_of, an older year Y dates from 1 January Y+1 (when it was
published).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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
from app.datasets.csvfile import (
    CellError,
    CsvRow,
    SkipRow,
    TableFile,
    missing_columns_message,
    parse_percent,
)
from app.datasets.schemas import DatasetKind
from app.kit.countries import UnknownCountry, resolve_country
from app.kit.errors import FieldError, InvalidInput
from app.models import Fact

_SCORE = re.compile(r"cpi score(?: (\d{4}))?")


class TiCpiAdapter(Adapter):
    kind = DatasetKind.ti_cpi
    filled = Fact
    required_columns = ("country", "iso3")
    # Headers as TI's workbooks have spelt them across editions (`Country / Territory` in
    # 2022, `Country` before; `ISO3`, `WB Code` in older editions); the score column is found
    # by its name, with or without the year (`CPI score 2022`, `CPI Score 2012`, `cpi_score`).
    column_aliases = {
        "country territory": "country",
        "country or territory": "country",
        "iso 3": "iso3",
        "iso3 code": "iso3",
        "iso code": "iso3",
        "wb code": "iso3",
        "wbcode": "iso3",
    }
    default_provider = "transparency-international"
    stage_columns = (("country", str), ("year", int), ("score", str))
    stored_as = {"country": Fact.country, "score": Fact.value}
    column_labels = {"country": "Country", "score": "CPI score"}

    def begin(self, csvfile: TableFile, ctx: LoadContext) -> None:
        score = csvfile.find_column(_SCORE)
        if score is None:
            raise InvalidInput(
                "The file was rejected: no `CPI score` column (it may carry the year, e.g. "
                "`CPI score 2022`). Nothing was loaded.",
                errors=[
                    FieldError.in_file(
                        csvfile.header_row,
                        None,
                        missing_columns_message(["CPI score"], csvfile.header, {}),
                    )
                ],
            )
        self.score_column = score
        self.score_header = csvfile.header[csvfile.columns[score]]
        match = _SCORE.fullmatch(score)
        self.header_year = int(match.group(1)) if match and match.group(1) else None

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        iso3 = row.get("iso3").upper()
        name = row.get("country")
        country = None
        if iso3:
            try:
                country = resolve_country("XKX" if iso3 == "KSV" else iso3).alpha2
            except UnknownCountry:
                country = None
        if country is None:
            country = country_cell("Country", name or iso3)
        raw_score = row.get(self.score_column)
        if not raw_score:
            raise SkipRow("no score", name or iso3)
        year = self.header_year
        if "year" in row.columns:
            raw_year = row.require("year")
            if not raw_year.isdigit():
                raise CellError("year", f"{raw_year!r} is not a year")
            year = int(raw_year)
        if year is not None:
            provider_year("year" if "year" in row.columns else self.score_column, year, ctx)
        score = parse_percent("CPI score", raw_score)
        return [(country, year, format(score.normalize(), "f"))]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        return await duplicate_errors(conn, stage, ["country", "year"], "country and year")

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        as_of = await as_of_by_period(conn, stage, "year", ctx, year_offset=1)
        await insert_country_facts(
            conn,
            stage,
            dataset_id,
            ctx,
            "country.cpi.score",
            stage.c.score,
            as_of,
            self.score_header,
        )
