"""Answering "may we hold X?": resolve the policy and data of the time asked, evaluate, log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.schemas import Actor
from app.decisions.log import DecisionEntry, DecisionLog
from app.kit.canonical import rfc3339
from app.kit.errors import FieldError, InvalidInput, NotFound, PayloadTooLarge
from app.kit.identifiers import InvalidIdentifier, normalize_isin
from app.kit.memory import building_long_lived
from app.kit.time import utcnow
from app.policies import service as policy_service
from app.policies.document import PolicyDocument, effective_document
from app.screening.engine import (
    Evaluation,
    Evaluator,
    IssuerEvaluation,
    JudgedT,
    Reason,
    stricter,
)
from app.screening.index import Compiled, VerdictIndex
from app.screening.repository import ScreeningRepository
from app.screening.schemas import MAX_BATCH
from app.screening.snapshot import Snapshot


@dataclass(frozen=True)
class Judge:
    """The policy (and, for an overlay, its base) in force at one time."""

    key: str
    version: int
    sha256: str
    document: PolicyDocument
    base_key: str | None = None
    base_version: int | None = None
    base_sha256: str | None = None
    base_document: PolicyDocument | None = None

    @property
    def list_keys(self) -> list[str]:
        return [self.key, *([self.base_key] if self.base_key else [])]

    @property
    def group_rule(self) -> bool:
        documents = [self.document, *([self.base_document] if self.base_document else [])]
        return any(d.propagation.subsidiary_to_parent is not None for d in documents)

    def policy_ref(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"key": self.key, "version": self.version, "sha256": self.sha256}
        if self.base_key is not None:
            ref["base"] = {
                "key": self.base_key,
                "version": self.base_version,
                "sha256": self.base_sha256,
            }
        return ref

    def evaluate(self, snapshot: Snapshot, isin: str, at: dt.datetime) -> Evaluation:
        return self.evaluate_many(snapshot, [isin], at)[0]

    def evaluate_many(
        self, snapshot: Snapshot, isins: Sequence[str], at: dt.datetime
    ) -> list[Evaluation]:
        return self.evaluator(snapshot, at).instruments(isins)

    def evaluate_issuers(
        self, snapshot: Snapshot, issuer_ids: Sequence[str], at: dt.datetime
    ) -> list[IssuerEvaluation]:
        return self.evaluator(snapshot, at).issuers(issuer_ids)

    def evaluator(self, snapshot: Snapshot, at: dt.datetime) -> JudgeEvaluator:
        """Judgements on one snapshot and day in several calls, each issuer evaluated once."""
        own = Evaluator(self.document, snapshot, at, list_keys=[self.key])
        if self.base_document is None or self.base_key is None:
            return JudgeEvaluator(own, None)
        base = Evaluator(self.base_document, snapshot, at, list_keys=[self.base_key])
        return JudgeEvaluator(own, base)


@dataclass(frozen=True)
class JudgeEvaluator:
    own: Evaluator
    base: Evaluator | None  # an overlay's base policy

    def instruments(self, isins: Sequence[str]) -> list[Evaluation]:
        bases = None if self.base is None else self.base.instruments(isins)
        return self._judged(self.own.instruments(isins), bases)

    def issuers(self, issuer_ids: Sequence[str]) -> list[IssuerEvaluation]:
        bases = None if self.base is None else self.base.issuers(issuer_ids)
        return self._judged(self.own.issuers(issuer_ids), bases)

    @staticmethod
    def _judged(results: list[JudgedT], bases: list[JudgedT] | None) -> list[JudgedT]:
        if bases is None:
            return results
        # An overlay's own lists must not lift what the base alone excludes.
        return [stricter(b, r) for b, r in zip(bases, results, strict=True)]


async def judge_at(session: AsyncSession, key: str, at: dt.datetime) -> Judge:
    effective = await policy_service.get_effective_policy(session, key, at)
    base_document = None
    if effective.base_key is not None:
        base = await policy_service.get_version_in_force(session, effective.base_key, at)
        base_document = PolicyDocument.model_validate(base.document)
    return Judge(
        key=effective.key,
        version=effective.version,
        sha256=effective.sha256,
        document=effective.document,
        base_key=effective.base_key,
        base_version=effective.base_version,
        base_sha256=effective.base_sha256,
        base_document=base_document,
    )


def _reason(reason: Reason) -> dict[str, Any]:
    return {
        "rule_id": reason.rule_id,
        "title": reason.title,
        "outcome": reason.outcome,
        "via": [{"issuer_id": v.issuer_id, "relation": v.relation} for v in reason.via],
        "evidence": [
            {
                "provider": e.provider,
                "metric": e.metric,
                "value": e.value,
                "comparison": e.comparison,
                "threshold": e.threshold,
                "as_of": e.as_of.isoformat() if e.as_of else None,
                "dataset_id": e.dataset_id,
                "source_row": e.source_row,
                "source_field": e.source_field,
            }
            for e in reason.evidence
        ],
        "detail": reason.detail,
    }


class TemplateRenderer:
    """Renders decision templates: everything of a decision that does not depend on the moment
    or the spelling asked.

    What instruments have in common (the policy reference, each issuer, each reason) is
    rendered once and shared between the templates: a universe of 500,000 instruments has a
    fifth as many issuers, whose instruments share their reasons. Templates are plain JSON
    values, never mutated. Reasons are remembered by ``id``: the caller keeps the evaluations
    alive while it renders, so no id is reused.
    """

    def __init__(self, judge: Judge, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._policy = judge.policy_ref()
        self._issuers: dict[str, dict[str, Any]] = {}
        self._reasons: dict[int, dict[str, Any]] = {}

    def template(self, evaluation: Evaluation) -> dict[str, Any]:
        snapshot = self._snapshot
        instrument = (
            snapshot.instruments.get(evaluation.isin) if evaluation.instrument_found else None
        )
        return {
            "policy": self._policy,
            "data_version": snapshot.data_version,
            "instrument": (
                {"isin": instrument.isin, "asset_class": instrument.asset_class}
                if instrument
                else None
            ),
            "issuer": self._issuer(instrument.issuer_id) if instrument else None,
            "verdict": evaluation.verdict,
            "may_hold": evaluation.may_hold,
            "reasons": [self._reason(r) for r in evaluation.reasons],
        }

    def _issuer(self, issuer_id: str) -> dict[str, Any] | None:
        found = self._issuers.get(issuer_id)
        if found is None:
            issuer = self._snapshot.issuers.get(issuer_id)
            if issuer is None:
                return None
            found = self._issuers[issuer_id] = {
                "issuer_id": issuer.issuer_id,
                "name": issuer.name,
                "country": issuer.country,
            }
        return found

    def _reason(self, reason: Reason) -> dict[str, Any]:
        found = self._reasons.get(id(reason))
        if found is None:
            found = self._reasons[id(reason)] = _reason(reason)
        return found


def template(judge: Judge, snapshot: Snapshot, evaluation: Evaluation) -> dict[str, Any]:
    """One decision's template (see ``TemplateRenderer``)."""
    return TemplateRenderer(judge, snapshot).template(evaluation)


