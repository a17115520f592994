"""Resolving published exclusion entries to issuers: propose, confirm (four eyes), reject, revoke
(four eyes too); and the issuer facts a confirmation writes.

An entry's status is its latest step's: none, ``unresolved``; propose, ``proposed``; confirm,
``confirmed``; reject or revoke, ``rejected`` (a new proposal may follow). Taking a confirmation
back loosens verdicts, so it takes two keys like making it: a first ``revoke`` asks
(``ask-revoke``: status ``revocation_proposed``, the confirmation still stands), a second by
another key carries it out; ``reject`` withdraws the request (``keep``: confirmed again).

Only confirmed entries reach the engine, as ``peer_exclusion.excluded`` or
``peer_exclusion.observation`` issuer facts. A confirm or revoke recomputes the issuer's value
of the metric its entry's decision bears on, from every entry then confirmed to that issuer
(the newest published decision decides: a day, month or year orders by its first day, then the
load and row), and records it as a dataset of its own (``published-exclusion-resolution``): the
data version moves, checks and the compiled index read the fact, and a decision replays as of
it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.schemas import Actor
from app.datasets.repository import DatasetRepository
from app.datasets.schemas import RESOLUTION_KIND
from app.kit.errors import Conflict, FieldError, FourEyesRequired, InvalidInput, NotFound
from app.kit.time import utcnow
from app.models import Dataset, ExclusionResolution, Fact, PublishedExclusion
from app.models.published_exclusion import (
    EXCLUSION,
    OBSERVATION,
    OBSERVATION_ENDED,
    REVOCATION,
)
from app.published_exclusions import matching
from app.published_exclusions.repository import EntryKey, PublishedExclusionRepository
from app.published_exclusions.schemas import (
    CandidateList,
    CandidateRead,
    EntryDetail,
    EntryList,
    EntryRead,
    EntryStatus,
    ResolutionRead,
)

EXCLUDED = "peer_exclusion.excluded"
OBSERVED = "peer_exclusion.observation"
# What each decision says, per metric: (metric, value).
EFFECTS: dict[str, tuple[str, bool]] = {
    EXCLUSION: (EXCLUDED, True),
    REVOCATION: (EXCLUDED, False),
    OBSERVATION: (OBSERVED, True),
    OBSERVATION_ENDED: (OBSERVED, False),
}
_STATUS = {
    "propose": "proposed",
    "confirm": "confirmed",
    "reject": "rejected",
    "ask-revoke": "revocation_proposed",
    "keep": "confirmed",
    "revoke": "rejected",
}
# The steps after which an entry's confirmation stands (it reaches the engine).
STANDING = frozenset({"confirm", "ask-revoke", "keep"})
_ENTRY_ID = re.compile(r"^(\d{1,12})-(\d{1,9})$")
# Fact.source_field's width: the short form of the evidence (the dataset's summary has it all).
_FIELD_CHARS = 64


def entry_id(entry: PublishedExclusion) -> str:
    return f"{entry.dataset_id}-{entry.source_row}"


def parse_entry_id(raw: str) -> EntryKey:
    match = _ENTRY_ID.match(raw)
    if match is None:
        raise InvalidInput(
            f"{raw!r} is not an entry id: `{{dataset_id}}-{{source_row}}`, e.g. 12-53.",
            errors=[FieldError(loc=("path", "entry_id"), msg="not an entry id")],
        )
    return int(match.group(1)), int(match.group(2))


def _key(step: ExclusionResolution) -> EntryKey:
    return step.entry_dataset_id, step.entry_source_row


def _latest(steps: Iterable[ExclusionResolution]) -> dict[EntryKey, ExclusionResolution]:
    latest: dict[EntryKey, ExclusionResolution] = {}
    for step in steps:  # oldest first
        latest[_key(step)] = step
    return latest


def _status(step: ExclusionResolution | None) -> EntryStatus:
    if step is None:
        return "unresolved"
    status: EntryStatus = _STATUS[step.action]  # type: ignore[assignment]
    return status


def _confidence(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _entry_fields(entry: PublishedExclusion, latest: ExclusionResolution | None) -> dict[str, Any]:
    return {
        **_published(entry),
        "action": entry.action,
        "date_kind": entry.date_kind,
        "note": entry.note,
        "status": _status(latest),
        "issuer_id": latest.issuer_id if latest is not None else None,
        "confidence": _confidence(latest.confidence) if latest is not None else None,
    }


def _step_read(step: ExclusionResolution) -> ResolutionRead:
    return ResolutionRead(
        id=step.id,
        action=step.action,
        issuer_id=step.issuer_id,
        confidence=float(step.confidence),
        at=step.at,
        by=step.actor,
        note=step.note,
        dataset_id=step.dataset_id,
    )


async def list_entries(
    session: AsyncSession,
    *,
    status: EntryStatus | None,
    investor: str | None,
    dataset_id: int | None,
) -> EntryList:
    """Every entry (of ``investor``, of one load) with its status; ``status`` filters."""
    repository = PublishedExclusionRepository(session)
    entries = await repository.entries(investor=investor, dataset_id=dataset_id)
    latest = _latest(await repository.resolutions())
    listed = [
        EntryRead(**_entry_fields(e, latest.get((e.dataset_id, e.source_row)))) for e in entries
    ]
    if status is not None:
        listed = [e for e in listed if e.status == status]
    return EntryList(count=len(listed), entries=listed)


async def _entry(repository: PublishedExclusionRepository, raw_id: str) -> PublishedExclusion:
    entry = await repository.entry(parse_entry_id(raw_id))
    if entry is None:
        raise NotFound(
            f"No published-exclusions entry {raw_id}: list them with GET /v1/published-exclusions."
        )
    return entry


async def get_entry(session: AsyncSession, raw_id: str) -> EntryDetail:
    repository = PublishedExclusionRepository(session)
    entry = await _entry(repository, raw_id)
    steps = await repository.resolutions([(entry.dataset_id, entry.source_row)])
    return EntryDetail(
        **_entry_fields(entry, steps[-1] if steps else None),
        resolutions=[_step_read(s) for s in steps],
    )


async def candidates(session: AsyncSession, raw_id: str, limit: int) -> CandidateList:
    """The issuers known now whose names best match the entry's company name."""
    repository = PublishedExclusionRepository(session)
    entry = await _entry(repository, raw_id)
    issuers = await repository.current_issuers()
    found = matching.candidates(entry.company, {i: n for i, (n, _) in issuers.items()}, limit)
    return CandidateList(
        entry_id=entry_id(entry),
        company=entry.company,
        compared_as=matching.variants(entry.company),
        candidates=[
            CandidateRead(
                issuer_id=c.issuer_id,
                name=c.name,
                country=issuers[c.issuer_id][1],
                confidence=float(c.confidence),
                exact=c.exact,
            )
            for c in found
        ],
    )


