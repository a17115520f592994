"""Response bodies of the auditor endpoints (documentation of what the routes return)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ConfigDict, Field

from app.kit.schemas import Schema


class DecisionAudit(Schema):
    seq: int = Field(description="Position in the hash chain (1, 2, 3...).")
    requested_by: str = Field(description="The API key's name (or `cli:<user>`) that asked.")
    requested_by_key_id: uuid.UUID | None
    request_id: str | None = Field(description="The X-Request-ID of the request that asked.")
    request: dict[str, Any] = Field(description="What was asked for this decision.")
    prev_hash: str = Field(description="The previous decision's hash (64 zeros for the first).")
    hash: str = Field(
        description="sha256 over prev_hash and this decision's stored content (see the README)."
    )


class StoredDecision(Schema):
    """A decision exactly as it was returned to the client, plus its audit record.

    Every field but ``audit`` is the stored payload, unchanged (the fields of a decision in
    "Checks"; whatever the engine returned is returned again here).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    decision_id: uuid.UUID
    decided_at: str = Field(description="RFC 3339, UTC: when the decision was logged.")
    as_of: str = Field(description="RFC 3339, UTC: the time the question was about.")
    policy: dict[str, Any] = Field(description="{key, version, sha256} of the version applied.")
    data_version: int
    instrument: dict[str, Any] | None
    issuer: dict[str, Any] | None
    verdict: str = Field(description="allowed, watch, excluded or unknown.")
    may_hold: bool
    reasons: list[dict[str, Any]]
    audit: DecisionAudit


class ChainVerification(Schema):
    checked: int = Field(description="Decisions examined (up to and including a bad one).")
    ok: bool = Field(description="True when every decision in the range is unaltered and linked.")
    first_bad_id: uuid.UUID | None = Field(
        description="The first decision (in chain order) whose hash or link does not match."
    )
    first_bad_seq: int | None
    problem: str | None = Field(description="What is wrong with the first bad decision.")
    from_seq: int | None = Field(description="The first decision of the range, by seq.")
    to_seq: int | None = Field(description="The last decision of the range, by seq.")
    last_hash: str | None = Field(
        description="The hash of the range's last decision when ok: keep it to anchor the "
        "chain (a later verify must reproduce it)."
    )
    checkpoint_seq: int | None = Field(
        description="When the decisions before the range were archived: the checkpoint (the "
        "last archived decision's seq) whose recorded hash the range's first decision links to."
    )


class DecisionPage(Schema):
    """One page of a listing, in chain order (ascending seq: oldest first)."""

    decisions: list[StoredDecision] = Field(
        description="Each decision exactly as `GET /v1/decisions/{id}` shows it."
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next page; null when "
        "nothing more matches now."
    )


class Difference(Schema):
    path: str = Field(description="JSON Pointer (RFC 6901) into the decision, e.g. /verdict.")
    original: Any = Field(description="The stored value (null where the stored one lacks it).")
    recomputed: Any = Field(description="The recomputed value (null where it lacks it).")


class Replay(Schema):
    decision_id: uuid.UUID
    matches: bool = Field(
        description="True when recomputing gives the stored decision, field for field "
        "(decision_id and decided_at, assigned by the log, are not compared)."
    )
    hash_ok: bool = Field(
        description="The stored decision's content matches its stored hash (its link to the "
        "rest of the chain is what `GET /v1/decisions/verify` checks)."
    )
    problem: str | None = Field(
        description="Why the decision could not be recomputed (e.g. its payload names a policy "
        "version that does not exist); null when it was."
    )
    original: dict[str, Any] = Field(description="The stored decision, as returned then.")
    recomputed: dict[str, Any] | None = Field(
        description="The decision recomputed now from the same policy versions and data "
        "version (without decision_id and decided_at); null when it could not be."
    )
    differences: list[Difference] = Field(description="Every field that differs; empty if none.")
