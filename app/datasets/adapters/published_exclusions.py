"""`published-exclusions`: other investors' published exclusion decisions, name only.

The layout of ``data/real/exclusion_lists/nbim_klp_decisions_compiled_from_public_pages.csv``:
``investor, company, criterion, decision, date, date_kind, source_url, note``, compiled from
Norges Bank's, the Council on Ethics', the Ministry of Finance's and KLP's public pages. The
rows name companies, not identifiers, so they are reference data: each is kept exactly as
published (the company's name with its variants, "AES Corp/The", "Imperial Tobacco Group
Plc.", "(Former EADS NV)"), and affects no verdict until a data steward has resolved the name
to an issuer and a second key confirmed it (``app.published_exclusions``).

``date`` is a day (2016-04-14), a month (2015-12), a year (2018) or empty, as published: the
text is kept with its precision, never completed to an invented day (``period_start``, the
first day of the period, only orders decisions). ``decision`` is read into what it does
(``action``): exclusion (``Exclusion``, ``Recommendation to exclude``), observation,
revocation (``Exclusion revoked``, ``... (re-included)``, ``Exclusion rescinded``),
observation ended (``Removed from observation``) or other (``Active ownership instead of
observation``: recorded, affects nothing). A decision outside these is a row error: a new
wording must be read by a person, not guessed.

Provider ``internal`` by default (the table is the house's compilation of public pages; each
row's investor is its own ``investor``); ``as_of`` defaults to the load's date. The summary:
``investors``, ``actions``, ``date_precision`` (counts) and ``unresolved`` (every entry, at
load time).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import Adapter, LoadContext
from app.datasets.csvfile import CellError, CsvRow
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.models import PublishedExclusion
from app.models.published_exclusion import (
    EXCLUSION,
    OBSERVATION,
    OBSERVATION_ENDED,
    OTHER,
    REVOCATION,
)

# Decisions as the investors word them (case-insensitive) -> what they do.
DECISIONS: dict[str, str] = {
    "exclusion": EXCLUSION,
    "recommendation to exclude": EXCLUSION,
    "observation": OBSERVATION,
    "exclusion revoked": REVOCATION,
    "exclusion revoked (re-included)": REVOCATION,
    "exclusion rescinded": REVOCATION,
    "re-inclusion": REVOCATION,
    "removed from observation": OBSERVATION_ENDED,
    "active ownership instead of observation": OTHER,
}

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


def published_date(raw: str) -> tuple[str | None, str | None, dt.date | None]:
    """(the date as published, its precision, the first day of its period); empty: Nones.

    Raises ``CellError`` for anything that is not a day, a month or a year."""
    if not raw:
        return None, None, None
    try:
        if _DAY.match(raw):
            return raw, "day", dt.date.fromisoformat(raw)
        if match := _MONTH.match(raw):
            return raw, "month", dt.date(int(match.group(1)), int(match.group(2)), 1)
        if match := _YEAR.match(raw):
            return raw, "year", dt.date(int(match.group(1)), 1, 1)
    except ValueError:
        pass
    raise CellError("date", f"{raw!r} is not a date: use YYYY-MM-DD, YYYY-MM or YYYY")


class PublishedExclusionsAdapter(Adapter):
    kind = DatasetKind.published_exclusions
    target = PublishedExclusion
    required_columns = ("investor", "company", "decision", "date")
    default_provider = "internal"
    as_of_required = False  # the list as read on the load's date unless told otherwise
    stage_columns = (
        ("investor", str),
        ("company", str),
        ("criterion", str),
        ("decision", str),
        ("action", str),
        ("published_date", str),
        ("date_precision", str),
        ("period_start", dt.date),
        ("date_kind", str),
        ("source_url", str),
        ("note", str),
    )
    column_labels = {"published_date": "date", "period_start": "date", "action": "decision"}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        decision = row.require("decision")
        action = DECISIONS.get(decision.lower())
        if action is None:
            known = ", ".join(sorted({d.capitalize() for d in DECISIONS}))
            raise CellError("decision", f"{decision!r} is not a decision this kind reads: {known}")
        text, precision, start = published_date(row.get("date"))
        if start is not None and start > ctx.latest:
            raise CellError("date", f"{text} is in the future")
        return [
            (
                row.require("investor"),
                row.require("company"),
                row.get("criterion") or None,
                decision,
                action,
                text,
                precision,
                start,
                row.get("date kind") or None,
                row.get("source url") or None,
                row.get("note") or None,
            )
        ]

    async def check(
        self, conn: AsyncConnection, rows: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        found = (
            await conn.execute(select(rows.c.investor, rows.c.action, rows.c.date_precision))
        ).all()
        ctx.note("investors", dict(sorted(Counter(r.investor for r in found).items())))
        ctx.note("actions", dict(sorted(Counter(r.action for r in found).items())))
        ctx.note(
            "date_precision",
            dict(sorted(Counter(r.date_precision or "none" for r in found).items())),
        )
        ctx.note("unresolved", len(found))
        return []
