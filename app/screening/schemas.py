from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.kit.inputs import IDENTIFIER_MAX, STORABLE, PolicyKey, Rfc3339
from app.kit.schemas import Schema

MAX_BATCH = 10_000


class EvidenceOut(Schema):
    provider: str
    metric: str
    value: str
    comparison: str
    threshold: str
    as_of: dt.date | None = Field(description="The provider's as-of date.")
    dataset_id: int | None = Field(description="The load it came from (/v1/datasets/{id}).")
    source_row: int | None = None
    source_field: str | None = None


class ViaOut(Schema):
    issuer_id: str
    relation: Literal["self", "parent", "subsidiary", "state_owner", "underlying"]


class ReasonOut(Schema):
    rule_id: str = Field(description="A policy rule id, or list:<list>, exception:<id>, data:*.")
    title: str
    outcome: str = Field(
        description="exclude | watch | unknown (an exclude rule could not be decided) | "
        "undecided (a watch rule could not be decided) | readmitted | excepted"
    )
    via: list[ViaOut] = Field(description="How the hit reached the instrument, nearest first.")
    evidence: list[EvidenceOut]
    detail: str | None = None


class PolicyRef(Schema):
    key: str
    version: int
    sha256: str
    base: PolicyRef | None = Field(default=None, description="For an overlay: its base.")


class InstrumentRef(Schema):
    isin: str
    asset_class: str


class IssuerRef(Schema):
    issuer_id: str
    name: str
    country: str


class Decision(Schema):
    decision_id: str
    decided_at: dt.datetime
    as_of: dt.datetime = Field(description="The time the question was about.")
    policy: PolicyRef
    data_version: int = Field(description="The newest dataset id the answer used.")
    requested_isin: str = Field(description="The instrument as asked (before normalisation).")
    instrument: InstrumentRef | None
    issuer: IssuerRef | None
    verdict: Literal["allowed", "watch", "excluded", "unknown"]
    may_hold: bool
    reasons: list[ReasonOut]


# An instrument as asked in a batch: empty or malformed is an `unknown` decision (fail closed,
# logged), but longer than any identifier or unstorable fails the request before any work.
BatchInstrument = Annotated[str, StringConstraints(max_length=IDENTIFIER_MAX), STORABLE]


class CheckBatch(Schema):
    policy: PolicyKey
    instruments: list[BatchInstrument] = Field(
        # More than MAX_BATCH is a 413 from the service (the body limit bounds the parse).
        min_length=1,
        description=f"Up to {MAX_BATCH:,} ISINs, each at most {IDENTIFIER_MAX} characters.",
    )
    as_of: Rfc3339 | None = Field(
        default=None, description="A past time: answer with the policy and data of then."
    )


class CheckBatchResult(Schema):
    decisions: list[Decision] = Field(description="In the order asked.")