@dataclass(frozen=True)
class _Step:
    repository: PublishedExclusionRepository
    entry: PublishedExclusion
    steps: Sequence[ExclusionResolution]  # oldest first

    @property
    def latest(self) -> ExclusionResolution | None:
        return self.steps[-1] if self.steps else None

    def confirmation(self) -> ExclusionResolution:
        """The step that confirmed the entry (it is confirmed, or its revocation asked)."""
        return next(s for s in reversed(self.steps) if s.action == "confirm")


async def _begin(session: AsyncSession, raw_id: str) -> _Step:
    """The entry and its latest step, under the load lock: steps on one entry, and the data
    versions they allocate, are serialized with each other and with loads."""
    repository = PublishedExclusionRepository(session)
    entry = await _entry(repository, raw_id)  # a bad id is refused before taking the lock
    await DatasetRepository(session).lock_loads()
    steps = await repository.resolutions([(entry.dataset_id, entry.source_row)])
    return _Step(repository, entry, steps)


def _refuse(step: _Step, action: str, allowed: Sequence[EntryStatus]) -> None:
    status = _status(step.latest)
    if status not in allowed:
        raise Conflict(
            f"Entry {entry_id(step.entry)} is {status}: only a {' or '.join(allowed)} entry can "
            f"be {action}. Nothing was written."
        )


