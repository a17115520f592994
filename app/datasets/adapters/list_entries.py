"""`list-entries`: the policy owner's own decisions about issuers.

For each policy, the latest load naming it is its complete list (an entry absent from the next
load has been taken off). Exceptions must carry their approval reference and an expiry.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    Adapter,
    LoadContext,
    duplicate_errors,
    resolved_refs,
    unresolved_ref_errors,
)
from app.datasets.csvfile import CellError, CsvRow, optional_date, parse_date
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.models import ListEntry

LISTS = ("exclusion", "inclusion", "focus", "dialogue", "watch", "exception")
_POLICY_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class ListEntriesAdapter(Adapter):
    kind = DatasetKind.list_entries
    required_columns = ("policy", "issuer ref", "list", "reason", "decided on")
    default_provider = "internal"
    as_of_required = False
    stage_columns = (
        ("policy_key", str),
        ("issuer_ref", str),
        ("list", str),
        ("reason", str),
        ("decided_on", dt.date),
        ("reference", str),
        ("review_on", dt.date),
        ("expires_on", dt.date),
    )

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        policy = row.require("policy")
        if not _POLICY_KEY.match(policy):
            raise CellError("policy", f"{policy!r} is not a policy key (e.g. rpf, dk-pension)")
        kind = row.require("list").lower()
        if kind not in LISTS:
            raise CellError("list", f"{kind!r} is not one of {', '.join(LISTS)}")
        decided_on = parse_date("decided_on", row.require("decided on"))
        expires_on = optional_date(row, "expires on")
        if expires_on and expires_on < decided_on:
            raise CellError("expires_on", f"expires ({expires_on}) before it was decided")
        reference = row.get("reference")
        if kind == "exception" and not (reference and expires_on):
            raise CellError(
                "reference" if not reference else "expires_on",
                "an exception needs its approval reference and an expiry date",
            )
        return [
            (
                policy,
                row.require("issuer ref"),
                kind,
                row.require("reason"),
                decided_on,
                reference or None,
                optional_date(row, "review on"),
                expires_on,
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        return await duplicate_errors(
            conn, stage, ["policy_key", "issuer_ref", "list"], "policy, issuer_ref and list"
        ) + await unresolved_ref_errors(conn, stage, "issuer_ref")

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        resolved = resolved_refs(stage, "issuer_ref", conn.dialect.name)
        columns = [name for name, _ in self.stage_columns]
        await conn.execute(
            insert(ListEntry).from_select(
                ["dataset_id", "source_row", "issuer_id", *columns],
                select(
                    literal(dataset_id),
                    stage.c.source_row,
                    resolved.c.issuer_id,
                    *(stage.c[c] for c in columns),
                ).join(resolved, resolved.c.ref == stage.c.issuer_ref),
            )
        )
