"""`gleif-relationships`: GLEIF level-2 relationship records (contract, "More published formats").

Reads ``data/real/gleif_lei/gleif_level2_relationship_records.csv`` as published
(``start_node_lei, end_node_lei, relationship_type, relationship_status, ...,
rr_registration_status, ..., valid_from, valid_to``), and the golden copy's column names.

Decisions:
* Only ``IS_DIRECTLY_CONSOLIDATED_BY`` and ``IS_ULTIMATELY_CONSOLIDATED_BY`` are read: they
  mean control by consolidation (seed 003 section 27, "otherwise in control"). Other
  relationship types (branches, fund management...) are set aside, counted in the summary.
* Both LEIs are validated (ISO 17442, ``normalize_lei``); a bad one is a row error. A child
  that is its own parent, or a (child, parent, type) repeated in the file, is a row error.
* Every consolidation record is stored as published, the inactive and lapsed ones too: a
  record that a later load marks INACTIVE (or ended, or lapsed) must displace the one it
  updates. It states control only when ACTIVE with a standing registration (PUBLISHED,
  PENDING_TRANSFER, PENDING_ARCHIVAL; not LAPSED, RETIRED, ANNULLED...), and, on the day of a
  check, while its relationship period has not ended and the record is still valid
  (``Relationship.not_control_on``). The summary counts, per type, the records stating
  control and the others with why (as of the load's date).
* What a load states: GLEIF publishes complete golden-copy files and deltas (the records that
  changed, each in full). A load is additive across children and complete per (child,
  relationship type) it names: the records of the newest-dated load (ties: the later load)
  naming a child with a type are that child's direct (or ultimate) parents; a later load
  naming it again replaces them (an INACTIVE record then stops the control, a new parent
  replaces the old), and children a load does not name keep what earlier loads said. A full
  file and a delta thus read alike, and an older-dated file loaded later never supersedes a
  newer one.
* Stored by LEI, never by issuer: the LEIs are resolved to issuers (issuer records carry
  ``lei``) when a snapshot is read, so a relationship loaded before its issuers, or through an
  LEI no issuer carries (A -> X -> B, X unknown), connects once the issuers are loaded.
* ``as_of`` is required (the provider's publication date); provider ``gleif`` by default.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import Adapter, LoadContext, duplicate_errors
from app.datasets.csvfile import CellError, CsvRow, SkipRow, parse_date
from app.datasets.records import CONSOLIDATION_TYPES, Relationship
from app.datasets.schemas import DatasetKind
from app.kit.errors import FieldError
from app.kit.identifiers import InvalidIdentifier, normalize_lei
from app.models import ConsolidationRecord

_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ]")


def _lei(column: str, raw: str) -> str:
    try:
        return normalize_lei(raw)
    except InvalidIdentifier as exc:
        raise CellError(column, str(exc)) from None


def _date(row: CsvRow, column: str, label: str) -> dt.date | None:
    """A GLEIF date: ISO 8601, usually a timestamp (2017-10-18T00:00:00Z); its day."""
    raw = row.get(column)
    if not raw:
        return None
    match = _TIMESTAMP.match(raw)
    return parse_date(label, match.group(1) if match else raw)


class GleifRelationshipsAdapter(Adapter):
    kind = DatasetKind.gleif_relationships
    target = ConsolidationRecord
    required_columns = (
        "start node lei",
        "end node lei",
        "relationship type",
        "relationship status",
        "rr registration status",
    )
    # The golden copy's RR-CDF CSV names (headers compare lower-cased, _ / and blanks alike).
    column_aliases = {
        "relationship.startnode.nodeid": "start node lei",
        "relationship.endnode.nodeid": "end node lei",
        "relationship.relationshiptype": "relationship type",
        "relationship.relationshipstatus": "relationship status",
        "registration.registrationstatus": "rr registration status",
        "registration status": "rr registration status",
        "relationship.period.1.startdate": "relationship period start",
        "relationship.period.1.enddate": "relationship period end",
    }
    default_provider = "gleif"
    as_of_required = True
    stage_columns = (
        ("start_lei", str),
        ("end_lei", str),
        ("relationship_type", str),
        ("relationship_status", str),
        ("registration_status", str),
        ("period_start", dt.date),
        ("period_end", dt.date),
        ("valid_from", dt.date),
        ("valid_to", dt.date),
        ("as_of", dt.date),
    )
    column_labels = {
        "start_lei": "start_node_lei",
        "end_lei": "end_node_lei",
        "registration_status": "rr_registration_status",
    }

    def __init__(self) -> None:
        # (type, why not control or "control") -> records, counted as the rows are read.
        self.counts: Counter[tuple[str, str]] = Counter()
        self.leis: set[str] = set()

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        start = _lei("start_node_lei", row.require("start node lei"))
        end = _lei("end_node_lei", row.require("end node lei"))
        kind = row.require("relationship type").strip().upper()
        if kind not in CONSOLIDATION_TYPES:
            raise SkipRow(f"not a consolidation relationship ({kind})", f"{start} {kind} {end}")
        if start == end:
            raise CellError("end_node_lei", "an entity cannot be consolidated by itself")
        status = row.require("relationship status").strip().upper()
        registration = row.require("rr registration status").strip().upper()
        period_start = _date(row, "relationship period start", "relationship_period_start")
        period_end = _date(row, "relationship period end", "relationship_period_end")
        valid_from = _date(row, "valid from", "valid_from")
        valid_to = _date(row, "valid to", "valid_to")
        assert ctx.dated is not None
        record = Relationship(
            start, end, kind, status, registration, period_end, valid_to, ctx.dated, 0, 0
        )
        self.counts[(kind, record.not_control_on(ctx.dated) or "control")] += 1
        self.leis.update((start, end))
        return [
            (
                start,
                end,
                kind,
                status,
                registration,
                period_start,
                period_end,
                valid_from,
                valid_to,
                ctx.dated,
            )
        ]

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = await duplicate_errors(
            conn,
            stage,
            ["start_lei", "end_lei", "relationship_type"],
            "relationship (start_node_lei, end_node_lei, relationship_type)",
        )
        by_type: dict[str, dict[str, Any]] = {}
        for (kind, why), count in sorted(self.counts.items()):
            part = by_type.setdefault(kind, {"control": 0, "not_control": {}})
            if why == "control":
                part["control"] = count
            else:
                part["not_control"][why] = count
        ctx.note("relationships", by_type)
        ctx.note("leis", len(self.leis))
        ctx.note(
            "reading",
            "ACTIVE records with a standing registration (PUBLISHED, PENDING_TRANSFER, "
            "PENDING_ARCHIVAL) whose period has not ended state control by consolidation; per "
            "child and type, this load's records replace earlier loads' (counted as of "
            f"{ctx.dated.isoformat() if ctx.dated else 'the load date'})",
        )
        return errors
