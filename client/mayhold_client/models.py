"""What the service answers, as frozen dataclasses (shapes: ``openapi/openapi.json``).

Each result keeps the JSON it was read from in ``raw`` (numbers as ``Decimal``): fields the
service adds later are there before this client names them, and an auditor can store exactly
what was answered. Times are timezone-aware ``datetime``s in UTC; dates are ``date``s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "Audit",
    "ChainVerification",
    "Decision",
    "Evidence",
    "ListDownload",
    "ListRow",
    "Order",
    "PolicyRef",
    "Reason",
    "StoredDecision",
    "Verdict",
]

Verdict = Literal["allowed", "watch", "excluded", "unknown"]
Json = Mapping[str, Any]


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _date(text: str | None) -> dt.date | None:
    return None if text is None else dt.date.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class Order:
    """A pre-trade order for ``check_batch(portfolio=..., orders=[...])``: judged as if executed
    on the portfolio's current holdings. ``market_value`` is in the portfolio's base currency."""

    instrument: str  # ISIN, CUSIP, SEDOL or FIGI
    side: Literal["buy", "sell"]
    market_value: Decimal | int | str
    quantity: Decimal | int | str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "instrument": self.instrument,
            "side": self.side,
            "market_value": str(self.market_value),  # a string keeps every digit
        }
        if self.quantity is not None:
            body["quantity"] = str(self.quantity)
        return body


@dataclass(frozen=True, slots=True)
class PolicyRef:
    key: str
    version: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """A data point a rule used: ``value`` compared with ``threshold`` (``comparison``)."""

    provider: str
    metric: str
    value: Any  # a Decimal, a bool or a string, as the metric is
    comparison: str | None
    threshold: Any
    as_of: dt.date | None
    dataset_id: int | None


@dataclass(frozen=True, slots=True)
class Reason:
    """A rule that applied: its outcome, through which issuers (``via``), on what evidence."""

    rule_id: str
    title: str
    outcome: str
    via: tuple[tuple[str, str], ...]  # (issuer_id, relation: self, parent, underlying...)
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer to "may we hold X?" (``GET /v1/check``, ``POST /v1/checks``), as logged.

    ``may_hold`` is False unless the verdict is allowed or watch: ``unknown`` (no data) never
    allows a holding.
    """

    decision_id: str
    decided_at: dt.datetime
    as_of: dt.datetime
    verdict: Verdict
    may_hold: bool
    policy: PolicyRef
    data_version: int
    isin: str | None  # the instrument the question resolved to; None for an issuer check
    issuer_id: str | None  # None when the instrument is unknown (verdict unknown)
    reasons: tuple[Reason, ...]
    raw: Json = field(repr=False)

    @classmethod
    def from_json(cls, body: Json) -> Decision:
        instrument = body.get("instrument") or {}
        issuer = body.get("issuer") or {}
        policy = body["policy"]
        return cls(
            decision_id=body["decision_id"],
            decided_at=_time(body["decided_at"]),
            as_of=_time(body["as_of"]),
            verdict=body["verdict"],
            may_hold=body["may_hold"],
            policy=PolicyRef(policy["key"], int(policy["version"]), policy["sha256"]),
            data_version=int(body["data_version"]),
            isin=instrument.get("isin"),
            issuer_id=issuer.get("issuer_id"),
            reasons=tuple(_reason(r) for r in body.get("reasons", ())),
            raw=body,
        )


def _reason(body: Json) -> Reason:
    return Reason(
        rule_id=body["rule_id"],
        title=body["title"],
        outcome=body["outcome"],
        via=tuple((v["issuer_id"], v["relation"]) for v in body.get("via", ())),
        evidence=tuple(
            Evidence(
                provider=e["provider"],
                metric=e["metric"],
                value=e.get("value"),
                comparison=e.get("comparison"),
                threshold=e.get("threshold"),
                as_of=_date(e.get("as_of")),
                dataset_id=e.get("dataset_id"),
            )
            for e in body.get("evidence", ())
        ),
    )


@dataclass(frozen=True, slots=True)
class Audit:
    """Where a stored decision sits in the hash chain, and who asked."""

    seq: int
    requested_by: str
    request_id: str | None
    request: Json
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision from the log (``GET /v1/decisions``...): exactly as it was returned, plus
    its audit record."""

    decision: Decision
    audit: Audit

    @classmethod
    def from_json(cls, body: Json) -> StoredDecision:
        audit = body["audit"]
        return cls(
            decision=Decision.from_json({k: v for k, v in body.items() if k != "audit"}),
            audit=Audit(
                seq=int(audit["seq"]),
                requested_by=audit["requested_by"],
                request_id=audit.get("request_id"),
                request=audit.get("request") or {},
                prev_hash=audit["prev_hash"],
                hash=audit["hash"],
            ),
        )


@dataclass(frozen=True, slots=True)
class ChainVerification:
    """``GET /v1/decisions/verify``: are the stored decisions in the range unaltered?"""

    ok: bool
    checked: int
    first_bad_id: str | None
    first_bad_seq: int | None
    problem: str | None
    last_hash: str | None
    raw: Json = field(repr=False)

    @classmethod
    def from_json(cls, body: Json) -> ChainVerification:
        return cls(
            ok=body["ok"],
            checked=int(body["checked"]),
            first_bad_id=body.get("first_bad_id"),
            first_bad_seq=body.get("first_bad_seq"),
            problem=body.get("problem"),
            last_hash=body.get("last_hash"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class ListRow:
    """A row of a custodian list: an issuer (issuer level) or instrument whose verdict is
    excluded or watch. In a delta, ``change`` says how it differs from the earlier list
    (a removed row is shown as it was)."""

    issuer_id: str
    name: str
    country: str
    lei: str | None
    verdict: Verdict
    rule_ids: tuple[str, ...]
    since: dt.date | None  # the date the verdict rests on
    isin: str | None  # instrument level only
    asset_class: str | None  # instrument level only
    change: Literal["added", "removed", "changed"] | None  # deltas only

    @classmethod
    def from_json(cls, body: Json) -> ListRow:
        return cls(
            issuer_id=body["issuer_id"],
            name=body["name"],
            country=body["country"],
            lei=body.get("lei"),
            verdict=body["verdict"],
            rule_ids=tuple(body.get("rule_ids") or ()),
            since=_date(body.get("since")),
            isin=body.get("isin"),
            asset_class=body.get("asset_class"),
            change=body.get("change"),
        )


@dataclass(frozen=True, slots=True)
class ListDownload:
    """``download_list``'s answer.

    ``token`` names this list (policy versions, data version, day); keep it, and pass it back
    next time as ``etag`` (nothing changed: ``not_modified``, no rows) and ``since_token``
    (something changed: only the changed rows, each with its ``change``). ``delta`` says which
    the rows are: the whole list, or the changes since ``since_token``.
    """

    token: str
    rows: tuple[ListRow, ...]
    not_modified: bool
    delta: bool

    @property
    def etag(self) -> str:
        """The token as an HTTP entity tag (``If-None-Match``), quoted."""
        return f'"{self.token}"'
