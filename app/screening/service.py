"""Answering "may we hold X?": resolve the policy and data of the time asked, evaluate, log.

A check is judged in a *scene*: the policy as it applies (``AppliedPolicy``: versions in
force, overlay base, account), a snapshot of the data at one data version, the time asked, and
for a check in a portfolio the portfolio, its position report and its position limits. A scene
comes from the compiled index (current time, answered from memory) or from the database (a
past time, or no current compilation yet); both render the same decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.schemas import Actor
from app.decisions.log import DecisionEntry, DecisionLog
from app.kit.canonical import rfc3339
from app.kit.errors import FieldError, InvalidInput, NotFound, PayloadTooLarge
from app.kit.identifiers import (
    InvalidIdentifier,
    SecurityId,
    UnrecognisedSecurity,
    figi_shaped,
    normalize_isin,
    normalize_lei,
    security_ids,
)
from app.kit.memory import building_long_lived
from app.kit.metrics import count_checks
from app.kit.time import check_time, utcnow
from app.portfolios.repository import HoldingsReport, Portfolio, PortfolioRepository
from app.portfolios.service import portfolio_at
from app.screening.applied import AppliedPolicy, applied_as_recorded, applied_at, applied_candidate
from app.screening.engine import VERDICT_RANK, Evaluation, Reason, Verdict, may_hold_under
from app.screening.index import Compiled, VerdictIndex
from app.screening.limits import Order, PortfolioLimits
from app.screening.positions import limit_state
from app.screening.repository import ScreeningRepository
from app.screening.schemas import MAX_BATCH
from app.screening.snapshot import Snapshot
from app.screening.templates import TemplateRenderer, render_reason, template

Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class Unresolved:
    """A valid identifier (CUSIP, SEDOL, FIGI) that names no single instrument at the data
    version: none, or two different ones. Its decision is ``unknown`` with this reason."""

    reason: Reason


# An instrument as asked, before resolution: an ISIN, a malformed identifier, or the schemes a
# valid non-ISIN identifier is valid under (resolved through the instrument data).
Identified = str | InvalidIdentifier | tuple[SecurityId, ...]
# ... and after: the ISIN to judge, a malformed identifier, or one naming no single instrument.
Resolved = str | InvalidIdentifier | Unresolved


@dataclass(frozen=True)
class OrderAsked:
    """A pre-trade order as asked: judged as if executed on the portfolio's current holdings."""

    instrument: str
    side: Side
    market_value: Decimal  # in the portfolio's base currency, > 0
    quantity: Decimal | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument,
            "side": self.side,
            "quantity": None if self.quantity is None else str(self.quantity),
            "market_value": str(self.market_value),
        }


@dataclass(frozen=True)
class CheckAsked:
    """What a check request asks: instruments, or orders in a portfolio."""

    policy: str | None
    instruments: Sequence[str]  # for orders: each order's instrument
    as_of: dt.datetime | None
    portfolio: str | None = None
    orders: Sequence[OrderAsked] | None = None

    def request(self) -> dict[str, Any]:
        asked: dict[str, Any] = {
            "policy": self.policy,
            "instruments": list(self.instruments),
            "as_of": rfc3339(self.as_of) if self.as_of is not None else None,
        }
        if self.portfolio is not None:
            asked["portfolio"] = self.portfolio
        if self.orders is not None:
            asked["orders"] = [o.payload() for o in self.orders]
        return asked


@dataclass(frozen=True)
class PortfolioScope:
    """A check's portfolio: its record, the position report its limits were judged on (None:
    none used, or none exists) and the limit state (None: no order, or no limits)."""

    portfolio: Portfolio
    holdings: HoldingsReport | None = None
    limits: PortfolioLimits | None = None

    def ref(self) -> dict[str, Any]:
        """The decision's ``portfolio`` object (contract: portfolio_id, account,
        holdings_version)."""
        return {
            "portfolio_id": self.portfolio.portfolio_id,
            "account": self.portfolio.account,
            "holdings_version": None if self.holdings is None else self.holdings.dataset_id,
        }


