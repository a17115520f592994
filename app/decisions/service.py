"""Reading the decision log: one decision with its audit record, and verifying the chain.

Decisions are written only by ``app.decisions.log.DecisionLog``; nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.decisions.chain import GENESIS, DecisionEntryInvalid, Projection, chain_hash, project
from app.decisions.repository import DecisionRepository
from app.decisions.schemas import ChainVerification
from app.kit.canonical import rfc3339
from app.kit.errors import NotFound

# Rows read per query while verifying: memory stays flat whatever the range.
VERIFY_PAGE = 1000


async def get_decision(session: AsyncSession, decision_id: uuid.UUID) -> dict[str, Any]:
    """The payload exactly as returned to the client, plus ``audit`` (who asked, the chain)."""
    row = await DecisionRepository(session).get(decision_id)
    if row is None:
        raise NotFound(f"There is no decision {decision_id}.")
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


def _problem(row: Any, expected_seq: int, expected_prev: str | None) -> str | None:
    """What is wrong with one stored decision, given what the chain before it says; or None."""
    if row.seq != expected_seq:
        return f"decisions {expected_seq} to {row.seq - 1} (by seq) are missing before it"
    if expected_prev is None:
        return f"the decision before it (seq {row.seq - 1}) is missing"
    if row.prev_hash != expected_prev:
        return "its prev_hash is not the previous decision's hash"
    key_id = row.requested_by_key_id
    recomputed = chain_hash(
        row.prev_hash,
        seq=row.seq,
        decision_id=str(row.decision_id),
        requested_by=row.requested_by,
        requested_by_key_id=None if key_id is None else str(key_id),
        request_id=row.request_id,
        request=row.request,
        payload=row.payload,
    )
    if recomputed != row.hash:
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
    session: AsyncSession, start: dt.datetime | None, end: dt.datetime | None
) -> ChainVerification:
    """Walk the chain over the decisions decided in [start, end), in seq order, page by page.

    Each decision's hash is recomputed from its stored fields and the previous decision's
    hash; the first decision of the range links to the one before it (or to the genesis
    hash). Stops at the first bad decision.
    """
    repository = DecisionRepository(session)
    bounds = await repository.seq_range(start, end)
    if bounds is None:
        return ChainVerification(
            checked=0,
            ok=True,
            first_bad_id=None,
            first_bad_seq=None,
            problem=None,
            from_seq=None,
            to_seq=None,
            last_hash=None,
        )
    first, last = bounds
    prev: str | None = GENESIS if first == 1 else await repository.hash_at(first - 1)
    expected_seq = first
    checked = 0
    after = first - 1
    while rows := await repository.page(after, last, VERIFY_PAGE):
        for row in rows:
            checked += 1
            problem = _problem(row, expected_seq, prev)
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
    )
