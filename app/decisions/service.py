"""Reading the decision log: one decision, listings, replay, and verifying the chain.

Decisions are written only by ``app.decisions.log.DecisionLog``; nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.schemas import Actor
from app.decisions.chain import (
    ASSIGNED_KEYS,
    GENESIS,
    DecisionEntryInvalid,
    Projection,
    chain_hash,
    project,
)
from app.decisions.repository import DecisionFilters, DecisionRepository
from app.decisions.schemas import ChainVerification, CheckpointCheck, CheckpointStatus
from app.decisions.signing import (
    NO_PREVIOUS,
    CheckpointSigner,
    CheckpointTrust,
    link_of,
    message,
    signed_message_of,
)
from app.kit.canonical import canonical_bytes, json_ready, rfc3339
from app.kit.errors import AppError, Conflict, FieldError, InvalidInput, NotFound
from app.kit.time import utcnow
from app.models import DecisionCheckpoint

# Rows read per query while verifying: memory stays flat whatever the range.
VERIFY_PAGE = 1000

# Listing pages: the default and the most a client may ask for.
PAGE_DEFAULT = 100
PAGE_MAX = 1000

_CURSOR_VERSION = "d1"


def _stored(row: Any) -> dict[str, Any]:
    """The payload exactly as returned to the client, plus ``audit`` (who asked, the chain)."""
    decision: dict[str, Any] = orjson.loads(row.payload)
    decision["audit"] = {
        "seq": row.seq,
        "requested_by": row.requested_by,
        "requested_by_key_id": (
            None if row.requested_by_key_id is None else str(row.requested_by_key_id)
        ),
        "request_id": row.request_id,
        "request": orjson.loads(row.request),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }
    return decision


async def get_decision(session: AsyncSession, decision_id: uuid.UUID) -> dict[str, Any]:
    return _stored(await _row(DecisionRepository(session), decision_id))


async def _row(repository: DecisionRepository, decision_id: uuid.UUID) -> Any:
    row = await repository.get(decision_id)
    if row is None:
        first = await repository.first_seq()
        archived = None
        if first is not None and first > 1:
            archived = await repository.checkpoint_before(first - 1)
        if first is not None and archived is not None and archived.seq == first - 1:
            # The decisions before the live log's first were archived (README, Retention).
            raise NotFound(
                f"There is no decision {decision_id} in the live log, which starts at seq "
                f"{first}; the decisions up to {archived.seq} were archived (checkpoint "
                f"{archived.seq}: {archived.archive or 'see its manifest'})."
            )
        raise NotFound(f"There is no decision {decision_id}.")
    return row


# -- listing -------------------------------------------------------------------------------------


def _fingerprint(filters: DecisionFilters) -> str:
    """A short digest of the filters a cursor was issued for."""
    stated = {
        "isin": filters.isin,
        "issuer_id": filters.issuer_id,
        "policy_key": filters.policy_key,
        "verdict": filters.verdict,
        "from": None if filters.decided_from is None else rfc3339(filters.decided_from),
        "to": None if filters.decided_before is None else rfc3339(filters.decided_before),
    }
    return hashlib.sha256(canonical_bytes(stated)).hexdigest()[:16]


def encode_cursor(last_seq: int, filters: DecisionFilters) -> str:
    text = f"{_CURSOR_VERSION}.{last_seq}.{_fingerprint(filters)}"
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def _bad_cursor(message: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(loc=("query", "cursor"), msg=message)])


def decode_cursor(cursor: str, filters: DecisionFilters) -> int:
    """The seq a cursor continues after; 422 if it is not ours or was issued for other filters."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, seq, fingerprint = text.split(".")
        last_seq = int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad_cursor("The cursor is not one this service issued.") from None
    if version != _CURSOR_VERSION or last_seq < 0:
        raise _bad_cursor("The cursor is not one this service issued.")
    if fingerprint != _fingerprint(filters):
        raise _bad_cursor(
            "The cursor was issued for other filters: repeat the filters of the request that "
            "returned it, or start again without a cursor."
        )
    return last_seq


