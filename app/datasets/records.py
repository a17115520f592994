"""What some loads are, as plain values: an arms-embargoes or sanctions-list load, and a GLEIF
relationship record. Pure (no I/O): the loaders summarise with them and the screening snapshot
reads them, so they live below both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EmbargoLoad:
    """One arms-embargoes load: the complete list of its provider as of its date."""

    dataset_id: int
    provider: str
    as_of: dt.date


def in_force(since: dt.date | None, until: dt.date | None, day: dt.date) -> bool:
    """An embargo from ``since`` (inclusive) to ``until`` (exclusive: lifted that day)."""
    return (since is None or since <= day) and (until is None or day < until)


def current_embargo_loads(loads: Iterable[EmbargoLoad], day: dt.date) -> dict[str, EmbargoLoad]:
    """Per provider, its arms-embargoes load with the newest provider date (``as_of``) on or
    before ``day``: that provider's complete list then. Ties on ``as_of``: the later load.

    Lists follow the rule facts follow: the provider's date decides, not the load order, so an
    older-dated file loaded later (a back-fill, an archive) never supersedes a newer list; it is
    still recorded, and a day between the two dates reads it (contract, "Loads that replace a
    list"). A lifted embargo is simply absent from the provider's next list.

    The one place this rule lives: the engine (checks, lists and their ``since``) and
    /v1/countries all read the current lists through it.
    """
    latest: dict[str, EmbargoLoad] = {}
    for load in loads:
        if load.as_of > day:
            continue
        held = latest.get(load.provider)
        if held is None or (load.as_of, load.dataset_id) > (held.as_of, held.dataset_id):
            latest[load.provider] = load
    return latest


# GLEIF relationship types that mean control by consolidation (seed 003 section 27: a parent
# "exercises decisive influence"; accounting consolidation is that control).
DIRECTLY_CONSOLIDATED = "IS_DIRECTLY_CONSOLIDATED_BY"
ULTIMATELY_CONSOLIDATED = "IS_ULTIMATELY_CONSOLIDATED_BY"
CONSOLIDATION_TYPES = (DIRECTLY_CONSOLIDATED, ULTIMATELY_CONSOLIDATED)
# Registration statuses of a relationship record whose data stands: a LAPSED record was not
# renewed (its data is no longer validated); RETIRED, ANNULLED, DUPLICATE... are withdrawn.
STANDING_REGISTRATIONS = frozenset({"PUBLISHED", "PENDING_TRANSFER", "PENDING_ARCHIVAL"})


@dataclass(frozen=True)
class Relationship:
    """One GLEIF relationship record (``consolidation_links``): child LEI consolidated by
    parent LEI, with its status as published."""

    start_lei: str
    end_lei: str
    relationship_type: str
    relationship_status: str
    registration_status: str
    period_end: dt.date | None
    valid_to: dt.date | None
    as_of: dt.date
    dataset_id: int
    source_row: int

    def not_control(self) -> str | None:
        """Why the record does not state control whatever the day (None: it does)."""
        if self.relationship_status != "ACTIVE":
            return f"relationship status {self.relationship_status or 'not given'}"
        if self.registration_status not in STANDING_REGISTRATIONS:
            return f"registration {self.registration_status or 'not given'}"
        return None

    def not_control_on(self, day: dt.date) -> str | None:
        """Why the record does not state control on ``day`` (None: it does): inactive, its
        registration lapsed or withdrawn, the relationship's period ended, or the record
        superseded (valid_to) by then."""
        why = self.not_control()
        if why is not None:
            return why
        if self.period_end is not None and self.period_end <= day:
            return f"relationship ended {self.period_end.isoformat()}"
        if self.valid_to is not None and self.valid_to <= day:
            return f"record valid until {self.valid_to.isoformat()}"
        return None
