from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from app.kit.inputs import IDENTIFIER_MAX, STORABLE, Identifier, PolicyKey, Rfc3339
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
    issuer_id: str = Field(
        description="The issuer; for relation holding, the fund's constituent (its ISIN, or "
        "the issuer a reference names); for underlying, an index's ISIN when the underlying is "
        "an index."
    )
    relation: Literal["self", "parent", "subsidiary", "state_owner", "underlying", "holding"]


class ReasonOut(Schema):
    rule_id: str = Field(
        description="A policy rule id, or list:<list>, exception:<id>, data:*, look-through."
    )
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


class PortfolioRefOut(Schema):
    portfolio_id: str
    account: Literal["own", "client"] = Field(
        description="Whose money: own (the house's own account) or client (seed 001)."
    )
    holdings_version: int | None = Field(
        description="The holdings load (dataset id) the position limits were judged on; null "
        "when none was used (no order, no limits, or no position report)."
    )


class OrderOut(Schema):
    instrument: str
    side: Literal["buy", "sell"]
    quantity: str | None = Field(description="Decimal, as asked.")
    market_value: str = Field(description="Decimal, in the portfolio's base currency.")


class Decision(Schema):
    decision_id: str
    decided_at: dt.datetime
    as_of: dt.datetime = Field(description="The time the question was about.")
    policy: PolicyRef
    data_version: int = Field(description="The newest dataset id the answer used.")
    requested_isin: str | None = Field(
        default=None,
        description="The instrument as asked, before normalisation and resolution: an ISIN, "
        "CUSIP, SEDOL or FIGI (`instrument.isin` is the ISIN it resolved to). Absent for an "
        "issuer check.",
    )
    requested_issuer: str | None = Field(
        default=None,
        description="An issuer check (`GET /v1/check?issuer=`): the issuer id or LEI as asked; "
        "`instrument` is then null and `issuer` the issuer judged (null when unknown).",
    )
    instrument: InstrumentRef | None
    issuer: IssuerRef | None
    verdict: Literal["allowed", "watch", "excluded", "unknown"]
    may_hold: bool
    reasons: list[ReasonOut]
    portfolio: PortfolioRefOut | None = Field(
        default=None, description="Present when the check was asked in a portfolio."
    )
    order: OrderOut | None = Field(
        default=None,
        description="Present for a pre-trade order: judged as if executed on the current "
        "holdings; a position limit it would breach is a reason with metric portfolio_pct.",
    )


# An instrument as asked in a batch: empty or malformed is an `unknown` decision (fail closed,
# logged), but longer than any identifier or unstorable fails the request before any work.
BatchInstrument = Annotated[str, StringConstraints(max_length=IDENTIFIER_MAX), STORABLE]


# A market value or quantity: positive, finite, at most 30 digits (JSON number or string).
Amount = Annotated[Decimal, Field(gt=0, max_digits=30, decimal_places=10, allow_inf_nan=False)]


class OrderIn(Schema):
    instrument: BatchInstrument = Field(
        description="ISIN, CUSIP, SEDOL or FIGI of the instrument to buy or sell."
    )
    side: Literal["buy", "sell"]
    quantity: Amount | None = Field(default=None, description="Units (optional, recorded).")
    market_value: Amount = Field(
        description="The order's value in the portfolio's base currency: a buy adds it to the "
        "holdings, a sell takes it from them."
    )


class CheckBatch(Schema):
    policy: PolicyKey | None = Field(
        default=None,
        description="Policy key; with a portfolio it may be left out (it must be the "
        "portfolio's when given).",
    )
    portfolio: Identifier | None = Field(
        default=None,
        description="A portfolio id: judged under its policy and account; needed for orders.",
    )
    instruments: list[BatchInstrument] | None = Field(
        # More than MAX_BATCH is a 413 from the service (the body limit bounds the parse).
        default=None,
        min_length=1,
        description=f"Up to {MAX_BATCH:,} ISINs, CUSIPs, SEDOLs or FIGIs, each at most "
        f"{IDENTIFIER_MAX} characters.",
    )
    orders: list[OrderIn] | None = Field(
        default=None,
        min_length=1,
        description=f"Up to {MAX_BATCH:,} pre-trade orders in `portfolio`, each judged on the "
        "current holdings (not on one another).",
    )
    as_of: Rfc3339 | None = Field(
        default=None, description="A past time: answer with the policy and data of then."
    )

    @model_validator(mode="after")
    def _one_question(self) -> CheckBatch:
        if (self.instruments is None) == (self.orders is None):
            raise PydanticCustomError(
                "instruments_or_orders", "give either instruments or orders (one of them)"
            )
        if self.orders is not None and self.portfolio is None:
            raise PydanticCustomError("portfolio_required", "orders are checked in a portfolio")
        if self.policy is None and self.portfolio is None:
            raise PydanticCustomError("policy_required", "give a policy or a portfolio")
        return self


class CheckBatchResult(Schema):
    decisions: list[Decision] = Field(description="In the order asked.")


class HoldingVerdict(Schema):
    isin: str
    source_row: int = Field(description="The holding's row in its holdings load.")
    position: Literal["long", "short"]
    verdict: Literal["allowed", "watch", "excluded", "unknown"]
    may_hold: bool
    market_value: str | None = Field(description="Decimal, base currency; null: not reported.")
    weight_pct: str | None = Field(
        description="Share of the portfolio's total market value, in percent (4 decimals); null "
        "when a market value is missing or the total is not positive."
    )


class LimitUse(Schema):
    limit_id: str
    title: str
    pct: str | None = Field(description="The limit's share now, in percent; null: unknown.")
    max_pct: str
    breach: bool | None = Field(
        description="Above the limit (exactly at it is not); null: unknown."
    )
    status: Literal["ok", "breach", "unknown"]


class Breach(Schema):
    kind: Literal["holding", "limit"]
    isin: str | None = None
    verdict: str | None = None
    rule_ids: list[str] | None = None
    limit_id: str | None = None


class ComplianceRun(Schema):
    decision_id: str
    decided_at: dt.datetime
    kind: Literal["compliance"]
    as_of: dt.datetime
    policy: PolicyRef
    data_version: int
    portfolio: PortfolioRefOut
    instrument: None = Field(description="Always null: a run is about the whole portfolio.")
    issuer: None = Field(description="Always null: a run is about the whole portfolio.")
    holdings_version: int | None = Field(description="The holdings load judged (null: none).")
    holdings_as_of: dt.date | None = Field(description="The position report's date.")
    total_market_value: str | None
    verdict: Literal["allowed", "watch", "excluded", "unknown"] = Field(
        description="excluded on any breach; else unknown when a holding or limit cannot be "
        "judged; else the worst holding verdict."
    )
    may_hold: bool = Field(description="False on any breach.")
    holdings: list[HoldingVerdict]
    limits: list[LimitUse]
    reasons: list[ReasonOut] = Field(description="Why each limit is breached or unknown.")
    breaches: list[Breach]