async def list_decisions(
    session: AsyncSession, filters: DecisionFilters, cursor: str | None, limit: int
) -> dict[str, Any]:
    """One page of matching decisions in chain order (ascending seq) and the next page's cursor.

    Keyset pagination on seq: a page continues strictly after the previous page's last seq, so
    decisions appended meanwhile (always at the end of the chain) appear on later pages and
    none is skipped or repeated. ``next_cursor`` is null when nothing more matches now.
    """
    after = 0 if cursor is None else decode_cursor(cursor, filters)
    rows = await DecisionRepository(session).listing(filters, after, limit + 1)
    more = len(rows) > limit
    page = rows[:limit]
    return {
        "decisions": [_stored(row) for row in page],
        "next_cursor": encode_cursor(page[-1].seq, filters) if more else None,
    }


# -- replay --------------------------------------------------------------------------------------


def _pointer(path: str, key: str | int) -> str:
    """``path`` extended by one JSON Pointer (RFC 6901) reference token."""
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


_ABSENT: Any = object()  # a key or an item one side lacks (shown as null)


def _shown(value: Any) -> Any:
    return None if value is _ABSENT else value


def differences(original: Any, recomputed: Any, path: str = "") -> Iterator[dict[str, Any]]:
    """Every leaf where two JSON values differ, as ``{path, original, recomputed}``.

    Objects are compared key by key (sorted), arrays item by item (an item only one side has
    is a difference at its index); anything else by value and type (``1`` is not ``true``).
    A key only one side has is a difference even when the other side's value is null.
    """
    if isinstance(original, dict) and isinstance(recomputed, dict):
        for key in sorted(original.keys() | recomputed.keys()):
            yield from differences(
                original.get(key, _ABSENT), recomputed.get(key, _ABSENT), _pointer(path, key)
            )
    elif isinstance(original, list) and isinstance(recomputed, list):
        for index in range(max(len(original), len(recomputed))):
            yield from differences(
                original[index] if index < len(original) else _ABSENT,
                recomputed[index] if index < len(recomputed) else _ABSENT,
                _pointer(path, index),
            )
    elif type(original) is not type(recomputed) or original != recomputed:
        yield {"path": path, "original": _shown(original), "recomputed": _shown(recomputed)}


def _hash_ok(row: Any) -> bool:
    key_id = row.requested_by_key_id
    return bool(
        chain_hash(
            row.prev_hash,
            seq=row.seq,
            decision_id=str(row.decision_id),
            requested_by=row.requested_by,
            requested_by_key_id=None if key_id is None else str(key_id),
            request_id=row.request_id,
            request=row.request,
            payload=row.payload,
        )
        == row.hash
    )


class Recompute(Protocol):
    """Evaluates a stored payload (without decision_id/decided_at) again, as it would be
    stored now. The screening service's ``recompute``; passed in by the caller (the app wires
    it: ``app.state.recompute``) because screening writes to this log: the log must not
    import the engine that writes to it."""

    async def __call__(self, session: AsyncSession, payload: dict[str, Any]) -> dict[str, Any]: ...


async def replay(
    session: AsyncSession, decision_id: uuid.UUID, recompute: Recompute
) -> dict[str, Any]:
    """Recompute a stored decision from its own policy versions and data version, and compare.

    ``decision_id`` and ``decided_at`` are the log's, not the engine's: they are left out of
    the recomputation and the comparison. A payload that names no policy version or data state
    we hold cannot be recomputed: it does not match, and ``problem`` says why.
    """
    row = await _row(DecisionRepository(session), decision_id)
    original: dict[str, Any] = orjson.loads(row.payload)
    asked = {key: value for key, value in original.items() if key not in ASSIGNED_KEYS}
    recomputed: dict[str, Any] | None
    problem: str | None = None
    try:
        recomputed = json_ready(await recompute(session, asked))
    except AppError as exc:
        recomputed, problem = None, f"The decision cannot be recomputed: {exc.detail}"
    except (KeyError, TypeError, ValueError) as exc:
        recomputed = None
        problem = f"The stored decision lacks what recomputing needs ({exc!r})."
    found = [] if recomputed is None else list(differences(asked, recomputed))
    return {
        "decision_id": str(decision_id),
        "matches": recomputed is not None and not found,
        "hash_ok": _hash_ok(row),
        "problem": problem,
        "original": original,
        "recomputed": recomputed,
        "differences": found,
    }