@dataclass
class Scene:
    """Everything one batch of checks is judged in."""

    applied: AppliedPolicy
    snapshot: Snapshot
    at: dt.datetime
    scope: PortfolioScope | None = None
    templates: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # compiled, by ISIN

    def decisions(
        self,
        instruments: Sequence[str],
        normalized: Sequence[Resolved],
        orders: Sequence[OrderAsked | None],
    ) -> list[dict[str, Any]]:
        """One decision per instrument asked (and its order, if any), in order: the
        instrument's template plus, for an order, the position limits it breaches."""
        # What the compilation does not hold, evaluated at once (each issuer once); kept alive
        # while rendered (the renderer remembers reasons by identity).
        # (Membership, not ``set - templates.keys()``: that difference walks every compiled
        # template, tens of thousands, on each single check.)
        templates = self.templates
        at_text = rfc3339(self.at)  # once for the batch
        if self.scope is None:
            # The common case, a current batch of compiled ISINs: each decision is its
            # template after the time and the identifier asked. Anything else (not compiled,
            # malformed, unresolved: not a key of the templates) takes the general path.
            try:
                return [
                    {"as_of": at_text, "requested_isin": raw, **templates[isin]}  # type: ignore[index]
                    for raw, isin in zip(instruments, normalized, strict=True)
                ]
            except (KeyError, TypeError):
                pass
        missing = sorted({i for i in normalized if isinstance(i, str) and i not in templates})
        evaluated = (
            dict(
                zip(
                    missing,
                    self.applied.evaluate_many(self.snapshot, missing, self.at),
                    strict=True,
                )
            )
            if missing
            else {}  # all compiled (a current check): no evaluator is built
        )
        renderer = TemplateRenderer(self.applied, self.snapshot)
        decisions = []
        for raw, isin, order in zip(instruments, normalized, orders, strict=True):
            if isinstance(isin, InvalidIdentifier):
                decision = _malformed(self.applied, self.snapshot, raw, isin, self.at)
            elif isinstance(isin, Unresolved):
                decision = _unknown(self.applied, self.snapshot, raw, isin.reason, self.at)
            else:
                cached = self.templates.get(isin)
                if cached is None:
                    cached = renderer.template(evaluated[isin])
                decision = {"as_of": at_text, "requested_isin": raw, **cached}
            decisions.append(self._in_portfolio(decision, isin, order))
        return decisions

    def issuer_decision(self, requested: str, named: Sequence[str]) -> dict[str, Any]:
        """The decision on an issuer itself (``GET /v1/check?issuer=``), judged as the
        issuer-level list judges it (``evaluate_issuers``); ``named``: the current issuers the
        reference names (one: judged; none or several: ``unknown`` naming why, never a guess)."""
        snapshot = self.snapshot
        issuer: dict[str, Any] | None = None
        if len(named) == 1 and named[0] in snapshot.issuers:
            (judged,) = self.applied.evaluate_issuers(snapshot, named, self.at)
            verdict, may_hold, reasons = judged.verdict, judged.may_hold, judged.reasons
            node = snapshot.issuers[named[0]]
            issuer = {"issuer_id": node.issuer_id, "name": node.name, "country": node.country}
        else:
            if named:
                reason = Reason(
                    rule_id="data:issuer",
                    title="Ambiguous issuer reference",
                    outcome="unknown",
                    via=(),
                    detail=f"{requested} names {len(named)} different issuers at data version "
                    f"{snapshot.data_version} (by issuer id and by LEI): {', '.join(named)}; "
                    "ask by issuer id",
                )
            else:
                reason = Reason(
                    rule_id="data:issuer",
                    title="Issuer not known",
                    outcome="unknown",
                    via=(),
                    detail=f"no issuer with issuer id or LEI {requested} is known at data "
                    f"version {snapshot.data_version}",
                )
            verdict, reasons = "unknown", (reason,)
            may_hold = may_hold_under(self.applied.document, "unknown")
        decision: dict[str, Any] = {
            "as_of": rfc3339(self.at),
            "requested_issuer": requested,
            "policy": self.applied.policy_ref(),
            "data_version": snapshot.data_version,
            "instrument": None,
            "issuer": issuer,
            "verdict": verdict,
            "may_hold": may_hold,
            "reasons": [render_reason(r) for r in reasons],
        }
        if self.scope is not None:
            decision["portfolio"] = self.scope.ref()
        return decision

    def _in_portfolio(
        self, decision: dict[str, Any], isin: Resolved, order: OrderAsked | None
    ) -> dict[str, Any]:
        if self.scope is None:
            return decision
        decision["portfolio"] = self.scope.ref()
        if order is None:
            return decision
        decision["order"] = order.payload()
        if self.scope.limits is None or not isinstance(isin, str):
            return decision
        limits = self.scope.limits.check(
            Order(isin, order.side, order.market_value, order.quantity)
        )
        return _with_limits(self.applied, decision, limits)


def _with_limits(
    applied: AppliedPolicy, decision: dict[str, Any], reasons: Sequence[Reason]
) -> dict[str, Any]:
    """A decision with the position limits an order breaches (or cannot be judged against)
    after its screening reasons; the verdict the reasons together give."""
    if not reasons:
        return decision
    verdict = decision["verdict"]
    for reason in reasons:
        if VERDICT_RANK[reason.verdict] > VERDICT_RANK[verdict]:
            verdict = reason.verdict
    return {
        **decision,
        "verdict": verdict,
        "may_hold": decision["may_hold"] and may_hold_under(applied.document, verdict),
        "reasons": [*decision["reasons"], *(render_reason(r) for r in reasons)],
    }