def compile_templates(
    judge: Judge, snapshot: Snapshot, at: dt.datetime
) -> dict[str, dict[str, Any]]:
    """The decision template of every instrument of the snapshot (the compiled index)."""
    isins = sorted(snapshot.instruments)
    evaluations = judge.evaluate_many(snapshot, isins, at)
    renderer = TemplateRenderer(judge, snapshot)
    return {
        isin: renderer.template(evaluation)
        for isin, evaluation in zip(isins, evaluations, strict=True)
    }


def decision_payload(
    judge: Judge,
    snapshot: Snapshot,
    requested: str,
    evaluation: Evaluation,
    at: dt.datetime,
) -> dict[str, Any]:
    """The decision as stored, hashed and returned (decision_id/decided_at added by the log)."""
    return {
        "as_of": rfc3339(at),
        "requested_isin": requested,
        **template(judge, snapshot, evaluation),
    }


def _malformed(
    judge: Judge, snapshot: Snapshot, raw: str, problem: str, at: dt.datetime
) -> dict[str, Any]:
    unknown = Reason(
        rule_id="data:isin",
        title="Malformed ISIN",
        outcome="unknown",
        via=(),
        detail=problem,
    )
    may_hold = judge.document.unknown.value == "allow"
    evaluation = Evaluation(raw, False, None, "unknown", may_hold, (unknown,))
    return decision_payload(judge, snapshot, raw, evaluation, at)