def _problem(row: Any, expected_seq: int, expected_prev: str | None) -> str | None:
    """What is wrong with one stored decision, given what the chain before it says; or None."""
    if row.seq != expected_seq:
        return f"decisions {expected_seq} to {row.seq - 1} (by seq) are missing before it"
    if expected_prev is None:
        return f"the decision before it (seq {row.seq - 1}) is missing"
    if row.prev_hash != expected_prev:
        return "its prev_hash is not the previous decision's hash"
    if not _hash_ok(row):
        return "its stored content does not match its hash: it was altered"
    # The hash covers the texts; the query columns must say what the payload says.
    try:
        payload = orjson.loads(row.payload)
        projection = project(payload, orjson.loads(row.request))
    except (orjson.JSONDecodeError, DecisionEntryInvalid):
        return "its payload is not a valid decision"
    if payload.get("decision_id") != str(row.decision_id):
        return "its decision_id column differs from its payload"
    if payload.get("decided_at") != rfc3339(row.decided_at):
        return "its decided_at column differs from its payload"
    stored = Projection(
        as_of=row.as_of,
        policy_key=row.policy_key,
        policy_version=row.policy_version,
        policy_sha256=row.policy_sha256,
        data_version=row.data_version,
        isin=row.isin,
        issuer_id=row.issuer_id,
        verdict=row.verdict,
        may_hold=row.may_hold,
    )
    if stored != projection:
        differing = [
            name
            for name in Projection.__dataclass_fields__
            if getattr(stored, name) != getattr(projection, name)
        ]
        return f"its {', '.join(differing)} column(s) differ from its payload"
    return None


async def verify(
    session: AsyncSession,
    start: dt.datetime | None,
    end: dt.datetime | None,
    trust: CheckpointTrust | None = None,
) -> ChainVerification:
    """Walk the chain over the decisions decided in [start, end), in seq order, page by page,
    and check the checkpoints it rests on.

    Each decision's hash is recomputed from its stored fields and the previous decision's
    hash; the first decision of the range links to the one before it, to the checkpoint
    recorded for it when it was archived, or to the genesis hash. Stops at the first bad
    decision. Every checkpoint decided before ``end`` (all without it) is checked, oldest
    first: its signature against ``trust``'s public keys (none given: no key is trusted, so
    no checkpoint is ever reported signed), and its link to the checkpoint before it.
    """
    trust = trust or CheckpointTrust()
    repository = DecisionRepository(session)
    bounds = await repository.seq_range(start, end)
    if bounds is None:
        walked = ChainVerification(
            checked=0,
            ok=True,
            first_bad_id=None,
            first_bad_seq=None,
            problem=None,
            from_seq=None,
            to_seq=None,
            last_hash=None,
            checkpoint_seq=None,
        )
    else:
        walked = await _walk(repository, *bounds)
    checks = check_checkpoints(await repository.checkpoints_decided_before(end), trust)
    bad = next((check for check in checks if _is_problem(check, trust)), None)
    update: dict[str, Any] = {
        "checkpoints": checks,
        "signatures_required": trust.require_signed,
    }
    if bad is not None:
        update |= {
            "ok": False,
            "first_bad_checkpoint_seq": bad.seq,
            "checkpoint_problem": bad.problem,
            "last_hash": None,
        }
        if walked.ok:
            update["problem"] = f"checkpoint {bad.seq}: {bad.problem}"
    return walked.model_copy(update=update)


# -- the checkpoint chain ------------------------------------------------------------------------


def _is_problem(check: CheckpointCheck, trust: CheckpointTrust) -> bool:
    # An unsigned checkpoint is a problem only when signatures are required and no signed
    # checkpoint after it vouches for it (its problem is then set, see check_checkpoints).
    return check.status != "signed" and (check.status != "unsigned" or check.problem is not None)