async def propose(
    session: AsyncSession, actor: Actor, raw_id: str, issuer_id: str, note: str | None
) -> EntryDetail:
    """Propose that the entry's company is ``issuer_id`` (an issuer known now), recording the
    name match's confidence. Errors: 404 unknown entry, 422 unknown issuer, 409 the entry is
    confirmed (revoke it first)."""
    step = await _begin(session, raw_id)
    _refuse(step, "proposed", ("unresolved", "proposed", "rejected"))
    name = await step.repository.issuer_name(issuer_id)
    if name is None:
        raise InvalidInput(
            f"No issuer {issuer_id!r} is known: propose one of the candidates "
            f"(GET /v1/published-exclusions/{entry_id(step.entry)}/candidates), or load the "
            "issuer first. Nothing was written.",
            errors=[FieldError(loc=("body", "issuer_id"), msg="unknown issuer")],
        )
    await _record(
        step, actor, "propose", issuer_id, matching.confidence(step.entry.company, name), note
    )
    return await get_entry(session, entry_id(step.entry))


async def confirm(
    session: AsyncSession, actor: Actor, raw_id: str, note: str | None
) -> EntryDetail:
    """Confirm the pending proposal: only by a key other than the proposer's (403
    ``four-eyes-required``). Writes the issuer's peer_exclusion fact (a new data version)."""
    step = await _begin(session, raw_id)
    _refuse(step, "confirmed", ("proposed",))
    proposal = step.latest
    assert proposal is not None
    _four_eyes(actor, proposal, f"entry {entry_id(step.entry)} was proposed", "confirm it")
    dataset_id = await _write_fact(step, actor, "confirm", proposal, note)
    await _record(step, actor, "confirm", proposal.issuer_id, proposal.confidence, note, dataset_id)
    return await get_entry(session, entry_id(step.entry))


def _four_eyes(actor: Actor, asked: ExclusionResolution, what: str, then: str) -> None:
    if (actor.key_id is not None and actor.key_id == asked.actor_key_id) or (
        actor.name == asked.actor
    ):
        raise FourEyesRequired(
            f"four eyes: {what} by {asked.actor!r}; another key must {then}. Nothing was written."
        )


async def reject(session: AsyncSession, actor: Actor, raw_id: str, note: str | None) -> EntryDetail:
    """Reject the pending proposal (the name is not that issuer), or withdraw a pending
    request to revoke (the confirmation stands: ``keep``). 409 otherwise."""
    step = await _begin(session, raw_id)
    _refuse(step, "rejected", ("proposed", "revocation_proposed"))
    pending = step.latest
    assert pending is not None
    action = "keep" if pending.action == "ask-revoke" else "reject"
    await _record(step, actor, action, pending.issuer_id, pending.confidence, note)
    return await get_entry(session, entry_id(step.entry))


async def revoke(session: AsyncSession, actor: Actor, raw_id: str, note: str | None) -> EntryDetail:
    """Revoke a confirmation (the resolution was wrong), in two steps by two keys: the first
    asks (the confirmation stands meanwhile), the second, by another key (403
    ``four-eyes-required`` for the same), recomputes the issuer's fact without the entry
    (false when nothing confirmed is left). 409 unless confirmed or its revocation asked."""
    step = await _begin(session, raw_id)
    _refuse(step, "revoked", ("confirmed", "revocation_proposed"))
    latest = step.latest
    assert latest is not None
    if latest.action != "ask-revoke":
        await _record(step, actor, "ask-revoke", latest.issuer_id, latest.confidence, note)
        return await get_entry(session, entry_id(step.entry))
    _four_eyes(actor, latest, f"revoking entry {entry_id(step.entry)} was asked", "carry it out")
    confirmed = step.confirmation()
    dataset_id = await _write_fact(step, actor, "revoke", confirmed, note)
    await _record(
        step, actor, "revoke", confirmed.issuer_id, confirmed.confidence, note, dataset_id
    )
    return await get_entry(session, entry_id(step.entry))


async def _record(
    step: _Step,
    actor: Actor,
    action: str,
    issuer_id: str,
    confidence: Decimal,
    note: str | None,
    dataset_id: int | None = None,
) -> None:
    await step.repository.add(
        ExclusionResolution(
            entry_dataset_id=step.entry.dataset_id,
            entry_source_row=step.entry.source_row,
            action=action,
            issuer_id=issuer_id,
            confidence=confidence,
            at=utcnow(),
            actor=actor.name,
            actor_key_id=actor.key_id,
            note=note,
            dataset_id=dataset_id,
        )
    )


