"""Response bodies of the auditor endpoints (documentation of what the routes return)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

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


CheckpointStatus = Literal["signed", "unsigned", "bad_signature", "unknown_key", "broken_chain"]


class CheckpointCheck(Schema):
    """One checkpoint as verify found it: the range (previous_seq, seq] it closes, its signed
    fields (enough to check its signature again without mayhold: see the README), and the
    verdict on its signature and its link to the checkpoint before it."""

    seq: int = Field(description="The last decision the checkpoint vouches for.")
    hash: str = Field(description="That decision's chain hash, as recorded.")
    decided_at: str = Field(description="RFC 3339, UTC: when that decision was logged.")
    count: int | None = Field(
        description="Decisions it adds to the previous checkpoint (seq - previous_seq); null on "
        "a checkpoint recorded before checkpoints were chained."
    )
    previous_seq: int | None = Field(
        description="The checkpoint it follows (0: the first); null on an unchained one."
    )
    previous: str | None = Field(
        description="What its signature covers as `previous`: the previous checkpoint's "
        "signature, or its hash when that one is unsigned (64 zeros for the first); null when "
        "that checkpoint is not in the table."
    )
    recorded_at: str = Field(description="RFC 3339, UTC.")
    recorded_by: str
    archive: str | None
    archive_sha256: str | None
    key_id: str | None = Field(
        description="The signer's key id: sha256 of the raw Ed25519 public key, first 32 hex "
        "digits; null when unsigned."
    )
    signature: str | None = Field(description="Ed25519 signature, hex; null when unsigned.")
    status: CheckpointStatus = Field(
        description="`signed`: signed by a trusted key, signature valid, linked to the "
        "previous checkpoint. `unsigned`: no signature (vouched for by nothing but the "
        "database). `bad_signature`: a trusted key's signature that does not match the "
        "checkpoint (it, or the previous checkpoint's link, was rewritten). `unknown_key`: "
        "signed by a key the verifier does not trust. `broken_chain`: the checkpoint it "
        "follows is missing (deleted) or it is not chained."
    )
    problem: str | None = Field(
        description="What is wrong, when `status` is not `signed` (an `unsigned` checkpoint "
        "when signatures are not required: null)."
    )


class ChainVerification(Schema):
    checked: int = Field(description="Decisions examined (up to and including a bad one).")
    ok: bool = Field(
        description="True when every decision in the range is unaltered and linked, and no "
        "checkpoint it rests on is bad (see `checkpoints`)."
    )
    first_bad_id: uuid.UUID | None = Field(
        description="The first decision (in chain order) whose hash or link does not match."
    )
    first_bad_seq: int | None
    problem: str | None = Field(
        description="What is wrong with the first bad decision; when the decisions are sound "
        "but a checkpoint is not, what is wrong with that checkpoint."
    )
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
    checkpoints: list[CheckpointCheck] = Field(
        default_factory=list,
        description="Every checkpoint up to the range's last decision, oldest first, each with "
        "its signature's and its link's status: the checkpoint chain the range rests on. A bad "
        "one makes `ok` false; so does an unsigned one when signed checkpoints are required.",
    )
    first_bad_checkpoint_seq: int | None = Field(
        default=None,
        description="The first checkpoint (by seq) whose status is a problem; null if none.",
    )
    checkpoint_problem: str | None = Field(
        default=None, description="What is wrong with the first bad checkpoint."
    )
    signatures_required: bool = Field(
        default=False,
        description="Whether this verifier counts an unsigned checkpoint as a problem "
        "(`MAYHOLD_REQUIRE_SIGNED_CHECKPOINTS`).",
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
