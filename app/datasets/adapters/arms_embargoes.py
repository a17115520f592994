"""`arms-embargoes`: `country, authority, regime [, since, until]`, or SIPRI's archive layout.

Each load of a provider is that provider's complete list as of its date. SIPRI's archive
(`Target, Entry into force, Suspended, Lifted, Establishing document`, with a BOM, as
published; or with an `imposer_inferred` column added) is read as published:

- Without an authority column, the authority is read from the establishing document
  (``authority_of_document``): `UNSCR 1333` is the UN; a CFSP act (`2014/512/CFSP`, a Council
  Decision, a Common Position), an `EC declaration` or a document naming the EU (`EU 2017/2063`,
  `EU agreement`) is the EU; `ITAR` is the US. An embargo declared by another body (an `OSCE
  statement`, a `LAS statement`) is set aside as "imposed by neither UN, EU nor US"; one whose
  document is not given (`-`) as "establishing document not given". Any other document is a
  row error naming it: an authority is never guessed.
- A suspension ends an embargo as a lifting does: an embargo suspended from X is not in force
  from X (``until`` = the earlier of Suspended and Lifted; ``until`` is exclusive). A suspended
  embargo that resumes is a new row of the archive, with its own entry into force.
- Rows whose target is not a state (the Taliban, ISIL/Al-Qaeda) or a state that no longer
  exists and whose embargo ended (Yugoslavia) are set aside and counted, not rejected.

Since a load replaces its provider's list, its ``summary`` says what that changes, never
silently: against the provider's list in force at the load's ``as_of`` (``previous``: its
dataset id and date, null for the provider's first list), the embargoes ``added`` and
``removed`` (country, authority, regime; counts and examples) and how many are ``unchanged``.
A load dated before the provider's current list is history (``history: true``, ``current``:
that list's dataset id and date): it applies to the days before that list, never replaces it
(``current_embargo_loads``; contract, "Loads that replace a list").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import Adapter, LoadContext, counted, duplicate_errors
from app.datasets.csvfile import (
    CellError,
    CsvRow,
    SkipRow,
    TableFile,
    missing_columns_message,
    normalize_header,
    optional_date,
)
from app.datasets.records import EmbargoLoad, current_embargo_loads
from app.datasets.repository import embargo_list, embargo_loads
from app.datasets.schemas import DatasetKind
from app.kit.countries import UnknownCountry, resolve_country
from app.kit.errors import FieldError, InvalidInput
from app.models import ArmsEmbargo

AUTHORITIES = ("UN", "EU", "US")
# The establishing document -> who imposed the embargo (SIPRI's archive has no such column).
_DOCUMENT_AUTHORITIES = (
    (re.compile(r"^\s*UNSCR?\b|security council resolution", re.I), "UN"),
    (
        re.compile(
            r"\bCFSP\b|council decision|common position|\bEC declaration\b|\bEU\b|"
            r"european (?:union|council|community)",
            re.I,
        ),
        "EU",
    ),
    (re.compile(r"\bITAR\b", re.I), "US"),
)
_OTHER_BODIES = re.compile(r"\b(?:OSCE|LAS|ECOWAS|AU|OAS|CSCE)\b|arab league", re.I)
_NOT_GIVEN = re.compile(r"^[\s\-\u2013\u2014]*$")


def authority_of_document(document: str, target: str) -> str:
    """Who imposed an embargo, read from its establishing document (SIPRI's archive).

    ``SkipRow`` for a document of another body (OSCE, Arab League) or none given (`-`);
    ``CellError`` for a document this does not recognise (never a guess).
    """
    for pattern, authority in _DOCUMENT_AUTHORITIES:
        if pattern.search(document):
            return authority
    if _NOT_GIVEN.match(document):
        raise SkipRow("establishing document not given", target)
    if _OTHER_BODIES.search(document):
        raise SkipRow("imposed by neither UN, EU nor US", target)
    raise CellError(
        "Establishing document",
        f"{document!r}: who imposed it cannot be read from it (UNSCR n: UN; a CFSP act, "
        "Council decision, common position or EC declaration: EU; ITAR: US); add an "
        "`authority` column",
    )


_NON_STATE = re.compile(r"taliban|al-qaeda|isil|isis|individuals and entities|bin laden", re.I)


class ArmsEmbargoesAdapter(Adapter):
    kind = DatasetKind.arms_embargoes
    target = ArmsEmbargo
    from_document = False
    # `authority` too, unless the establishing document is there to read it from (``begin``).
    required_columns = ("country", "regime")
    column_aliases = {
        "target": "country",
        "imposer inferred": "authority",
        "imposer": "authority",
        "establishing document": "regime",
        "entry into force": "since",
        "lifted": "until",
    }
    default_provider = "sipri"
    stage_columns = (
        ("country", str),
        ("authority", str),
        ("regime", str),
        ("since", dt.date),
        ("until", dt.date),
    )

    def begin(self, csvfile: TableFile, ctx: LoadContext) -> None:
        self.from_document = False
        if "authority" in csvfile.columns:
            return
        regime_header = csvfile.header[csvfile.columns["regime"]]
        if normalize_header(regime_header) != "establishing document":
            # The contract layout's regime is a name, not a document to read an authority from.
            raise InvalidInput(
                "The file was rejected: missing required column authority (or imposer "
                "inferred); without it, an `Establishing document` column (SIPRI's archive). "
                "Nothing was loaded.",
                errors=[
                    FieldError.in_file(
                        csvfile.header_row,
                        None,
                        missing_columns_message(["authority"], csvfile.header, self.column_aliases),
                    )
                ],
            )
        self.from_document = True

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        target = row.require("country")
        if self.from_document:
            authority = authority_of_document(row.get("regime"), target)
        else:
            authority = row.require("authority").upper()
        if authority not in AUTHORITIES:
            if authority.startswith("OTHER"):
                raise SkipRow("imposed by neither UN, EU nor US", target)
            raise CellError("authority", f"{authority!r} is not UN, EU or US")
        since = optional_date(row, "since")
        until = optional_date(row, "until")
        suspended = optional_date(row, "suspended")
        if suspended and (until is None or suspended < until):
            until = suspended
        if since and until and until < since:
            raise CellError("until", f"ends ({until}) before it starts ({since})")
        try:
            country = resolve_country(target).alpha2
        except UnknownCountry as exc:
            if _NON_STATE.search(target):
                raise SkipRow("target is not a state", target) from None
            if until is not None and ctx.as_of is not None and until <= ctx.as_of:
                raise SkipRow("ended embargo on a state that no longer exists", target) from None
            raise CellError("country", str(exc)) from None
        return [(country, authority, row.require("regime"), since, until)]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(
            conn, stage, ["country", "authority", "regime", "since"], "embargo"
        )
        if not errors:
            await _summarize(conn, stage, ctx)
        return errors


async def _summarize(conn: AsyncConnection, stage: FromClause, ctx: LoadContext) -> None:
    """What this list changes against its provider's list in force at its as_of (see the
    module's docstring for the summary's shape)."""
    assert ctx.dated is not None
    loads = [
        EmbargoLoad(dataset_id=i, provider=p, as_of=a)
        for i, p, a in await conn.execute(embargo_loads(ctx.dataset_id - 1, ctx.provider))
    ]
    previous = current_embargo_loads(loads, ctx.dated).get(ctx.provider)
    before: set[tuple[str, str, str]] = set()
    if previous is not None:
        before = {(c, a, r) for c, a, r in await conn.execute(embargo_list(previous.dataset_id))}
    staged = select(stage.c.country, stage.c.authority, stage.c.regime).distinct()
    after = {(c, a, r) for c, a, r in await conn.execute(staged)}

    def shown(keys: set[tuple[str, str, str]]) -> dict[str, Any]:
        return counted([{"country": c, "authority": a, "regime": r} for c, a, r in sorted(keys)])

    ctx.note("previous", _load(previous))
    ctx.note("added", shown(after - before))
    ctx.note("removed", shown(before - after))
    ctx.note("unchanged", len(after & before))
    # The newest-dated list of the provider, if dated after this one (a tie: this later load
    # is the current list): then this file is history and today's list stays as it is.
    newest = max(loads, key=lambda load: (load.as_of, load.dataset_id), default=None)
    history = newest is not None and newest.as_of > ctx.dated
    ctx.note("history", history)
    if history:
        ctx.note("current", _load(newest))


def _load(load: EmbargoLoad | None) -> dict[str, Any] | None:
    if load is None:
        return None
    return {"dataset_id": load.dataset_id, "as_of": load.as_of.isoformat()}