def _order(entry: PublishedExclusion) -> tuple[dt.date, int, int]:
    """Newest published decision last: its period's first day (undated: first), load, row."""
    return entry.period_start or dt.date.min, entry.dataset_id, entry.source_row


def _published(entry: PublishedExclusion) -> dict[str, Any]:
    return {
        "entry_id": entry_id(entry),
        "dataset_id": entry.dataset_id,
        "source_row": entry.source_row,
        "investor": entry.investor,
        "company": entry.company,
        "criterion": entry.criterion,
        "decision": entry.decision,
        "date": entry.published_date,
        "date_precision": entry.date_precision,
        "source_url": entry.source_url,
    }


async def _write_fact(
    step: _Step, actor: Actor, action: str, previous: ExclusionResolution, note: str | None
) -> int | None:
    """Recompute and record the issuer's value of the metric the entry bears on; returns the
    dataset recording it (None: the decision bears on no metric, nothing to write)."""
    effect = EFFECTS.get(step.entry.action)
    if effect is None:
        return None
    metric = effect[0]
    issuer_id = previous.issuer_id
    repository = step.repository
    acted: EntryKey = (step.entry.dataset_id, step.entry.source_row)
    latest = _latest(await repository.resolutions_naming(issuer_id))
    keys = {
        key
        for key, s in latest.items()
        if s.action in STANDING and s.issuer_id == issuer_id and key != acted
    }
    if action == "confirm":
        keys.add(acted)
    entries = await repository.entries_by_key(keys)
    bearing = sorted(
        (e for e in entries.values() if EFFECTS.get(e.action, ("",))[0] == metric), key=_order
    )
    deciding = bearing[-1] if bearing else step.entry
    value = EFFECTS[deciding.action][1] if bearing else False
    # The fact is as of the list it was read from; never older than the issuer's previous
    # point of the metric, so the newest point is always the latest recomputation.
    dates = await repository.load_dates({e.dataset_id for e in (*bearing, step.entry)})
    as_of = max(dates.values())
    previous_date = await repository.newest_fact_date(issuer_id, metric)
    if previous_date is not None:
        as_of = max(as_of, previous_date)
    shown = "true" if value else "false"
    published = deciding.published_date or "undated"
    field = f"{deciding.decision} {published}, entry {entry_id(deciding)}"
    if not bearing:
        field = f"no confirmed entry left (revoked {entry_id(step.entry)})"
    summary = {
        "action": action,
        "entry": _published(step.entry),
        "issuer_id": issuer_id,
        "confidence": float(previous.confidence),
        "proposed_by": previous.actor if action == "confirm" else None,
        "confirmed_by": actor.name if action == "confirm" else previous.actor,
        "revoked_by": actor.name if action == "revoke" else None,
        "note": note,
        "fact": {
            "source_row": 1,
            "metric": metric,
            "value": shown,
            "provider": deciding.investor,
            "as_of": as_of.isoformat(),
            "deciding_entry": _published(deciding) if bearing else None,
            "confirmed_entries": sorted(entry_id(e) for e in bearing),
        },
    }
    datasets = DatasetRepository(repository.session)
    dataset_id = await datasets.next_id()  # under the load lock (``_begin``)
    digest = hashlib.sha256(
        json.dumps(
            {"after_step": previous.id, "action": action, "summary": summary}, sort_keys=True
        ).encode("utf-8")
    ).hexdigest()
    await datasets.add(
        Dataset(
            id=dataset_id,
            kind=RESOLUTION_KIND,
            provider=deciding.investor,
            as_of=as_of,
            sha256=digest,
            rows=1,
            loaded_at=utcnow(),
            loaded_by=actor.name,
            loaded_by_key_id=actor.key_id,
            source_name=f"published-exclusions entry {entry_id(step.entry)}: {action}",
            summary=summary,
            mode="",
            policy="",
        )
    )
    await repository.add_fact(
        Fact(
            dataset_id=dataset_id,
            source_row=1,
            issuer_id=issuer_id,
            country=None,
            issuer_ref=entry_id(deciding),
            metric=metric,
            provider=deciding.investor,
            value=shown,
            as_of=as_of,
            source_field=field[:_FIELD_CHARS],
        )
    )
    return dataset_id