def check_time(as_of: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    if as_of is None:
        return now
    if as_of.tzinfo is None:
        raise InvalidInput(
            "as_of needs a timezone, e.g. 2025-03-12T00:00:00Z.",
            errors=[FieldError(loc=("query", "as_of"), msg="timezone required")],
        )
    if as_of > now:
        raise InvalidInput(
            "as_of is in the future: a decision can only be about now or the past.",
            errors=[FieldError(loc=("query", "as_of"), msg="in the future")],
        )
    return as_of.astimezone(dt.UTC)


async def check(
    sessions: async_sessionmaker[AsyncSession],
    log: DecisionLog,
    actor: Actor,
    request_id: str | None,
    policy_key: str,
    instruments: Sequence[str],
    as_of: dt.datetime | None,
    *,
    strict_isins: bool,
    index: VerdictIndex | None = None,
) -> list[dict[str, Any]]:
    """Decide for each instrument, in order; every decision is durably logged before return.

    ``strict_isins``: a malformed ISIN is a 422 (single check) instead of an ``unknown``
    decision naming it (batch: one typo must not fail a 10,000-instrument pre-trade batch).
    """
    if len(instruments) > MAX_BATCH:
        raise PayloadTooLarge(
            f"At most {MAX_BATCH:,} instruments per request; this one has {len(instruments):,}. "
            "Split the batch."
        )
    now = utcnow()
    at = check_time(as_of, now)
    compiled = index.lookup(policy_key, now) if index is not None and as_of is None else None
    # An ISIN of the compiled universe was validated when it was loaded: only other strings
    # need checking (a 10,000-instrument batch of known ISINs skips 10,000 Luhn sums).
    known = compiled.templates if compiled is not None else {}
    normalized: list[str | InvalidIdentifier] = []
    for raw in instruments:
        if raw in known:
            normalized.append(raw)
            continue
        try:
            normalized.append(normalize_isin(raw))
        except InvalidIdentifier as exc:
            if strict_isins:
                raise InvalidInput(
                    str(exc), errors=[FieldError(loc=("query", "instrument"), msg=str(exc))]
                ) from None
            normalized.append(exc)
    if compiled is not None:
        as_of_text = rfc3339(at)  # once for the batch
        payloads = [
            _from_index(compiled, raw, isin, at, as_of_text)
            for raw, isin in zip(instruments, normalized, strict=True)
        ]
        # Built from the compiled templates: plain JSON values already.
        return await log.append(
            _entries(payloads, policy_key, instruments, as_of, actor, request_id, plain=True)
        )
    # Not answerable from memory (a past time, or no current compilation yet): read the
    # neighbourhood of the instruments, in a read-only session closed before the log's append.
    async with sessions() as session:
        judge = await judge_at(session, policy_key, at)
        repository = ScreeningRepository(session)
        version = await repository.data_version(at if as_of is not None else None)
        snapshot = await repository.snapshot(
            sorted({n for n in normalized if isinstance(n, str)}),
            version,
            judge.list_keys,
            judge.group_rule,
        )
    valid = [isin for isin in normalized if isinstance(isin, str)]
    evaluations = iter(judge.evaluate_many(snapshot, valid, at))
    payloads = [
        _malformed(judge, snapshot, raw, str(isin), at)
        if isinstance(isin, InvalidIdentifier)
        else decision_payload(judge, snapshot, raw, next(evaluations), at)
        for raw, isin in zip(instruments, normalized, strict=True)
    ]
    return await log.append(_entries(payloads, policy_key, instruments, as_of, actor, request_id))


def _from_index(
    compiled: Compiled, raw: str, isin: str | InvalidIdentifier, at: dt.datetime, at_text: str
) -> dict[str, Any]:
    judge: Judge = compiled.judge
    if isinstance(isin, InvalidIdentifier):
        return _malformed(judge, compiled.snapshot, raw, str(isin), at)
    cached = compiled.templates.get(isin)
    if cached is None:  # not in the universe: the engine says so (pure, no database)
        cached = template(judge, compiled.snapshot, judge.evaluate(compiled.snapshot, isin, at))
    return {"as_of": at_text, "requested_isin": raw, **cached}


def _entries(
    payloads: list[dict[str, Any]],
    policy_key: str,
    instruments: Sequence[str],
    as_of: dt.datetime | None,
    actor: Actor,
    request_id: str | None,
    *,
    plain: bool = False,
) -> list[DecisionEntry]:
    request = {
        "policy": policy_key,
        "instruments": list(instruments),
        "as_of": rfc3339(as_of) if as_of is not None else None,
    }
    return [
        DecisionEntry(
            payload=payload,
            # For a batch, each decision records the item it answers, not the whole batch.
            request={**request, "instruments": [payload["requested_isin"]]}
            if len(instruments) > 1
            else request,
            actor=actor,
            request_id=request_id,
            plain=plain,
        )
        for payload in payloads
    ]


def _rules(evaluation: Evaluation) -> list[str]:
    return sorted({r.rule_id for r in evaluation.reasons if r.verdict != "allowed"})


async def impact(session: AsyncSession, key: str, number: int) -> dict[str, Any]:
    """What approving version ``number`` would change, against the version in force now."""
    policy, version = await policy_service.get_version(session, key, number)
    now = utcnow()
    try:
        current: Judge | None = await judge_at(session, key, now)
    except NotFound:
        current = None  # nothing in force yet: every verdict is new
    document = PolicyDocument.model_validate(version.document)
    base_document = None
    base_version = None
    if policy.extends_key is not None:
        base_version = await policy_service.get_version_in_force(session, policy.extends_key, now)
        base_document = PolicyDocument.model_validate(base_version.document)
        document = effective_document(base_document, document)
    candidate = Judge(
        key=key,
        version=version.version,
        sha256=version.sha256,
        document=document,
        base_key=policy.extends_key,
        base_version=base_version.version if base_version else None,
        base_sha256=base_version.sha256 if base_version else None,
        base_document=base_document,
    )
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
        "version": version.version,
        "against_version": current.version if current else None,
        "data_version": data_version,
        "instruments_evaluated": len(snapshot.instruments),
        "verdicts_after": counts,
        "instruments_changed": len(changed),
        "issuers_changed": len(issuers - {""}),
        "changes": changed,
    }