def decision_payload(
    applied: AppliedPolicy,
    snapshot: Snapshot,
    requested: str,
    evaluation: Evaluation,
    at: dt.datetime,
) -> dict[str, Any]:
    """The decision as stored, hashed and returned (decision_id/decided_at added by the log)."""
    return {
        "as_of": rfc3339(at),
        "requested_isin": requested,
        **template(applied, snapshot, evaluation),
    }


def _malformed(
    applied: AppliedPolicy,
    snapshot: Snapshot,
    raw: str,
    problem: InvalidIdentifier,
    at: dt.datetime,
) -> dict[str, Any]:
    # Decisions logged before instruments could be asked by CUSIP, SEDOL or FIGI judged the
    # identifier as an ISIN only ("Malformed ISIN", stdnum's ISIN message); replay renders them
    # as they were (``recompute`` passes normalize_isin's error, not ``UnrecognisedSecurity``).
    title = (
        "Malformed instrument identifier"
        if isinstance(problem, UnrecognisedSecurity)
        else "Malformed ISIN"
    )
    unknown = Reason(
        rule_id="data:isin", title=title, outcome="unknown", via=(), detail=str(problem)
    )
    return _unknown(applied, snapshot, raw, unknown, at)


def _unknown(
    applied: AppliedPolicy, snapshot: Snapshot, raw: str, reason: Reason, at: dt.datetime
) -> dict[str, Any]:
    may_hold = may_hold_under(applied.document, "unknown")
    evaluation = Evaluation(raw, False, None, "unknown", may_hold, (reason,))
    return decision_payload(applied, snapshot, raw, evaluation, at)


def _identified(
    instruments: Sequence[str], known: Mapping[str, Any], *, strict: bool
) -> list[Identified]:
    """Each instrument asked, recognised: an ISIN (compact), the schemes a valid CUSIP, SEDOL
    or FIGI is valid under (resolved later, through the data), or the malformed identifier
    (``strict``: a 422 naming the schemes tried instead).

    An ISIN of the compiled universe was validated when it was loaded: only other strings
    need checking (a 10,000-instrument batch of known ISINs skips 10,000 Luhn sums), except one
    that could also be a FIGI (third character 'G': it might name another instrument).
    """
    identified: list[Identified] = []
    for raw in instruments:
        if raw in known and not figi_shaped(raw):
            identified.append(raw)
            continue
        try:
            ids = security_ids(raw)
        except InvalidIdentifier as exc:
            if strict:
                raise InvalidInput(
                    str(exc), errors=[FieldError(loc=("query", "instrument"), msg=str(exc))]
                ) from None
            identified.append(exc)
            continue
        if len(ids) == 1 and ids[0].scheme == "ISIN":
            identified.append(ids[0].value)
        else:
            identified.append(ids)
    return identified


def _needs_data(identified: Sequence[Identified]) -> bool:
    return any(isinstance(i, tuple) for i in identified)


async def _resolved(
    repository: ScreeningRepository, identified: Sequence[Identified], version: int
) -> list[Resolved]:
    """Each identifier as the ISIN it names at data ``version``: a CUSIP, SEDOL or FIGI
    through the current instrument records carrying it (one query per scheme asked).

    A value valid under several schemes (an ISIN that is also a valid FIGI) is looked up
    under each: the instruments they name together must be one, else it is ambiguous. None:
    ``unknown``, naming the schemes and the data version. Never a guess.
    """
    wanted: dict[str, set[str]] = {}
    for item in identified:
        if isinstance(item, tuple):
            for one in item:
                wanted.setdefault(one.scheme, set()).add(one.value)
    found = {
        scheme: await repository.instruments_by(scheme, sorted(values), version)
        for scheme, values in sorted(wanted.items())
    }
    resolved: list[Resolved] = []
    for item in identified:
        if not isinstance(item, tuple):
            resolved.append(item)
            continue
        isins = sorted({isin for one in item for isin in found[one.scheme].get(one.value, [])})
        schemes = " or ".join(one.scheme for one in item)
        value = item[0].value
        if len(isins) == 1:
            resolved.append(isins[0])
        elif not isins:
            reason = Reason(
                rule_id="data:instrument",
                title="Instrument not known",
                outcome="unknown",
                via=(),
                detail=f"no instrument with {schemes} {value} is known at data version {version}",
            )
            resolved.append(Unresolved(reason))
        else:
            reason = Reason(
                rule_id="data:identifier",
                title="Ambiguous identifier",
                outcome="unknown",
                via=(),
                detail=f"{schemes} {value} names {len(isins)} different instruments at data "
                f"version {version}: {', '.join(isins)}; ask by ISIN",
            )
            resolved.append(Unresolved(reason))
    return resolved


async def check(
    sessions: async_sessionmaker[AsyncSession],
    log: DecisionLog,
    actor: Actor,
    request_id: str | None,
    asked: CheckAsked,
    *,
    strict_isins: bool,
    index: VerdictIndex | None = None,
) -> list[dict[str, Any]]:
    """Decide for each instrument (or order), in order; every decision is durably logged
    before return.

    ``strict_isins``: a malformed ISIN is a 422 (single check) instead of an ``unknown``
    decision naming it (batch: one typo must not fail a 10,000-instrument pre-trade batch).
    Errors: 404 unknown policy or portfolio, or none in force; 422 a ``policy`` that is not the
    portfolio's, an ``as_of`` without offset or in the future; 413 over ``MAX_BATCH``.
    """
    if len(asked.instruments) > MAX_BATCH:
        raise PayloadTooLarge(
            f"At most {MAX_BATCH:,} instruments per request; this one has "
            f"{len(asked.instruments):,}. Split the batch."
        )
    now = utcnow()
    at = check_time(asked.as_of, now)
    scene = _compiled_scene(asked, index, now) if asked.as_of is None else None
    plain = scene is not None  # built from the compiled templates: plain JSON values already
    identified = _identified(
        asked.instruments, scene.templates if scene else {}, strict=strict_isins
    )
    normalized: list[Resolved]
    if scene is None:
        # Not answerable from memory (a past time, or no current compilation yet): read the
        # neighbourhood of the instruments, in a read-only session closed before the append.
        async with sessions() as session:
            repository = ScreeningRepository(session)
            version = await repository.data_version(None if asked.as_of is None else at)
            normalized = await _resolved(repository, identified, version)
            scene = await _scene(
                session,
                asked,
                at,
                [n for n in normalized if isinstance(n, str)],
                current=asked.as_of is None,
                version=version,
            )
    elif _needs_data(identified):
        # A CUSIP, SEDOL or FIGI: resolved to its ISIN at the compilation's data version (one
        # small read), then answered from the compiled templates like any ISIN.
        async with sessions() as session:
            normalized = await _resolved(
                ScreeningRepository(session), identified, scene.snapshot.data_version
            )
    else:
        normalized = cast(list[Resolved], identified)
    orders: Sequence[OrderAsked | None] = asked.orders or [None] * len(asked.instruments)
    payloads = scene.decisions(asked.instruments, normalized, orders)
    decisions = await log.append(_entries(payloads, asked, actor, request_id, plain=plain))
    count_checks(decisions)
    return decisions


def _compiled_scene(
    asked: CheckAsked, index: VerdictIndex | None, now: dt.datetime
) -> Scene | None:
    if index is None:
        return None
    if asked.portfolio is None:
        if asked.policy is None:
            return None
        compiled = index.lookup(asked.policy, now)
        return None if compiled is None else _scene_of(compiled, now, None)
    found = index.portfolio(asked.portfolio, now)
    if found is None:
        return None
    _check_policy(asked.policy, found.portfolio)
    scope = PortfolioScope(found.portfolio)
    if asked.orders is not None and found.limits is not None:
        scope = PortfolioScope(found.portfolio, found.holdings, found.limits)
    return _scene_of(found.compiled, now, scope)


def _scene_of(compiled: Compiled, now: dt.datetime, scope: PortfolioScope | None) -> Scene:
    return Scene(compiled.applied, compiled.snapshot, now, scope, compiled.templates)


def _check_policy(policy: str | None, portfolio: Portfolio) -> None:
    if policy is not None and policy != portfolio.policy_key:
        raise InvalidInput(
            f"portfolio {portfolio.portfolio_id!r} is held under policy "
            f"{portfolio.policy_key!r}, not {policy!r}: leave policy out, or name its own.",
            errors=[FieldError(loc=("query", "policy"), msg="not the portfolio's policy")],
        )


async def _scene(
    session: AsyncSession,
    asked: CheckAsked,
    at: dt.datetime,
    isins: Sequence[str],
    *,
    current: bool,
    version: int | None = None,
) -> Scene:
    """A scene from the database: the data at ``version`` (default: as known at ``at``, or
    everything loaded when ``current``)."""
    repository = ScreeningRepository(session)
    if version is None:
        version = await repository.data_version(None if current else at)
    if asked.portfolio is None:
        if asked.policy is None:
            raise InvalidInput(
                "name a policy or a portfolio",
                errors=[FieldError(loc=("query", "policy"), msg="required without a portfolio")],
            )
        applied = await applied_at(session, asked.policy, at)
        snapshot = await repository.snapshot(
            sorted(set(isins)),
            version,
            applied.list_keys,
            applied.group_rule,
            metrics=applied.metrics,
        )
        return Scene(applied, snapshot, at)
    portfolio = await portfolio_at(session, asked.portfolio, version)
    _check_policy(asked.policy, portfolio)
    applied = await applied_at(session, portfolio.policy_key, at, account=portfolio.account)
    if asked.orders is None or not applied.position_limits:
        snapshot = await repository.snapshot(
            sorted(set(isins)),
            version,
            applied.list_keys,
            applied.group_rule,
            metrics=applied.metrics,
        )
        return Scene(applied, snapshot, at, PortfolioScope(portfolio))
    holdings = await PortfolioRepository(session).holdings(
        portfolio.portfolio_id, at.date(), version
    )
    held = [p.isin for p in holdings.positions] if holdings else []
    snapshot = await repository.snapshot(
        sorted({*isins, *held}),
        version,
        applied.list_keys,
        applied.group_rule,
        sponsor_groups=True,
        metrics=applied.metrics,
    )
    limits = limit_state(applied, snapshot, at, portfolio, holdings)
    return Scene(applied, snapshot, at, PortfolioScope(portfolio, holdings, limits))


def _entries(
    payloads: list[dict[str, Any]],
    asked: CheckAsked,
    actor: Actor,
    request_id: str | None,
    *,
    plain: bool = False,
) -> list[DecisionEntry]:
    request = asked.request()
    batch = len(asked.instruments) > 1
    if batch and asked.orders is None and asked.portfolio is None:
        # Each decision records the item it answers, not the whole batch: as the general loop
        # below does, in one pass (a 10,000-instrument batch makes 10,000 entries).
        policy, as_of = request["policy"], request["as_of"]
        return [
            DecisionEntry(
                payload,
                {"policy": policy, "instruments": [payload["requested_isin"]], "as_of": as_of},
                actor,
                request_id,
                plain,
            )
            for payload in payloads
        ]
    entries = []
    for number, payload in enumerate(payloads):
        recorded = request
        if batch:  # each decision records the item it answers, not the whole batch
            recorded = {**request, "instruments": [payload["requested_isin"]]}
            if asked.orders is not None:
                recorded["orders"] = [request["orders"][number]]
        entries.append(
            DecisionEntry(
                payload=payload, request=recorded, actor=actor, request_id=request_id, plain=plain
            )
        )
    return entries


# ------------------------------------------------------------------- post-trade compliance


async def compliance(
    sessions: async_sessionmaker[AsyncSession],
    log: DecisionLog,
    actor: Actor,
    request_id: str | None,
    portfolio_id: str,
    as_of: dt.datetime | None,
    index: VerdictIndex | None = None,
) -> dict[str, Any]:
    """The post-trade run of a portfolio (contract: ``/v1/portfolios/{id}/compliance``): every
    holding's verdict, each position limit's utilisation, every breach; logged like a check.

    The run's ``verdict``: ``excluded`` when a holding may not be held or a limit is breached,
    else ``unknown`` when a holding or a limit cannot be judged, else the worst holding verdict
    (``watch`` or ``allowed``); ``may_hold`` is false on any breach. 404: unknown portfolio.
    """
    now = utcnow()
    at = check_time(as_of, now)
    found = index.portfolio(portfolio_id, now) if index is not None and as_of is None else None
    if found is not None:
        scene = Scene(
            found.compiled.applied,
            found.compiled.snapshot,
            now,
            PortfolioScope(found.portfolio, found.holdings, found.limits),
            found.compiled.templates,
        )
        payload = compliance_payload(scene, plain=True)
    else:
        async with sessions() as session:
            scene = await _compliance_scene(session, portfolio_id, at, current=as_of is None)
        payload = compliance_payload(scene)
    request = {
        "compliance": portfolio_id,
        "as_of": rfc3339(as_of) if as_of is not None else None,
    }
    (stored,) = await log.append(
        [DecisionEntry(payload=payload, request=request, actor=actor, request_id=request_id)]
    )
    return stored


async def _compliance_scene(
    session: AsyncSession,
    portfolio_id: str,
    at: dt.datetime,
    *,
    current: bool,
    version: int | None = None,
) -> Scene:
    repository = ScreeningRepository(session)
    if version is None:
        version = await repository.data_version(None if current else at)
    portfolio = await portfolio_at(session, portfolio_id, version)
    applied = await applied_at(session, portfolio.policy_key, at, account=portfolio.account)
    holdings = await PortfolioRepository(session).holdings(portfolio_id, at.date(), version)
    held = sorted({p.isin for p in holdings.positions}) if holdings else []
    snapshot = await repository.snapshot(
        held,
        version,
        applied.list_keys,
        applied.group_rule,
        sponsor_groups=bool(applied.position_limits),
        metrics=applied.metrics,
    )
    limits = limit_state(applied, snapshot, at, portfolio, holdings)
    return Scene(applied, snapshot, at, PortfolioScope(portfolio, holdings, limits))


def compliance_payload(scene: Scene, *, plain: bool = False) -> dict[str, Any]:
    """The compliance run as stored, hashed and returned (decision_id/decided_at: the log's)."""
    assert scene.scope is not None
    scope = scene.scope
    holdings = scope.holdings
    positions = holdings.positions if holdings is not None else ()
    valued = [p.market_value for p in positions]
    known = all(v is not None for v in valued)
    total = sum((v for v in valued if v is not None), Decimal(0))
    complete = known and total > 0  # weights can be given
    rows = []
    breaches: list[dict[str, Any]] = []
    worst: Verdict = "allowed"
    judged = _holding_verdicts(scene, [p.isin for p in positions])
    for position, (held, may_hold, rule_ids) in zip(positions, judged, strict=True):
        value = position.market_value
        rows.append(
            {
                "isin": position.isin,
                "source_row": position.source_row,
                "position": position.position,
                "verdict": held,
                "may_hold": may_hold,
                "market_value": None if value is None else str(value),
                "weight_pct": (
                    None if value is None or not complete else _pct_text(value * 100 / total)
                ),
            }
        )
        if VERDICT_RANK[held] > VERDICT_RANK[worst]:
            worst = held
        if not may_hold:
            breaches.append(
                {"kind": "holding", "isin": position.isin, "verdict": held, "rule_ids": rule_ids}
            )
    limits = []
    limit_reasons: list[Reason] = []
    for use in scope.limits.utilisation() if scope.limits is not None else ():
        limits.append(
            {
                "limit_id": use.limit_id,
                "title": use.title,
                "pct": None if use.pct is None else _pct_text(use.pct),
                "max_pct": _pct_text(Decimal(str(use.max_pct))),
                "breach": use.breach,
                "status": use.status,
            }
        )
        if use.reason is not None:
            limit_reasons.append(use.reason)
        if use.status == "breach":
            breaches.append({"kind": "limit", "limit_id": use.limit_id})
        if VERDICT_RANK[_STATUS_VERDICT[use.status]] > VERDICT_RANK[worst]:
            worst = _STATUS_VERDICT[use.status]
    verdict: Verdict = "excluded" if breaches else worst
    return {
        "kind": "compliance",
        "as_of": rfc3339(scene.at),
        "policy": scene.applied.policy_ref(),
        "data_version": scene.snapshot.data_version,
        "portfolio": scope.ref(),
        # A run is about the portfolio, not one instrument (the log's stored-decision shape).
        "instrument": None,
        "issuer": None,
        "holdings_version": None if holdings is None else holdings.dataset_id,
        "holdings_as_of": None if holdings is None else holdings.as_of.isoformat(),
        "total_market_value": str(total) if known and holdings is not None else None,
        "verdict": verdict,
        "may_hold": not breaches and may_hold_under(scene.applied.document, verdict),
        "holdings": rows,
        "limits": limits,
        "reasons": [render_reason(r) for r in limit_reasons],
        "breaches": breaches,
    }


_HITS = frozenset({"exclude", "unknown"})


def _holding_verdicts(scene: Scene, isins: Sequence[str]) -> list[tuple[Verdict, bool, list[str]]]:
    """Each holding's (verdict, may_hold, the rules behind a verdict that forbids holding it):
    from the compiled templates where there are, else from the engine (all at once)."""
    evaluations = iter(
        scene.applied.evaluate_many(
            scene.snapshot, [i for i in isins if i not in scene.templates], scene.at
        )
    )
    judged: list[tuple[Verdict, bool, list[str]]] = []
    for isin in isins:
        cached = scene.templates.get(isin)
        if cached is not None:
            rules = {r["rule_id"] for r in cached["reasons"] if r["outcome"] in _HITS}
            judged.append((cached["verdict"], cached["may_hold"], sorted(rules)))
        else:
            evaluation = next(evaluations)
            rules = {r.rule_id for r in evaluation.reasons if r.outcome in _HITS}
            judged.append((evaluation.verdict, evaluation.may_hold, sorted(rules)))
    return judged


_STATUS_VERDICT: dict[str, Verdict] = {"ok": "allowed", "breach": "excluded", "unknown": "unknown"}


def _pct_text(value: Decimal) -> str:
    """A percentage as text: 4 decimals, trailing zeros stripped."""
    text = f"{value.quantize(Decimal('0.0001')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# ------------------------------------------------------------------------- impact, replay


def _rules(evaluation: Evaluation) -> list[str]:
    return sorted({r.rule_id for r in evaluation.reasons if r.verdict != "allowed"})


async def impact(session: AsyncSession, key: str, number: int) -> dict[str, Any]:
    """What approving version ``number`` would change, against the version in force now."""
    now = utcnow()
    candidate = await applied_candidate(session, key, number, now)
    try:
        current: AppliedPolicy | None = await applied_at(session, key, now)
    except NotFound:
        current = None  # nothing in force yet: every verdict is new
    repository = ScreeningRepository(session)
    data_version = await repository.data_version()
    keys = sorted({*candidate.list_keys, *(current.list_keys if current else [])})
    with building_long_lived():
        snapshot = await repository.full_snapshot(data_version, keys)
    changed: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    issuers: set[str] = set()
    isins = sorted(snapshot.instruments)
    afters = candidate.evaluate_many(snapshot, isins, now)
    befores = current.evaluate_many(snapshot, isins, now) if current else [None] * len(isins)
    for isin, after, before in zip(isins, afters, befores, strict=True):
        counts[after.verdict] = counts.get(after.verdict, 0) + 1
        if before is not None and (before.verdict, _rules(before)) == (
            after.verdict,
            _rules(after),
        ):
            continue
        issuers.add(after.issuer_id or "")
        changed.append(
            {
                "isin": isin,
                "issuer_id": after.issuer_id,
                "before": before.verdict if before else None,
                "after": after.verdict,
                "rules_before": _rules(before) if before else [],
                "rules_after": _rules(after),
            }
        )
    return {
        "key": key,
        "version": candidate.version,
        "against_version": current.version if current else None,
        "data_version": data_version,
        "instruments_evaluated": len(snapshot.instruments),
        "verdicts_after": counts,
        "instruments_changed": len(changed),
        "issuers_changed": len(issuers - {""}),
        "changes": changed,
    }


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


async def recompute(session: AsyncSession, payload: dict[str, Any]) -> dict[str, Any]:
    """Evaluate a stored decision again from its policy versions, its data version and (in a
    portfolio) the portfolio and position report as known at that data version.

    Returns the payload as it would be stored now (without decision_id / decided_at); equal to
    the stored one when nothing that decision rested on has changed (it cannot: both are
    append-only), which is what replay shows.
    """
    at = _time(payload["as_of"])
    version = payload["data_version"]
    if payload.get("kind") == "compliance":
        scene = await _compliance_scene(
            session, payload["portfolio"]["portfolio_id"], at, current=False, version=version
        )
        return compliance_payload(scene)
    if "requested_issuer" in payload:
        return await _recompute_issuer(session, payload, at, version)
    requested = payload["requested_isin"]
    portfolio = payload.get("portfolio")
    order = payload.get("order")
    asked = CheckAsked(
        policy=None if portfolio else payload["policy"]["key"],
        instruments=[requested],
        as_of=at,
        portfolio=portfolio["portfolio_id"] if portfolio else None,
        orders=[_order(order)] if order else None,
    )
    normalized: Resolved
    if _judged_as_isin_only(payload):
        try:
            normalized = normalize_isin(requested)
        except InvalidIdentifier as exc:
            normalized = exc
    else:
        (identified,) = _identified([requested], {}, strict=False)
        (normalized,) = await _resolved(ScreeningRepository(session), [identified], version)
    isins = [normalized] if isinstance(normalized, str) else []
    if portfolio is None:
        # The exact versions the decision names (not those in force: they are the same unless
        # the log was altered, and replay must show that).
        applied = await applied_as_recorded(session, payload["policy"])
        snapshot = await ScreeningRepository(session).snapshot(
            isins, version, applied.list_keys, applied.group_rule, metrics=applied.metrics
        )
        scene = Scene(applied, snapshot, at)
    else:
        scene = await _scene(session, asked, at, isins, current=False, version=version)
    (decision,) = scene.decisions(
        [requested], [normalized], [asked.orders[0] if asked.orders else None]
    )
    return decision


def _judged_as_isin_only(payload: dict[str, Any]) -> bool:
    """A decision logged before CUSIP, SEDOL and FIGI were understood, on an identifier that
    was not a valid ISIN: it is recomputed as it was judged then (a malformed ISIN)."""
    reasons = payload.get("reasons") or []
    return (
        payload.get("instrument") is None
        and len(reasons) == 1
        and reasons[0].get("rule_id") == "data:isin"
        and reasons[0].get("title") == "Malformed ISIN"
    )


def _order(recorded: dict[str, Any]) -> OrderAsked:
    quantity = recorded.get("quantity")
    return OrderAsked(
        instrument=recorded["instrument"],
        side=recorded["side"],
        market_value=Decimal(recorded["market_value"]),
        quantity=None if quantity is None else Decimal(quantity),
    )


# ------------------------------------------------------------------------- issuer checks


