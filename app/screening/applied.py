"""The policy as it applies to one check: built here, and only here.

Which rules judge an instrument depends on three things: the policy version in force at the
time asked (or the exact versions a stored decision names), for an overlay its base's version,
and the account the money is in (seed 001: an exception scoped to the house's own account lifts
a hit only for ``own`` money; a check without a portfolio is judged as client money). An
``AppliedPolicy`` holds all three; the engine is reached through its ``evaluator`` alone, so
no caller can evaluate an overlay without its base or forget the account.

Three builders, one assembly (``_applied``):
* ``applied_at``: the versions in force at a time (checks, lists, the compiled index);
* ``applied_as_recorded``: the versions a stored decision or list token names (replay);
* ``applied_candidate``: a version not (yet) in force, with its base in force now (impact).
Each raises ``NotFound`` (404) when a policy or version named does not exist or none is in
force.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.vocabulary import Account
from app.models import PolicyVersion
from app.policies import service as policy_service
from app.policies.document import (
    PolicyDocument,
    PositionLimit,
    effective_document,
    metrics_used,
)
from app.screening.engine import (
    Evaluation,
    Evaluator,
    IssuerEvaluation,
    JudgedT,
    stricter,
)
from app.screening.snapshot import Snapshot


@dataclass(frozen=True)
class AppliedPolicy:
    """The policy version(s) and account one check is judged under.

    ``document`` is what the engine evaluates: for an overlay, the overlay merged onto its base
    (``effective_document``); the base is also evaluated on its own, and the stricter verdict
    wins (an overlay's own lists must not lift what the base alone excludes).
    """

    key: str
    version: int
    sha256: str
    document: PolicyDocument
    base_key: str | None = None
    base_version: int | None = None
    base_sha256: str | None = None
    base_document: PolicyDocument | None = None
    account: Account = "client"

    @property
    def list_keys(self) -> list[str]:
        """The policies whose lists (exclusions, exceptions, sponsors...) apply: own, base."""
        return [self.key, *([self.base_key] if self.base_key else [])]

    @property
    def group_rule(self) -> bool:
        """Whether a subsidiary's exclusion can reach its parent (the snapshot then needs the
        subsidiaries of every issuer asked about)."""
        documents = [self.document, *([self.base_document] if self.base_document else [])]
        return any(d.propagation.subsidiary_to_parent is not None for d in documents)

    @property
    def metrics(self) -> frozenset[str]:
        """Every metric the engine can read under this policy (rules, exceptions' void
        conditions, what derived metrics and durations read): a snapshot needs no other fact."""
        documents = [self.document, *([self.base_document] if self.base_document else [])]
        return frozenset().union(*(metrics_used(d) for d in documents))

    @property
    def position_limits(self) -> list[PositionLimit]:
        """The limits a portfolio's holdings are held to (seed 002; an overlay's merged)."""
        return list(self.document.position_limits)

    def for_account(self, account: Account) -> AppliedPolicy:
        return self if account == self.account else replace(self, account=account)

    def policy_ref(self) -> dict[str, Any]:
        """The decision's ``policy`` object: ``{key, version, sha256[, base]}``."""
        ref: dict[str, Any] = {"key": self.key, "version": self.version, "sha256": self.sha256}
        if self.base_key is not None:
            ref["base"] = {
                "key": self.base_key,
                "version": self.base_version,
                "sha256": self.base_sha256,
            }
        return ref

    def evaluator(self, snapshot: Snapshot, at: dt.datetime) -> AppliedEvaluator:
        """The one door to the engine: judgements on one snapshot and day, in several calls,
        each issuer evaluated once."""
        own = Evaluator(self.document, snapshot, at, list_keys=[self.key], account=self.account)
        if self.base_document is None or self.base_key is None:
            return AppliedEvaluator(own, None)
        base = Evaluator(
            self.base_document, snapshot, at, list_keys=[self.base_key], account=self.account
        )
        return AppliedEvaluator(own, base)

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


@dataclass(frozen=True)
class AppliedEvaluator:
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


def _applied(
    key: str,
    version: PolicyVersion,
    base_key: str | None,
    base: PolicyVersion | None,
    account: Account,
) -> AppliedPolicy:
    document = PolicyDocument.model_validate(version.document)
    if base_key is None or base is None:
        return AppliedPolicy(key, version.version, version.sha256, document, account=account)
    base_document = PolicyDocument.model_validate(base.document)
    return AppliedPolicy(
        key=key,
        version=version.version,
        sha256=version.sha256,
        document=effective_document(base_document, document),
        base_key=base_key,
        base_version=base.version,
        base_sha256=base.sha256,
        base_document=base_document,
        account=account,
    )


async def applied_at(
    session: AsyncSession, key: str, at: dt.datetime, *, account: Account = "client"
) -> AppliedPolicy:
    """The version of ``key`` in force at ``at`` and, for an overlay, its base's version in
    force at the same time. 404 when either has none."""
    policy, version = await policy_service.get_in_force(session, key, at)
    base = None
    if policy.extends_key is not None:
        base = await policy_service.get_version_in_force(session, policy.extends_key, at)
    return _applied(key, version, policy.extends_key, base, account)


async def applied_as_recorded(
    session: AsyncSession, policy_ref: Mapping[str, Any], *, account: Account = "client"
) -> AppliedPolicy:
    """The exact versions a stored decision's ``policy`` object names (not "in force"):
    ``{key, version[, base: {key, version}]}``. 404 when one no longer resolves."""
    key, number = policy_ref["key"], policy_ref["version"]
    _, version = await policy_service.get_version(session, key, number)
    base_ref = policy_ref.get("base")
    if base_ref is None:
        return _applied(key, version, None, None, account)
    _, base = await policy_service.get_version(session, base_ref["key"], base_ref["version"])
    return _applied(key, version, base_ref["key"], base, account)


async def applied_candidate(
    session: AsyncSession, key: str, number: int, at: dt.datetime
) -> AppliedPolicy:
    """Version ``number`` of ``key`` (a draft, say) as it would apply at ``at``: with its base's
    version in force then. 404 when the version, or the base's version in force, is missing."""
    policy, version = await policy_service.get_version(session, key, number)
    base = None
    if policy.extends_key is not None:
        base = await policy_service.get_version_in_force(session, policy.extends_key, at)
    return _applied(key, version, policy.extends_key, base, "client")
