"""`arms-embargoes`: `country, authority, regime [, since, until]`, or SIPRI's archive layout.

Each load of a provider is that provider's complete list as of its date. SIPRI's archive
(`Target, Entry into force, Suspended, Lifted, Establishing document, imposer_inferred`) is read
as published: a suspension ends an embargo like a lifting does; rows imposed by neither the UN,
the EU nor the US, and rows whose target is not a state (the Taliban, ISIL/Al-Qaeda) or a state
that no longer exists and whose embargo ended, are set aside and counted, not rejected.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import Adapter, LoadContext, duplicate_errors
from app.datasets.csvfile import CellError, CsvRow, SkipRow, optional_date
from app.datasets.schemas import DatasetKind
from app.kit.countries import UnknownCountry, resolve_country
from app.kit.errors import FieldError
from app.models import ArmsEmbargo

AUTHORITIES = ("UN", "EU", "US")
_NON_STATE = re.compile(r"taliban|al-qaeda|isil|isis|individuals and entities|bin laden", re.I)


class ArmsEmbargoesAdapter(Adapter):
    kind = DatasetKind.arms_embargoes
    target = ArmsEmbargo
    required_columns = ("country", "authority", "regime")
    column_aliases = {
        "target": "country",
        "imposer inferred": "authority",
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

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        target = row.require("country")
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
        return await duplicate_errors(
            conn, stage, ["country", "authority", "regime", "since"], "embargo"
        )