def check_checkpoints(
    rows: Sequence[DecisionCheckpoint],
    trust: CheckpointTrust,
    before: tuple[int, str] | None = None,
) -> list[CheckpointCheck]:
    """The status of each checkpoint (rows in seq order, from the first), see ``CheckpointCheck``.

    A checkpoint's signature covers the link to the checkpoint it names as previous (that
    one's signature, or its hash when unsigned): a checkpoint deleted from the table leaves
    the next one naming a predecessor that is not there (``broken_chain``); one rewritten,
    re-signed by a trusted key or not, no longer matches its own signature or the next one's.
    Checkpoints recorded before they were chained (no ``previous_seq``) can only come first.

    ``before``: when ``rows`` do not start at the first checkpoint (an archive's manifest
    states only its own stretch), the seq and the link (signature, or hash) of the one before
    them.
    """
    checks: list[CheckpointCheck] = []
    previous_row: DecisionCheckpoint | None = None
    chained = before is not None
    for row in rows:
        if previous_row is not None:
            previous_seq, previous = (
                previous_row.seq,
                link_of(previous_row.signature, previous_row.hash),
            )
        elif before is not None:
            previous_seq, previous = before
        else:
            previous_seq, previous = 0, NO_PREVIOUS
        status, problem = _checkpoint_status(row, previous_seq, previous, chained, trust)
        chained = chained or row.previous_seq is not None
        checks.append(
            CheckpointCheck(
                seq=row.seq,
                hash=row.hash,
                decided_at=rfc3339(row.decided_at),
                count=row.count,
                previous_seq=row.previous_seq,
                previous=previous if row.previous_seq == previous_seq else None,
                recorded_at=rfc3339(row.recorded_at),
                recorded_by=row.recorded_by,
                archive=row.archive,
                archive_sha256=row.archive_sha256,
                key_id=row.key_id,
                signature=row.signature,
                status=status,
                problem=problem,
            )
        )
        previous_row = row
    return _vouched(checks) if trust.require_signed else checks


def _vouched(checks: list[CheckpointCheck]) -> list[CheckpointCheck]:
    """Required signatures: an unsigned checkpoint before a signed one is vouched for by it. The
    signed one's message holds the seq and hash of the one before it, and each chain hash
    covers every decision before it, so a trusted signature later in the chain proves all that
    precedes it (what a log signed from some day on has: unsigned checkpoints first)."""
    signed = [n for n, check in enumerate(checks) if check.status == "signed"]
    if not signed:
        return checks
    return [
        check.model_copy(update={"problem": None})
        if n < signed[-1] and check.status == "unsigned"
        else check
        for n, check in enumerate(checks)
    ]


def _checkpoint_status(
    row: DecisionCheckpoint,
    before_seq: int,
    previous: str,
    chained: bool,
    trust: CheckpointTrust,
) -> tuple[CheckpointStatus, str | None]:
    """The status of one checkpoint given the one before it in the table, and what is wrong."""
    if row.previous_seq is None:
        if chained or row.signature is not None:
            return "broken_chain", "it names no previous checkpoint, after chained ones"
        # Recorded before checkpoints were chained and signed.
        return "unsigned", _unsigned(trust)
    if row.previous_seq != before_seq:
        before = f"checkpoint {before_seq}" if before_seq else "none"
        return "broken_chain", (
            f"it follows checkpoint {row.previous_seq or 'none (the first)'}, but the one before "
            f"it in the table is {before}: a checkpoint was deleted or inserted"
        )
    if row.count != row.seq - row.previous_seq:
        return "broken_chain", f"its count {row.count} is not seq - previous_seq"
    if row.signature is None:
        return "unsigned", _unsigned(trust)
    if row.key_id is None:
        return "bad_signature", "it has a signature but no key id"
    verified = trust.verifies(row.key_id, row.signature, signed_message_of(row, previous))
    if verified is None:
        return "unknown_key", (
            f"it is signed by key {row.key_id}, which this verifier does not trust (give its "
            "public key: MAYHOLD_CHECKPOINT_TRUSTED_KEYS)"
        )
    if not verified:
        return "bad_signature", (
            f"its signature (key {row.key_id}) does not match it: the checkpoint, or the link "
            "to the one before it, was rewritten"
        )
    return "signed", None


def _unsigned(trust: CheckpointTrust) -> str | None:
    if trust.require_signed:
        return "it is unsigned, and signed checkpoints are required"
    return None


async def _walk(repository: DecisionRepository, first: int, last: int) -> ChainVerification:
    """Verify the decisions with first <= seq <= last (see ``verify``)."""
    checkpoints = await repository.checkpoint_hashes(first - 1, last)
    prev: str | None = GENESIS if first == 1 else await repository.hash_at(first - 1)
    linked_to_checkpoint = prev is None and first - 1 in checkpoints
    if linked_to_checkpoint:  # the decisions before the range were archived
        prev = checkpoints[first - 1]
    expected_seq = first
    checked = 0
    after = first - 1
    while rows := await repository.page(after, last, VERIFY_PAGE):
        for row in rows:
            checked += 1
            problem = _problem(row, expected_seq, prev)
            if problem is None and checkpoints.get(row.seq, row.hash) != row.hash:
                problem = "its hash differs from the checkpoint recorded for it: rewritten"
            if problem is not None:
                return ChainVerification(
                    checked=checked,
                    ok=False,
                    first_bad_id=row.decision_id,
                    first_bad_seq=row.seq,
                    problem=problem,
                    from_seq=first,
                    to_seq=last,
                    last_hash=None,
                    checkpoint_seq=first - 1 if linked_to_checkpoint else None,
                )
            prev = row.hash
            expected_seq = row.seq + 1
        after = rows[-1].seq
    return ChainVerification(
        checked=checked,
        ok=True,
        first_bad_id=None,
        first_bad_seq=None,
        problem=None,
        from_seq=first,
        to_seq=last,
        last_hash=prev,
        checkpoint_seq=first - 1 if linked_to_checkpoint else None,
    )


