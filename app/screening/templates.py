"""Decision templates: everything of a decision that does not depend on the moment asked.

Pure rendering of engine results into the JSON a decision is stored, hashed and returned as
(the ``Decision`` schema in ``schemas.py``), shared by checks, the compiled index and replay.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from app.screening.applied import AppliedPolicy
from app.screening.engine import Evaluation, Evidence, Reason
from app.screening.snapshot import Snapshot


def render_evidence(evidence: Evidence) -> dict[str, Any]:
    return {
        "provider": evidence.provider,
        "metric": evidence.metric,
        "value": evidence.value,
        "comparison": evidence.comparison,
        "threshold": evidence.threshold,
        "as_of": evidence.as_of.isoformat() if evidence.as_of else None,
        "dataset_id": evidence.dataset_id,
        "source_row": evidence.source_row,
        "source_field": evidence.source_field,
    }


def render_reason(
    reason: Reason, rendered: dict[int, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A reason as JSON. ``rendered``: evidence already rendered, by ``id`` (a reason that
    travelled, through a parent or a fund, shares its evidence objects with the original)."""
    if rendered is None:
        evidence = [render_evidence(e) for e in reason.evidence]
    else:
        evidence = []
        for item in reason.evidence:
            found = rendered.get(id(item))
            if found is None:
                found = rendered[id(item)] = render_evidence(item)
            evidence.append(found)
    return {
        "rule_id": reason.rule_id,
        "title": reason.title,
        "outcome": reason.outcome,
        "via": [{"issuer_id": v.issuer_id, "relation": v.relation} for v in reason.via],
        "evidence": evidence,
        "detail": reason.detail,
    }


class TemplateRenderer:
    """Renders decision templates: everything of a decision that does not depend on the moment
    or the spelling asked.

    What instruments have in common (the policy reference, each issuer, each reason) is
    rendered once and shared between the templates: a universe of 500,000 instruments has a
    fifth as many issuers, whose instruments share their reasons (and their list of reasons);
    a reason that travelled to a parent or a fund shares its evidence with the original.
    Templates are plain JSON values, never mutated. Reasons are remembered by ``id``: the
    caller keeps the evaluations alive while it renders, so no id is reused (evidence
    likewise).
    """

    def __init__(self, applied: AppliedPolicy, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._policy = applied.policy_ref()
        self._issuers: dict[str, dict[str, Any]] = {}
        self._reasons: dict[int, dict[str, Any]] = {}
        self._evidence: dict[int, dict[str, Any]] = {}
        self._reason_lists: dict[tuple[int, ...], list[dict[str, Any]]] = {}

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
            "reasons": self._reason_list(evaluation.reasons),
        }

    def _reason_list(self, reasons: tuple[Reason, ...]) -> list[dict[str, Any]]:
        # Instruments of one issuer carry the same reasons (most carry none): one list each
        # (a list per instrument was a tenth of the compiled templates' memory).
        key = tuple(map(id, reasons))
        found = self._reason_lists.get(key)
        if found is None:
            found = self._reason_lists[key] = [self._reason(r) for r in reasons]
        return found

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
            found = self._reasons[id(reason)] = render_reason(reason, self._evidence)
        return found


def template(applied: AppliedPolicy, snapshot: Snapshot, evaluation: Evaluation) -> dict[str, Any]:
    """One decision's template (see ``TemplateRenderer``)."""
    return TemplateRenderer(applied, snapshot).template(evaluation)


def compile_templates(
    applied: AppliedPolicy, snapshot: Snapshot, at: dt.datetime
) -> dict[str, dict[str, Any]]:
    """The decision template of every instrument of the snapshot (the compiled index)."""
    return render_templates(applied, snapshot, sorted(snapshot.instruments), at)


def render_templates(
    applied: AppliedPolicy, snapshot: Snapshot, isins: list[str], at: dt.datetime
) -> dict[str, dict[str, Any]]:
    """The decision templates of ``isins`` (instruments of the snapshot), evaluated together
    (each issuer once)."""
    evaluations = applied.evaluate_many(snapshot, isins, at)
    renderer = TemplateRenderer(applied, snapshot)
    return {
        isin: renderer.template(evaluation)
        for isin, evaluation in zip(isins, evaluations, strict=True)
    }


class Templates(Mapping[str, dict[str, Any]]):
    """The compiled index's decision templates at data version ``version``, by ISIN.

    Stored as rendered: a template kept from an earlier compilation (no load since touched
    what its decision rests on) carries the data version it was rendered at, and is stamped
    with ``version`` when read (a shallow copy of seven keys). An incremental build then copies
    pointers (``updated``), not 500,000 dicts. Read-only; the stored templates are shared
    between compilations and never mutated.
    """

    __slots__ = ("_stored", "version", "versioned")

    def __init__(
        self,
        version: int,
        stored: dict[str, dict[str, Any]],
        versioned: frozenset[str] | None = None,
    ) -> None:
        self.version = version
        self._stored = stored
        # The ISINs whose decision's text names the data version (instrument, underlying or
        # composition not known "at data version N"): re-rendered by every incremental build.
        self.versioned = (
            frozenset(i for i, t in stored.items() if _names_version(t))
            if versioned is None
            else versioned
        )

    def __getitem__(self, isin: str) -> dict[str, Any]:
        found = self._stored[isin]
        if found["data_version"] == self.version:
            return found
        return {**found, "data_version": self.version}

    def __contains__(self, isin: object) -> bool:
        return isin in self._stored

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)

    @property
    def stored(self) -> Mapping[str, dict[str, Any]]:
        """The templates as rendered (each with the data version it was rendered at)."""
        return self._stored

    def updated(self, version: int, fresh: Mapping[str, dict[str, Any]]) -> Templates:
        """These templates at ``version``, ``fresh`` ones replacing (or adding) theirs."""
        stored = dict(self._stored)
        stored.update(fresh)
        versioned = self.versioned.difference(fresh).union(
            i for i, t in fresh.items() if _names_version(t)
        )
        return Templates(version, stored, versioned)


def _names_version(template: Mapping[str, Any]) -> bool:
    reasons = template["reasons"]
    return bool(reasons) and any("data version" in (r["detail"] or "") for r in reasons)