@dataclass(frozen=True)
class IssuerAsked:
    """An issuer check (``GET /v1/check?issuer=``): an issuer id or LEI, judged itself."""

    policy: str | None
    issuer: str
    as_of: dt.datetime | None
    portfolio: str | None = None

    def request(self) -> dict[str, Any]:
        asked: dict[str, Any] = {
            "policy": self.policy,
            "issuer": self.issuer,
            "as_of": rfc3339(self.as_of) if self.as_of is not None else None,
        }
        if self.portfolio is not None:
            asked["portfolio"] = self.portfolio
        return asked


def _lei_of(ref: str) -> str | InvalidIdentifier | None:
    """``ref`` as an LEI: the compact LEI when it is one, the error when it has an LEI's
    shape (20 letters or digits) but fails ISO 17442, None when it is no LEI at all."""
    compact = ref.strip().upper()
    if len(compact) != 20 or not compact.isascii() or not compact.isalnum():
        return None
    try:
        return normalize_lei(compact)
    except InvalidIdentifier as exc:
        return exc


async def _issuers_named(
    repository: ScreeningRepository, ref: str, version: int, *, strict: bool
) -> list[str]:
    lei = _lei_of(ref)
    named = await repository.issuers_by(ref, lei if isinstance(lei, str) else None, version)
    if strict and isinstance(lei, InvalidIdentifier) and not named:
        raise InvalidInput(
            f"issuer {ref!r} is no issuer id known and not a valid LEI: {lei.reason}",
            errors=[FieldError(loc=("query", "issuer"), msg=str(lei))],
        )
    return named


async def check_issuer(
    sessions: async_sessionmaker[AsyncSession],
    log: DecisionLog,
    actor: Actor,
    request_id: str | None,
    asked: IssuerAsked,
    *,
    index: VerdictIndex | None = None,
) -> dict[str, Any]:
    """Judge an issuer itself, as the issuer-level list does (a tenant, a new issue); logged.

    ``asked.issuer``: an issuer id, or an LEI (the issuer whose current record carries it).
    Unknown, or naming two issuers: ``unknown`` (fail closed). Errors: 422 a string shaped like
    an LEI that fails its check digits (and is no issuer id), the policy/portfolio errors of
    ``check``.
    """
    now = utcnow()
    at = check_time(asked.as_of, now)
    question = CheckAsked(asked.policy, [], asked.as_of, asked.portfolio)
    scene = _compiled_scene(question, index, now) if asked.as_of is None else None
    async with sessions() as session:
        repository = ScreeningRepository(session)
        if scene is not None:
            version = scene.snapshot.data_version
        else:
            version = await repository.data_version(None if asked.as_of is None else at)
        named = await _issuers_named(repository, asked.issuer, version, strict=True)
        if scene is None:
            scene = await _issuer_scene(session, question, at, version)
    payload = scene.issuer_decision(asked.issuer, named)
    (stored,) = await log.append(
        [
            DecisionEntry(
                payload=payload, request=asked.request(), actor=actor, request_id=request_id
            )
        ]
    )
    count_checks([stored])
    return stored


async def _issuer_scene(
    session: AsyncSession,
    asked: CheckAsked,
    at: dt.datetime,
    version: int,
    *,
    recorded: dict[str, Any] | None = None,
) -> Scene:
    """The scene of an issuer check: the whole universe at ``version`` (the issuer-level
    list's snapshot, so the verdict is the list's), under the policy in force at ``at`` (or
    the ``recorded`` versions, for replay) or the portfolio's policy and account."""
    scope = None
    if asked.portfolio is not None:
        portfolio = await portfolio_at(session, asked.portfolio, version)
        _check_policy(asked.policy, portfolio)
        applied = await applied_at(session, portfolio.policy_key, at, account=portfolio.account)
        scope = PortfolioScope(portfolio)
    elif recorded is not None:
        applied = await applied_as_recorded(session, recorded)
    elif asked.policy is None:
        raise InvalidInput(
            "name a policy or a portfolio",
            errors=[FieldError(loc=("query", "policy"), msg="required without a portfolio")],
        )
    else:
        applied = await applied_at(session, asked.policy, at)
    snapshot = await ScreeningRepository(session).full_snapshot(version, applied.list_keys)
    return Scene(applied, snapshot, at, scope)


async def _recompute_issuer(
    session: AsyncSession, payload: dict[str, Any], at: dt.datetime, version: int
) -> dict[str, Any]:
    portfolio = payload.get("portfolio")
    asked = CheckAsked(
        policy=None if portfolio else payload["policy"]["key"],
        instruments=[],
        as_of=at,
        portfolio=portfolio["portfolio_id"] if portfolio else None,
    )
    ref = payload["requested_issuer"]
    named = await _issuers_named(ScreeningRepository(session), ref, version, strict=False)
    scene = await _issuer_scene(
        session, asked, at, version, recorded=None if portfolio else payload["policy"]
    )
    return scene.issuer_decision(ref, named)
