from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

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


class CheckBatch(Schema):
    policy: str
    instruments: list[str] = Field(min_length=1, description=f"Up to {MAX_BATCH:,} ISINs.")
    as_of: dt.datetime | None = Field(
        default=None, description="A past time: answer with the policy and data of then."
    )


class CheckBatchResult(Schema):
    decisions: list[Decision] = Field(description="In the order asked.")