# -- checkpoints ---------------------------------------------------------------------------------


async def record_checkpoint(
    session: AsyncSession,
    through_seq: int,
    actor: Actor,
    archive: str | None = None,
    archive_sha256: str | None = None,
    signer: CheckpointSigner | None = None,
    trust: CheckpointTrust | None = None,
) -> DecisionCheckpoint:
    """Vouch for the chain up to ``through_seq``: verify it, then record that decision's hash.

    The chain is verified from the latest checkpoint (or the first decision) through
    ``through_seq``; a bad decision is a 409 naming it, and nothing is recorded. Checkpoints
    only move forward. Once recorded, the decisions up to ``through_seq`` may be archived and
    removed from the live table: ``verify`` links the next decision to this checkpoint.

    The checkpoint is chained to the latest one (``previous_seq``, ``count``) and, with a
    ``signer``, signed (``app.decisions.signing``). With ``trust``, the checkpoints recorded so
    far are checked first, as verify would: a new checkpoint is never chained onto a bad one
    (409 naming it; an unsigned one is not bad here: a signed checkpoint after it vouches for
    its hash). When ``trust`` requires signed checkpoints, recording one without a ``signer``
    is a 409.
    """
    repository = DecisionRepository(session)
    if trust is not None:
        if trust.require_signed and signer is None:
            raise Conflict(
                "Signed checkpoints are required (MAYHOLD_REQUIRE_SIGNED_CHECKPOINTS) but no "
                "signing key is configured (MAYHOLD_CHECKPOINT_KEY_FILE). Nothing was recorded."
            )
        checks = check_checkpoints(await repository.checkpoints_decided_before(None), trust)
        bad = next((check for check in checks if check.status not in ("signed", "unsigned")), None)
        if bad is not None:
            raise Conflict(
                f"Checkpoint {bad.seq} ({bad.status}): {bad.problem}. Nothing was recorded."
            )
    latest = await repository.latest_checkpoint()
    if latest is not None and through_seq <= latest.seq:
        raise Conflict(
            f"Decisions up to {latest.seq} are checkpointed already; checkpoints only move forward."
        )
    decision = await repository.head_at(through_seq)
    first = await repository.first_seq()
    if decision is None or first is None:
        raise NotFound(f"There is no decision {through_seq} (by seq) in the live log.")
    walked = await _walk(repository, latest.seq + 1 if latest is not None else first, through_seq)
    if not walked.ok:
        raise Conflict(
            f"The chain is not sound up to {through_seq}: decision {walked.first_bad_seq} "
            f"({walked.first_bad_id}): {walked.problem}. Nothing was recorded."
        )
    previous_seq = 0 if latest is None else latest.seq
    recorded_at = utcnow()
    key_id = signature = None
    if signer is not None:
        key_id = signer.key_id
        signature = signer.sign(
            message(
                seq=through_seq,
                hash=decision.hash,
                decided_at=decision.decided_at,
                count=through_seq - previous_seq,
                previous_seq=previous_seq,
                previous=NO_PREVIOUS if latest is None else link_of(latest.signature, latest.hash),
                recorded_at=recorded_at,
                recorded_by=actor.name,
                key_id=key_id,
                archive=archive,
                archive_sha256=archive_sha256,
            )
        )
    checkpoint = DecisionCheckpoint(
        seq=through_seq,
        hash=decision.hash,
        decided_at=decision.decided_at,
        recorded_at=recorded_at,
        recorded_by=actor.name,
        archive=archive,
        archive_sha256=archive_sha256,
        previous_seq=previous_seq,
        count=through_seq - previous_seq,
        key_id=key_id,
        signature=signature,
    )
    await repository.add_checkpoint(checkpoint)
    return checkpoint


