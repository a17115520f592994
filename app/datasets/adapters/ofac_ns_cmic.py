"""`ofac-ns-cmic`: OFAC's Non-SDN Chinese Military-Industrial Complex Companies List, as published.

The layout of ``data/real/ofac_ns_cmic/ofac_ns_cmic_entities.csv`` (one row per entity:
``ent_num, name, program, target_type, isins, equity_tickers, listing_date_cmic,
effective_date_cmic, divestment_date_cmic, uscc, aka, linked_to, remarks_raw``): ISINs
``;``-joined in ``isins``, dates as OFAC writes them ("03 Jun 2021"), entities without ISINs.
Provider ``ofac`` by default; ``as_of`` is the list's date (default: the load's date).

Each load is the provider's COMPLETE list as of its date (like ``arms-embargoes``): an issuer is
``sanctions.us_ns_cmic`` true while an ISIN of one of its instruments is on the provider's
current list (the newest-dated load on or before the day asked), false when a fresh current
list does not name it. Stored as published, one row per (entity, ISIN), and one row for an
entity without ISINs (it can match no instrument: counted in the summary).

Matching is textual (the ISIN as published, upper-cased, equal to an instrument's ISIN) and
happens at check time against the instruments then known, never at load time: an instrument
loaded after the list still matches, and the list stays what OFAC published. Two official
ISINs fail the ISIN check digit (CND10002K094, CND10002G601, China Communications Construction):
they are kept as published, matched textually, and named in the summary (``invalid_isins``),
never rejected; an instrument load validates its ISINs, so no instrument we hold carries them
today, but the list keeps them should one ever be recorded.

The summary: ``entities``, ``isins`` (as published, 164 in the file of 2025-04-21),
``repeated_isins`` (an ISIN an entity's row gives twice: OFAC's CNOOC and CSSC rows do; kept,
harmless for matching), ``entities_without_isins`` (count and
examples), ``invalid_isins`` (failing the check digit: each with its entity), ``unmatched_isins``
(ISINs no instrument known at load time carries: count and examples; informative only, they
may match an instrument loaded later), ``previous`` / ``added`` / ``removed`` / ``unchanged``
against the provider's list in force at the load's date (entities), and ``history`` (with
``current``) when the provider's newest list is dated later: then this file applies to the
days before that list only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import Adapter, LoadContext, counted, duplicate_errors
from app.datasets.csvfile import CellError, CsvRow, parse_date
from app.datasets.records import EmbargoLoad, current_embargo_loads
from app.datasets.repository import sanctions_list, sanctions_loads
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.identifiers import is_valid_isin
from app.models import InstrumentRecord, SanctionsListEntry

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_OFAC_DATE = re.compile(r"^(\d{1,2}) ([A-Za-z]{3}) (\d{4})$")
_ISIN_SHAPE = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")


def ofac_date(row: CsvRow, column: str) -> dt.date | None:
    """OFAC's "03 Jun 2021" (also ISO dates); empty: None."""
    raw = row.get(column)
    if not raw:
        return None
    match = _OFAC_DATE.match(raw)
    if match and match.group(2).lower() in _MONTHS:
        try:
            month = _MONTHS[match.group(2).lower()]
            return dt.date(int(match.group(3)), month, int(match.group(1)))
        except ValueError:
            raise CellError(column, f"{raw!r} is not a date") from None
    return parse_date(column, raw)


class OfacNsCmicAdapter(Adapter):
    kind = DatasetKind.ofac_ns_cmic
    target = SanctionsListEntry
    required_columns = ("ent num", "name", "isins", "listing date cmic")
    column_aliases = {"entity number": "ent num", "sdn name": "name"}
    default_provider = "ofac"
    as_of_required = False  # the list as of the load's date unless told otherwise
    stage_columns = (
        ("position", int),
        ("isin", str),
        ("entity_ref", str),
        ("name", str),
        ("program", str),
        ("listing_date", dt.date),
        ("effective_date", dt.date),
    )
    column_labels = {"entity_ref": "ent_num", "isin": "isins", "listing_date": "listing_date_cmic"}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        entity = row.require("ent num")
        name = row.require("name")
        program = row.get("program") or "CMIC-EO13959"
        listed = ofac_date(row, "listing date cmic")
        effective = ofac_date(row, "effective date cmic")
        isins: list[str] = []
        for raw in row.get("isins").split(";"):
            isin = raw.strip().upper()
            if not isin:
                continue
            if not _ISIN_SHAPE.match(isin):
                raise CellError("isins", f"{raw.strip()!r} is not shaped like an ISIN")
            isins.append(isin)  # as published: a repeated ISIN too (see the summary)
        common = (entity, name, program, listed, effective)
        if not isins:
            return [(0, None, *common)]
        return [(position, isin, *common) for position, isin in enumerate(isins, 1)]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(conn, stage, ["entity_ref", "position"], "entity")
        if not errors:
            await _summarize(conn, stage, ctx)
        return errors

    async def publish(
        self, conn: AsyncConnection, stage: Table, dataset_id: int, ctx: LoadContext
    ) -> None:
        columns = ["source_row", *(name for name, _ in self.stage_columns)]
        await conn.execute(
            insert(SanctionsListEntry).from_select(
                ["dataset_id", *columns],
                select(literal(dataset_id), *(stage.c[c] for c in columns)),
            )
        )


async def _summarize(conn: AsyncConnection, stage: FromClause, ctx: LoadContext) -> None:
    rows = (
        await conn.execute(
            select(stage.c.entity_ref, stage.c.name, stage.c.isin, stage.c.source_row).order_by(
                stage.c.source_row, stage.c.position
            )
        )
    ).all()
    entities = {(e, n) for e, n, _, _ in rows}
    isins = [(e, n, i) for e, n, i, _ in rows if i is not None]
    ctx.note("entities", len(entities))
    ctx.note("isins", len(isins))
    seen: set[tuple[str, str]] = set()
    repeated = []
    for e, _, i in isins:
        if (e, i) in seen:
            repeated.append({"isin": i, "ent_num": e})
        seen.add((e, i))
    ctx.note("repeated_isins", counted(repeated))
    ctx.note(
        "entities_without_isins",
        counted([{"ent_num": e, "name": n} for e, n, i, _ in rows if i is None]),
    )
    ctx.note(
        "invalid_isins",
        counted(
            [
                {"isin": i, "ent_num": e, "name": n, "kept": "as published, matched textually"}
                for e, n, i in isins
                if not is_valid_isin(i)
            ]
        ),
    )
    known = set(
        (
            await conn.execute(
                select(InstrumentRecord.isin)
                .where(InstrumentRecord.isin.in_(sorted({i for _, _, i in isins})))
                .distinct()
            )
        ).scalars()
    )
    ctx.note(
        "unmatched_isins",
        counted([{"isin": i, "ent_num": e} for e, _, i in isins if i not in known]),
    )
    # Against the provider's list in force at this load's date (entities added, removed).
    assert ctx.dated is not None
    loads = [
        EmbargoLoad(dataset_id=i, provider=p, as_of=a)
        for i, p, a in await conn.execute(sanctions_loads(ctx.dataset_id - 1, ctx.provider))
    ]
    previous = current_embargo_loads(loads, ctx.dated).get(ctx.provider)
    before: set[tuple[str, str]] = set()
    if previous is not None:
        before = {(e, n) for e, n in await conn.execute(sanctions_list(previous.dataset_id))}

    def shown(keys: set[tuple[str, str]]) -> dict[str, Any]:
        return counted([{"ent_num": e, "name": n} for e, n in sorted(keys)])

    ctx.note("previous", _load(previous))
    ctx.note("added", shown(entities - before))
    ctx.note("removed", shown(before - entities))
    ctx.note("unchanged", len(entities & before))
    newest = max(loads, key=lambda load: (load.as_of, load.dataset_id), default=None)
    history = newest is not None and newest.as_of > ctx.dated
    ctx.note("history", history)
    if history:
        ctx.note("current", _load(newest))


def _load(load: EmbargoLoad | None) -> dict[str, Any] | None:
    if load is None:
        return None
    return {"dataset_id": load.dataset_id, "as_of": load.as_of.isoformat()}