async def judge_for(session: AsyncSession, policy_ref: dict[str, Any]) -> Judge:
    """The exact policy versions a stored decision names (not "in force"): for replay."""
    key, number = policy_ref["key"], policy_ref["version"]
    _, version = await policy_service.get_version(session, key, number)
    document = PolicyDocument.model_validate(version.document)
    base = policy_ref.get("base")
    if base is None:
        return Judge(key=key, version=number, sha256=version.sha256, document=document)
    _, base_version = await policy_service.get_version(session, base["key"], base["version"])
    base_document = PolicyDocument.model_validate(base_version.document)
    return Judge(
        key=key,
        version=number,
        sha256=version.sha256,
        document=effective_document(base_document, document),
        base_key=base["key"],
        base_version=base["version"],
        base_sha256=base_version.sha256,
        base_document=base_document,
    )


async def recompute(session: AsyncSession, payload: dict[str, Any]) -> dict[str, Any]:
    """Evaluate a stored decision again from its policy versions and its data version.

    Returns the payload as it would be stored now (without decision_id / decided_at); equal to
    the stored one when nothing that decision rested on has changed (it cannot: both are
    append-only), which is what replay shows.
    """
    judge = await judge_for(session, payload["policy"])
    at = dt.datetime.fromisoformat(payload["as_of"].replace("Z", "+00:00"))
    requested = payload["requested_isin"]
    repository = ScreeningRepository(session)
    try:
        isin = normalize_isin(requested)
    except InvalidIdentifier as exc:
        snapshot = Snapshot(data_version=payload["data_version"])
        return _malformed(judge, snapshot, requested, str(exc), at)
    snapshot = await repository.snapshot(
        [isin], payload["data_version"], judge.list_keys, judge.group_rule
    )
    return decision_payload(judge, snapshot, requested, judge.evaluate(snapshot, isin, at), at)