# -- the console: newest first, one record's chain status, the audit pack ------------------------


async def newest_decisions(
    session: AsyncSession, filters: DecisionFilters, before_seq: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of matching decisions, newest first, as stored (``get_decision``'s shape), and
    the seq to continue before (None: no more now). Keyset on seq read backwards: decisions
    logged meanwhile are newer than the first page and never shift the later ones."""
    rows = await DecisionRepository(session).newest(filters, before_seq, limit + 1)
    page = rows[:limit]
    return [_stored(row) for row in page], page[-1].seq if len(rows) > limit else None


@dataclass(frozen=True)
class RecordStatus:
    """One decision's place in the chain, as far as its neighbours show it.

    ``hash_ok``: its stored content gives its stored hash. ``linked_before``: its prev_hash is
    the previous decision's hash (or the genesis hash, or the checkpoint's for an archived
    predecessor); None when the previous decision is neither live nor checkpointed.
    ``linked_after``: the next decision's prev_hash is its hash; None when it is the newest.
    The whole range is what ``verify`` walks.
    """

    seq: int
    hash: str
    prev_hash: str
    hash_ok: bool
    linked_before: bool | None
    linked_after: bool | None

    @property
    def ok(self) -> bool:
        return self.hash_ok and self.linked_before is not False and self.linked_after is not False


async def record_status(session: AsyncSession, decision_id: uuid.UUID) -> RecordStatus:
    """The chain status of one stored decision (404 when there is none)."""
    repository = DecisionRepository(session)
    row = await _row(repository, decision_id)
    before, after = await repository.neighbour_hashes(row.seq)
    if row.seq == 1:
        before = GENESIS
    elif before is None:
        checkpoint = await repository.checkpoint_before(row.seq - 1)
        if checkpoint is not None and checkpoint.seq == row.seq - 1:
            before = checkpoint.hash
    return RecordStatus(
        seq=row.seq,
        hash=row.hash,
        prev_hash=row.prev_hash,
        hash_ok=_hash_ok(row),
        linked_before=None if before is None else before == row.prev_hash,
        linked_after=None if after is None else after == row.hash,
    )


# The most chain links an audit pack carries from its anchor to the decision; beyond it the
# pack says so and the auditor verifies the range with ``GET /v1/decisions/verify``.
PACK_LINKS_MAX = 10_000


async def chain_links(session: AsyncSession, seq: int) -> dict[str, Any]:
    """The links from the nearest anchor (the latest checkpoint at or before the decision's
    predecessor, else the genesis hash) to the decision at ``seq``: each ``{seq, prev_hash,
    hash}``, so that each prev_hash can be matched to the hash before it. At most
    ``PACK_LINKS_MAX`` (the nearest the decision); ``complete`` says whether they reach from
    the anchor to the decision without a gap."""
    repository = DecisionRepository(session)
    checkpoint = await repository.checkpoint_before(seq - 1) if seq > 1 else None
    if checkpoint is not None:
        anchor: dict[str, Any] = {
            "kind": "checkpoint",
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "recorded_at": rfc3339(checkpoint.recorded_at),
            "recorded_by": checkpoint.recorded_by,
        }
    else:
        anchor = {"kind": "genesis", "seq": 0, "hash": GENESIS}
    # Beyond the cap, the links nearest the decision: they show its place; the rest of the
    # way to the anchor is what verify walks.
    first = max(anchor["seq"] + 1, seq - PACK_LINKS_MAX + 1)
    rows = await repository.chain_links(first, seq, PACK_LINKS_MAX)
    complete = (
        first == anchor["seq"] + 1
        and bool(rows)
        and rows[0].seq == first
        and rows[-1].seq == seq
        and len(rows) == seq - first + 1
    )
    return {
        "anchor": anchor,
        "links": [{"seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash} for r in rows],
        "complete": complete,
    }


async def stored_record(session: AsyncSession, decision_id: uuid.UUID) -> dict[str, Any]:
    """The stored texts of one decision, exactly as hashed (``chain_hash``'s inputs)."""
    row = await _row(DecisionRepository(session), decision_id)
    return {
        "seq": row.seq,
        "decision_id": str(row.decision_id),
        "requested_by": row.requested_by,
        "requested_by_key_id": (
            None if row.requested_by_key_id is None else str(row.requested_by_key_id)
        ),
        "request_id": row.request_id,
        "request": row.request,
        "payload": row.payload,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }
