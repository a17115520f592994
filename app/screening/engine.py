"""The rule engine: ``evaluate(policy, snapshot, isin, at) -> Evaluation``. Pure and deterministic.

No I/O, no clock, no randomness: the same policy document, snapshot and time give the same
evaluation, byte for byte once serialized (reasons are sorted). The semantics are those stated
in ``app/policies/document.py``:

* conditions are three-valued (true / false / unknown); missing data, data older than the
  rule's ``max_age_days`` and a vendor band straddling a threshold (``percent_bands: unknown``)
  are unknown;
* verdict order: excluded > unknown > watch > allowed; an ``exclude`` rule that cannot be
  decided makes the verdict unknown; an undecidable ``watch`` rule is reported, nothing more;
* hits travel: subsidiary -> parent (group rule), excluded country -> company it owns (state
  rule), underlying -> derivative / receipt / fund; only definite hits travel;
* the policy owner's lists (exclusion, watch-type lists, inclusion) and declared exceptions
  act per issuer, with their dates.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any, Literal, NamedTuple, TypeVar

from app.datasets.records import EmbargoLoad, current_embargo_loads
from app.kit.vocabulary import (
    METRICS,
    Account,
    Metric,
    PercentBand,
    Subject,
    ValueType,
    format_value,
    ordinal_rank,
    parse_value,
)
from app.policies.document import (
    AnyOf,
    Condition,
    DataContext,
    Duration,
    ListAction,
    Outcome,
    PolicyDocument,
    PolicyException,
    Rule,
    Threshold,
    UnknownPolicy,
    describe,
)
from app.screening.snapshot import (
    Composition,
    ConsolidationLink,
    Constituent,
    FactPoint,
    InstrumentNode,
    IssuerNode,
    ListEntryPoint,
    Snapshot,
)

Verdict = Literal["allowed", "watch", "excluded", "unknown"]
Relation = Literal["self", "parent", "subsidiary", "state_owner", "underlying", "holding"]
VERDICT_RANK: dict[str, int] = {"allowed": 0, "watch": 1, "unknown": 2, "excluded": 3}

ARMS_EMBARGO = "country.sanctions.arms_embargo"
# Read from published sanctions lists (``ofac-ns-cmic``), not from facts: ``_listed_value``.
US_NS_CMIC = "sanctions.us_ns_cmic"
# Lists that say something other than a verdict: a sponsoring employer (seed 002) is held to a
# position limit (``limits.py``), not screened.
NOT_SCREENING_LISTS = frozenset({"sponsor"})
FH_AVERAGE = "country.freedom_house.pr_cl_average"


class Truth(Enum):
    false = 0
    unknown = 1
    true = 2


@dataclass(frozen=True)
class Evidence:
    provider: str
    metric: str
    value: str
    comparison: str
    threshold: str
    as_of: dt.date | None
    dataset_id: int | None
    source_row: int | None = None
    source_field: str | None = None


@dataclass(frozen=True)
class Via:
    issuer_id: str
    relation: Relation


@dataclass(frozen=True)
class Reason:
    rule_id: str
    title: str
    # exclude / watch: a rule or list entry hit; unknown: an exclude rule could not be decided;
    # undecided: a watch rule could not be decided (reported only); readmitted / excepted: an
    # inclusion entry or an exception lifted hits.
    outcome: str
    via: tuple[Via, ...]
    evidence: tuple[Evidence, ...] = ()
    detail: str | None = None

    @property
    def verdict(self) -> Verdict:
        return outcome_verdict(self.outcome)

    def travelled(self, via: Via) -> Reason:
        return replace(self, via=(via, *self.via))


_OUTCOME_VERDICT: dict[str, Verdict] = {
    "exclude": "excluded",
    "watch": "watch",
    "unknown": "unknown",
}


def outcome_verdict(outcome: str) -> Verdict:
    """The verdict a reason's outcome gives (readmitted, excepted, undecided: none)."""
    return _OUTCOME_VERDICT.get(outcome, "allowed")


@dataclass(frozen=True)
class Evaluation:
    isin: str
    instrument_found: bool
    issuer_id: str | None
    verdict: Verdict
    may_hold: bool
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class IssuerEvaluation:
    issuer_id: str
    verdict: Verdict
    may_hold: bool
    reasons: tuple[Reason, ...]


# ----------------------------------------------------------------------------- conditions


# Evidence not yet built: (the point, the comparison, the threshold's text). Most conditions
# are false and their evidence is never shown, so it is built only for a reason (a universe
# compile evaluates millions of conditions).
_Pending = tuple[FactPoint, str, str]


class _Outcome(NamedTuple):
    truth: Truth
    evidence: tuple[Evidence | _Pending, ...] = ()
    missing: tuple[str, ...] = ()  # why undecided, for the reason's detail


def _built(evidence: tuple[Evidence | _Pending, ...]) -> tuple[Evidence, ...]:
    return tuple(e if isinstance(e, Evidence) else _evidence(*e) for e in evidence)


_TRUE_OUTCOMES = {True: Truth.true, False: Truth.false}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


_UNCACHED: Any = object()


@dataclass
class _Context:
    policy: PolicyDocument
    snapshot: Snapshot
    day: dt.date
    data: DataContext
    policy_keys: tuple[str, ...]
    issuer_cache: dict[str, tuple[Reason, ...]] = field(default_factory=dict)
    own_cache: dict[str, tuple[Reason, ...]] = field(default_factory=dict)
    thresholds: dict[int, tuple[Any, str]] = field(default_factory=dict)
    issuer_kinds: dict[int, frozenset[str]] = field(default_factory=dict)  # by id(rule)
    # by rule id; None: not a rule of the policy (a list entry), which covers every class
    asset_classes: dict[str, frozenset[str] | None] = field(default_factory=dict)
    # Whose money the check is about: an exception scoped to the house's own account lifts
    # hits only in a check for an own-account portfolio (seed 001); no portfolio: client money.
    account: Account = "client"
    # A look back (an inclusion's decision): only data loaded by ``loaded_by`` (a dataset id)
    # and dated on or before ``day``, judged on ``day``: what the decision could have seen.
    loaded_by: int | None = None
    past: dict[tuple[dt.date, int], _Context] = field(default_factory=dict)
    # Ownership chains cut at an issuer already on the path (a cycle): a judgement made below a
    # cut is partial and must not be cached (it would answer differently by order of asking).
    cuts: int = 0
    # Fund look-through: each constituent judged once (by its reference) for every fund that
    # holds it; ``fund_cuts`` counts constituents cut at a cycle or at max_depth (a judgement
    # made below a cut is partial and not cached, as for ``cuts``).
    holding_cache: dict[int, dict[str, _Judged]] = field(default_factory=dict)  # by depth
    fund_cuts: int = 0

    def as_of(self, day: dt.date, loaded_by: int) -> _Context:
        """This context looking back at the data the decision of ``day``, recorded in dataset
        ``loaded_by``, could have seen."""
        past = self.past.get((day, loaded_by))
        if past is None:
            past = self.past[(day, loaded_by)] = _Context(
                self.policy,
                self.snapshot,
                day,
                self.data,
                self.policy_keys,
                account=self.account,
                loaded_by=loaded_by,
            )
        return past

    def threshold(self, atom: Threshold) -> tuple[Any, str]:
        """An atom's parsed threshold and its text, parsed once per evaluation run."""
        cached = self.thresholds.get(id(atom))
        if cached is None:
            cached = self.thresholds[id(atom)] = (atom.threshold(), _threshold_text(atom))
        return cached


@lru_cache(maxsize=65536)
def _parsed(metric: str, text: str) -> Any:
    """A stored canonical value, parsed (values repeat across issuers: parse each once)."""
    return parse_value(METRICS[metric], text) if text else frozenset()


def _threshold_text(atom: Threshold) -> str:
    if isinstance(atom.value, list):
        return ", ".join(format_value(parse_value(atom.metric_def, _plain(v))) for v in atom.value)
    return format_value(parse_value(atom.metric_def, _plain(atom.value)))


def _plain(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


def _compare(metric: Metric, op: str, value: Any, threshold: Any, bands: str) -> Truth:
    if metric.type is ValueType.authorities:
        return _TRUE_OUTCOMES[bool(value & threshold)]
    if op == "in":
        return _TRUE_OUTCOMES[value in threshold]
    if metric.type is ValueType.ordinal:
        rank = ordinal_rank(metric, value)
        return _TRUE_OUTCOMES[_COMPARE[op](rank, ordinal_rank(metric, threshold))]
    if isinstance(value, PercentBand):
        low = _COMPARE[op](value.low, threshold)
        high = _COMPARE[op](value.high, threshold)
        if low == high:
            return _TRUE_OUTCOMES[low]
        if bands == "lower":
            return _TRUE_OUTCOMES[low]
        if bands == "upper":
            return _TRUE_OUTCOMES[high]
        return Truth.unknown
    return _TRUE_OUTCOMES[_COMPARE[op](value, threshold)]


def _current(points: Sequence[FactPoint], provider: str | None) -> FactPoint | None:
    """The provider's newest point (``points`` are oldest first, as the snapshot keeps them)."""
    for point in reversed(points):
        if provider is None or point.provider == provider:
            return point
    return None


def _points(ctx: _Context, issuer: IssuerNode, metric: Metric) -> Sequence[FactPoint]:
    if metric.subject is Subject.country:
        points = ctx.snapshot.country_facts_for(issuer.country, metric.name)
    else:
        points = ctx.snapshot.facts_for(issuer.issuer_id, metric.name)
    if ctx.loaded_by is not None:
        bound = ctx.loaded_by
        return [p for p in points if p.as_of <= ctx.day and p.dataset_id <= bound]
    if not points or points[-1].as_of <= ctx.day:  # oldest first: the usual case, no copy
        return points
    return [p for p in points if p.as_of <= ctx.day]  # nothing dated after the day asked about


# What a rule read: (the point, or None; why it is missing; the stale point it had to set aside).
_Read = tuple[FactPoint | None, str | None, FactPoint | None]


def _fact(ctx: _Context, issuer: IssuerNode, metric: Metric, atom: Threshold | Duration) -> _Read:
    """The value a rule reads: first preferred provider with fresh data."""
    if metric.name == FH_AVERAGE:
        return _fh_average(ctx, issuer, atom)
    providers = ctx.data.providers_for(atom)
    max_age = ctx.data.max_age_for(atom)
    points = _points(ctx, issuer, metric)
    stale: FactPoint | None = None
    for provider in providers or (None,):
        current = _current(points, provider)
        if current is None:
            continue
        if (ctx.day - current.as_of).days > max_age:
            stale = stale or current
            continue
        return current, None, None
    where = f"from {', '.join(providers)}" if providers else "from any provider"
    subject = f"country {issuer.country}" if metric.subject is Subject.country else "the issuer"
    if stale is not None:
        why = (
            f"{metric.name} for {subject} {where} is stale: the newest is as of "
            f"{stale.as_of.isoformat()}, more than {max_age} days before {ctx.day.isoformat()}"
        )
        return None, why, stale
    return None, f"no {metric.name} for {subject} {where}", None


def _fh_average(ctx: _Context, issuer: IssuerNode, atom: Threshold | Duration) -> _Read:
    parts: list[FactPoint] = []
    for name in METRICS[FH_AVERAGE].derived_from:
        point, missing, stale = _fact(ctx, issuer, METRICS[name], atom)
        if point is None:
            return None, missing, stale
        parts.append(point)
    average = sum((Decimal(p.value) for p in parts), start=Decimal(0)) / len(parts)
    oldest = min(parts, key=lambda p: (p.as_of, p.dataset_id))
    return (
        FactPoint(
            metric=FH_AVERAGE,
            provider=oldest.provider,
            value=format_value(average),
            as_of=oldest.as_of,
            dataset_id=oldest.dataset_id,
            source_row=oldest.source_row,
            source_field="(PR rating + CL rating) / 2",
        ),
        None,
        None,
    )


def _embargo_value(ctx: _Context, issuer: IssuerNode, atom: Threshold) -> _Read:
    """Arms embargoes: a list, so absence means "not listed", once a list is loaded; a list
    older than the rule's data age (country data) is missing, like any stale data. Providers'
    lists complement each other (not alternatives, as providers of a fact are): while one is
    stale, only an embargo the fresh lists show decides; otherwise it is missing."""
    loads = ctx.snapshot.embargo_loads
    if ctx.loaded_by is not None:
        loads = tuple(load for load in loads if load.dataset_id <= ctx.loaded_by)
    current = current_embargo_loads(loads, ctx.day)
    if not current:
        return None, "no arms-embargoes list has been loaded", None
    max_age = ctx.data.max_age_for(atom)
    latest = {p: load for p, load in current.items() if (ctx.day - load.as_of).days <= max_age}
    current_ids = {load.dataset_id for load in latest.values()}
    rows = [
        e
        for e in ctx.snapshot.embargoes.get(issuer.country, ())
        if e.dataset_id in current_ids and e.in_force(ctx.day)
    ]
    authorities = frozenset(e.authority for e in rows)
    stale = [load for p, load in current.items() if p not in latest]
    threshold, _ = ctx.threshold(atom)
    if stale and not authorities & threshold:
        oldest = min(stale, key=lambda load: load.as_of)
        why = (
            f"the arms-embargoes lists are stale: {oldest.provider}'s (dataset "
            f"{oldest.dataset_id}) is as of {oldest.as_of.isoformat()}, more than {max_age} "
            f"days before {ctx.day.isoformat()}"
        )
        list_point = FactPoint(
            ARMS_EMBARGO, oldest.provider, "(the list)", oldest.as_of, oldest.dataset_id, 0
        )
        return None, why, list_point
    source = min(latest.values(), key=lambda load: load.as_of)
    first = min(rows, key=lambda e: (e.dataset_id, e.source_row)) if rows else None
    return (
        FactPoint(
            metric=ARMS_EMBARGO,
            provider=", ".join(sorted(latest)),
            value=format_value(authorities),
            as_of=source.as_of,
            dataset_id=first.dataset_id if first else source.dataset_id,
            source_row=first.source_row if first else 0,
            source_field="; ".join(sorted({f"{e.authority}: {e.regime}" for e in rows})) or None,
        ),
        None,
        None,
    )


def _listed_value(ctx: _Context, issuer: IssuerNode, atom: Threshold) -> _Read:
    """A published sanctions list (``ofac-ns-cmic``): the issuer is listed (true) while an ISIN
    of one of its instruments (exact text, as published) is on its provider's current list,
    the newest-dated load on or before the day (``current_embargo_loads``: an older-dated list
    loaded later never supersedes it); false when fresh lists do not name it. A rule's
    ``providers`` choose the lists read; several providers' lists complement each other, as
    arms embargoes do. A list older than the rule's data age decides nothing: while one is
    stale, only a listing the fresh lists show decides; otherwise the value is missing. The
    evidence is the list (dataset, row, the list's date as as_of) and the entity's listing
    date ("listed since")."""
    metric = atom.metric_def.name
    loads: Sequence[EmbargoLoad] = ctx.snapshot.sanctions_loads
    if ctx.loaded_by is not None:
        loads = [load for load in loads if load.dataset_id <= ctx.loaded_by]
    providers = ctx.data.providers_for(atom)
    if providers:
        loads = [load for load in loads if load.provider in providers]
    current = current_embargo_loads(loads, ctx.day)
    where = f" from {', '.join(providers)}" if providers else ""
    if not current:
        return None, f"no {metric} list{where} has been loaded", None
    max_age = ctx.data.max_age_for(atom)
    fresh = {p: load for p, load in current.items() if (ctx.day - load.as_of).days <= max_age}
    by_id = {load.dataset_id: load for load in fresh.values()}
    hits = sorted(
        (
            listing
            for isin in ctx.snapshot.listed_isins.get(issuer.issuer_id, ())
            for listing in ctx.snapshot.sanctions_listings.get(isin, ())
            if listing.dataset_id in by_id
        ),
        key=lambda listing: (listing.dataset_id, listing.source_row, listing.isin),
    )
    stale = [load for p, load in current.items() if p not in fresh]
    if stale and not hits:
        oldest = min(stale, key=lambda load: load.as_of)
        why = (
            f"the {metric} lists are stale: {oldest.provider}'s (dataset {oldest.dataset_id}) "
            f"is as of {oldest.as_of.isoformat()}, more than {max_age} days before "
            f"{ctx.day.isoformat()}"
        )
        return (
            None,
            why,
            FactPoint(metric, oldest.provider, "(the list)", oldest.as_of, oldest.dataset_id, 0),
        )
    if not hits:
        source = min(fresh.values(), key=lambda load: (load.as_of, load.dataset_id))
        return (
            FactPoint(
                metric,
                ", ".join(sorted(fresh)),
                "false",
                source.as_of,
                source.dataset_id,
                0,
                "not on the list",
            ),
            None,
            None,
        )
    first = hits[0]
    load = by_id[first.dataset_id]
    since = first.listing_date.isoformat() if first.listing_date else "not given"
    detail = f"listed since {since} (listing date); ISIN {first.isin}; {first.name}"
    if first.effective_date is not None:
        detail += f"; effective {first.effective_date.isoformat()}"
    point = FactPoint(
        metric, load.provider, "true", load.as_of, first.dataset_id, first.source_row, detail
    )
    return point, None, None


def _evidence(point: FactPoint, comparison: str, threshold: str) -> Evidence:
    return Evidence(
        provider=point.provider,
        metric=point.metric,
        value=point.value,
        comparison=comparison,
        threshold=threshold,
        as_of=point.as_of,
        dataset_id=point.dataset_id,
        source_row=point.source_row or None,
        source_field=point.source_field,
    )


def _unread(
    ctx: _Context, atom: Threshold | Duration, missing: str | None, stale: FactPoint | None
) -> _Outcome:
    """Unknown: the data is missing, or stale (then the point set aside is the evidence, its
    as-of compared with the oldest date the rule accepts)."""
    evidence: tuple[Evidence | _Pending, ...] = ()
    if stale is not None:
        oldest = ctx.day - dt.timedelta(days=ctx.data.max_age_for(atom))
        evidence = ((stale, "as_of >=", oldest.isoformat()),)
    return _Outcome(Truth.unknown, evidence, (missing or "missing data",))


def _threshold(ctx: _Context, issuer: IssuerNode, atom: Threshold) -> _Outcome:
    metric = atom.metric_def
    if metric.name == ARMS_EMBARGO:
        point, missing, stale = _embargo_value(ctx, issuer, atom)
    elif metric.name == US_NS_CMIC:
        point, missing, stale = _listed_value(ctx, issuer, atom)
    else:
        point, missing, stale = _fact(ctx, issuer, metric, atom)
    if point is None:
        return _unread(ctx, atom, missing, stale)
    value = _parsed(metric.name, point.value)
    threshold, text = ctx.threshold(atom)
    truth = _compare(metric, atom.op, value, threshold, ctx.policy.data.percent_bands)
    evidence = (point, atom.op, text)
    missing_text = (
        (f"{metric.name} {point.value} straddles {atom.op} {text}",)
        if truth is Truth.unknown
        else ()
    )
    return _Outcome(truth, (evidence,), missing_text)


def _duration(ctx: _Context, issuer: IssuerNode, atom: Duration) -> _Outcome:
    metric = atom.metric_def
    point, missing, stale = _fact(ctx, issuer, metric, atom)
    if point is None:
        return _unread(ctx, atom, missing, stale)
    target = atom.threshold()
    needed = f"{format_value(target)} for at least {atom.for_at_least.text()}"
    if _parsed(metric.name, point.value) != target:
        return _Outcome(Truth.false, ((point, "for_at_least", needed),))
    latest_start = atom.for_at_least.before(ctx.day)
    evidence: list[Evidence | _Pending] = [(point, "for_at_least", needed)]
    if atom.since_metric is not None:
        since, _, _ = _fact(ctx, issuer, METRICS[atom.since_metric], atom)
        if since is not None:
            evidence.append((since, "<=", latest_start.isoformat()))
            start = dt.date.fromisoformat(since.value)
            return _Outcome(_TRUE_OUTCOMES[start <= latest_start], tuple(evidence))
    # From the history: the as-of of the earliest fact in the current unbroken run. When that
    # run reaches back to the provider's first fact, the value may have held for longer.
    history = [
        p
        for p in _points(ctx, issuer, metric)
        if p.provider == point.provider
        and (p.as_of, p.dataset_id) <= (point.as_of, point.dataset_id)
    ]
    history.sort(key=lambda p: (p.as_of, p.dataset_id))
    start = point.as_of
    observed = False  # an earlier, different value dates the start of the run
    for earlier in reversed(history):
        if _parsed(metric.name, earlier.value) != target:
            observed = True
            break
        start = earlier.as_of
    since_text = f"since {start.isoformat()}" if observed else f"first seen {start.isoformat()}"
    evidence.append(
        Evidence(
            provider=point.provider,
            metric=f"{metric.name} (history)",
            value=f"{format_value(target)} {since_text}",
            comparison="<=",
            threshold=latest_start.isoformat(),
            as_of=point.as_of,
            dataset_id=point.dataset_id,
        )
    )
    if start <= latest_start or observed or atom.start_unobserved == "first_observation":
        return _Outcome(_TRUE_OUTCOMES[start <= latest_start], tuple(evidence))
    what = f"no {atom.since_metric}, and " if atom.since_metric else ""
    return _Outcome(
        Truth.unknown,
        tuple(evidence),
        (
            f"{metric.name} {format_value(target)} since an unknown date: {what}the first "
            f"observation ({start.isoformat()}) is already {format_value(target)}, so it may "
            f"have lasted {atom.for_at_least.text()} (needed from {latest_start.isoformat()})",
        ),
    )


def _condition(ctx: _Context, issuer: IssuerNode, condition: Condition) -> _Outcome:
    if isinstance(condition, Threshold):
        return _threshold(ctx, issuer, condition)
    if isinstance(condition, Duration):
        return _duration(ctx, issuer, condition)
    members = [
        _condition(ctx, issuer, c)
        for c in (condition.any if isinstance(condition, AnyOf) else condition.all)
    ]
    truths = {m.truth for m in members}
    decisive = Truth.true if isinstance(condition, AnyOf) else Truth.false
    if decisive in truths:
        chosen = [m for m in members if m.truth is decisive]
        return _Outcome(decisive, tuple(e for m in chosen for e in m.evidence))
    if Truth.unknown in truths:
        return _Outcome(
            Truth.unknown,
            tuple(e for m in members for e in m.evidence),
            tuple(x for m in members for x in m.missing),
        )
    other = Truth.false if isinstance(condition, AnyOf) else Truth.true
    return _Outcome(other, tuple(e for m in members for e in m.evidence))


# --------------------------------------------------------------------------------- issuers


def _applies(ctx: _Context, rule: Rule, issuer: IssuerNode) -> bool:
    kinds = ctx.issuer_kinds.get(id(rule))
    if kinds is None:
        kinds = ctx.issuer_kinds[id(rule)] = frozenset(
            k.value for k in rule.applies_to.issuer_kinds
        )
    return issuer.kind in kinds


def _rule_reasons(ctx: _Context, issuer: IssuerNode) -> tuple[Reason, ...]:
    """The issuer's own rule outcomes (no lists, no propagation)."""
    cached = ctx.own_cache.get(issuer.issuer_id)
    if cached is not None:
        return cached
    via = (Via(issuer.issuer_id, "self"),)
    reasons: list[Reason] = []
    for rule in ctx.policy.rules:
        if not _applies(ctx, rule, issuer):
            continue
        result = _condition(ctx, issuer, rule.when)
        if result.truth is Truth.true:
            evidence = _built(result.evidence)
            reasons.append(Reason(rule.id, rule.title, rule.outcome.value, via, evidence))
        elif result.truth is Truth.unknown:
            outcome = "unknown" if rule.outcome is Outcome.exclude else "undecided"
            detail = "; ".join(result.missing) or f"cannot decide {describe(rule.when)}"
            evidence = _built(result.evidence)
            reasons.append(Reason(rule.id, rule.title, outcome, via, evidence, detail))
    ctx.own_cache[issuer.issuer_id] = tuple(reasons)
    return ctx.own_cache[issuer.issuer_id]


def _op_holds(op: str, value: Decimal, threshold: float) -> bool:
    return _COMPARE[op](value, Decimal(str(threshold)))


# What travels from a subsidiary to its parent: its hits, and the inclusions and exceptions
# that lifted hits of its (so the parent's decision shows why nothing travelled). Not its
# missing data: vendors assess a group at its listed parent, and most subsidiaries have no
# data of their own; the parent is judged on its own data, fail closed there.
_TO_PARENT = frozenset({"exclude", "watch", "readmitted", "excepted"})
# What travels from a state owner: exclusions, and exclusions it cannot decide (the owner
# country's data missing or stale: unknown, three-valued like the sovereign's own rules).
_FROM_STATE = frozenset({"exclude", "unknown"})
# What a hit becomes over a link that cannot be established (a control or ownership
# percentage missing): undecided, which for an exclusion is unknown (fail closed) and for a
# watch is reported only.
_LINK_UNKNOWN = {"exclude": "unknown", "watch": "undecided", "unknown": "unknown"}


def _link_evidence(
    issuer: IssuerNode, field: str, value: Decimal | None, op: str, pct: float
) -> Evidence:
    """The ownership or control percentage a hit travelled by, as the issuer record states it
    (value ``not given`` when the record has none)."""
    return Evidence(
        provider="internal",
        metric=field,
        value=format_value(value) if value is not None else "not given",
        comparison=op,
        threshold=format_value(Decimal(str(pct))),
        as_of=None,
        dataset_id=issuer.dataset_id,
        source_row=issuer.source_row,
        source_field=f"issuer {issuer.issuer_id}",
    )


def _link_order(link: ConsolidationLink) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Of several consolidation links to one parent, the one shown: fewest hops, then the
    earliest records (deterministic)."""
    return len(link.hops), tuple((h.dataset_id, h.source_row) for h in link.hops)


def _consolidation_evidence(link: ConsolidationLink) -> tuple[Evidence, ...]:
    """The relationship records a hit travelled by, child first (a chain through LEIs no
    issuer carries names each record)."""
    return tuple(
        Evidence(
            provider="gleif",
            metric="parent_consolidation",
            value=hop.relationship_type,
            comparison="consolidated by",
            threshold=hop.end_lei,
            as_of=hop.as_of,
            dataset_id=hop.dataset_id,
            source_row=hop.source_row,
            source_field=f"relationship {hop.start_lei} {hop.relationship_type} {hop.end_lei}",
        )
        for hop in link.hops
    )


def _unlinked(reason: Reason, via: Via, why: str, link: Evidence) -> Reason | None:
    """``reason`` over a link that cannot be established: undecided (None: nothing travels).
    ``link``: the issuer record that lacks the percentage, as evidence."""
    outcome = _LINK_UNKNOWN.get(reason.outcome)
    if outcome is None:
        return None
    detail = f"{why}; {reason.rule_id} {reason.outcome}s it" + (
        f" ({reason.detail})" if reason.detail else ""
    )
    evidence = (*reason.evidence, link)
    return replace(
        reason, outcome=outcome, via=(via, *reason.via), evidence=evidence, detail=detail
    )


def _across(
    hits: list[Reason], via: Via, link: Evidence, unlinked_because: str | None
) -> list[Reason]:
    """``hits`` one hop along a link, the link's percentage appended to their evidence; when
    the record gives no percentage (``unlinked_because`` says so), undecided instead."""
    if unlinked_because is not None:
        return [r for h in hits if (r := _unlinked(h, via, unlinked_because, link)) is not None]
    return [replace(h, via=(via, *h.via), evidence=(*h.evidence, link)) for h in hits]


def _travels(ctx: _Context, reason: Reason, outcomes: frozenset[str]) -> bool:
    if reason.outcome not in outcomes and not (
        # An exclusion undecidable over a link (a state owner, a link without its percentage,
        # further down) is a possible hit, and travels on: never dropped one level up.
        reason.outcome == "unknown" and reason.via and reason.via[0].relation != "self"
    ):
        return False
    rule = ctx.policy.rule(reason.rule_id)
    return rule.propagate if rule is not None else True  # list entries travel


def _group_reasons(ctx: _Context, issuer: IssuerNode, seen: frozenset[str]) -> list[Reason]:
    """What controlled subsidiaries' judgements say about their parent (seed 003 section 27).

    A subsidiary's hits travel as it is finally judged: its rule hits, its exclusion and watch
    list entries, its own subsidiaries' hits, after its inclusions and exceptions (so a
    readmission travels too, and shows). A link without a control percentage is not established
    control: the hits become undecided (an exclusion: unknown). A consolidation link in force
    (GLEIF, ``Snapshot.consolidates``) is established control whatever the percentage: its
    relationship records are the link's evidence.
    """
    rule = ctx.policy.propagation.subsidiary_to_parent
    if rule is None:
        return []
    found: list[Reason] = []
    # Control by consolidation (GLEIF) is control whatever the percentage (seed 003 section 27:
    # "bestemmende indflydelse", decisive influence; consolidation is that): it decides a link
    # without a percentage, and one below the threshold.
    consolidated: dict[str, list[ConsolidationLink]] = {}
    for held in ctx.snapshot.consolidates.get(issuer.issuer_id, ()):
        if held.in_force(ctx.day, ctx.loaded_by):
            consolidated.setdefault(held.child_id, []).append(held)
    by_percentage = ctx.snapshot.subsidiaries.get(issuer.issuer_id, ())
    for child_id in sorted({*by_percentage, *consolidated}):
        child = ctx.snapshot.issuers.get(child_id)
        if child is None:
            continue
        if child_id in seen:  # a cycle: its hits are on the path already
            ctx.cuts += 1
            continue
        via = Via(child_id, "subsidiary")
        hits = [
            r
            for r in _issuer_reasons(ctx, child, seen | {child_id})
            if _travels(ctx, r, _TO_PARENT)
        ]
        links = consolidated.get(child_id)
        if links:
            evidence = _consolidation_evidence(min(links, key=_link_order))
            found.extend(
                replace(h, via=(via, *h.via), evidence=(*h.evidence, *evidence)) for h in hits
            )
            continue
        pct = child.parent_control_pct
        if pct is None or _op_holds(rule.op, pct, rule.control_pct):
            why = (
                f"control of {issuer.issuer_id} over its subsidiary {child_id} is not "
                "established: the issuer record gives no control percentage"
            )
            link = _link_evidence(child, "parent_control_pct", pct, rule.op, rule.control_pct)
            found.extend(_across(hits, via, link, why if pct is None else None))
    return found


def _state_reasons(ctx: _Context, issuer: IssuerNode, seen: frozenset[str]) -> list[Reason]:
    """A company owned (op pct) by a country this policy excludes, or may exclude: the
    sovereign's exclusions travel, and so do its undecidable ones (missing country data is
    unknown here as it is for the sovereign). An owner without a percentage is undecided."""
    rule = ctx.policy.propagation.state_owner
    if rule is None or issuer.kind == "sovereign" or issuer.state_owner_country is None:
        return []
    pct = issuer.state_owner_pct
    if pct is not None and not _op_holds(rule.op, pct, rule.pct):
        return []
    found: list[Reason] = []
    for sovereign in ctx.snapshot.sovereign_nodes(issuer.state_owner_country):
        if sovereign.issuer_id in seen:
            ctx.cuts += 1
            continue
        via = Via(sovereign.issuer_id, "state_owner")
        hits = [
            r
            for r in _issuer_reasons(ctx, sovereign, seen | {issuer.issuer_id})
            if _travels(ctx, r, _FROM_STATE)
        ]
        why = (
            f"{issuer.issuer_id} names {issuer.state_owner_country} as its state owner "
            "without an ownership percentage"
        )
        link = _link_evidence(issuer, "state_owner_pct", pct, rule.op, rule.pct)
        found.extend(_across(hits, via, link, why if pct is None else None))
    return found


def _list_reasons(ctx: _Context, issuer: IssuerNode) -> tuple[list[Reason], list[ListEntryPoint]]:
    """Hits from the owner's lists; also the active inclusion and exception entries."""
    actions = ctx.policy.lists
    via = (Via(issuer.issuer_id, "self"),)
    hits: list[Reason] = []
    lifting: list[ListEntryPoint] = []
    for key in ctx.policy_keys:
        for entry in ctx.snapshot.entries(key, issuer.issuer_id):
            if not entry.active(ctx.day):
                continue
            if entry.list == "exception":
                lifting.append(entry)
                continue
            if entry.list in NOT_SCREENING_LISTS:
                continue
            action: ListAction = getattr(actions, entry.list)
            if action is ListAction.readmit:
                lifting.append(entry)
            elif action in (ListAction.exclude, ListAction.watch):
                hits.append(
                    Reason(
                        rule_id=f"list:{entry.list}",
                        title=entry.reason,
                        outcome=action.value,
                        via=via,
                        evidence=(_entry_evidence(entry),),
                        detail=f"{entry.list} list entry of policy {entry.policy_key}",
                    )
                )
    return hits, lifting


def _entry_evidence(entry: ListEntryPoint) -> Evidence:
    return Evidence(
        provider="internal",
        metric=f"list.{entry.list}",
        value=entry.reference or entry.reason,
        comparison="decided_on",
        threshold=entry.decided_on.isoformat(),
        as_of=entry.decided_on,
        dataset_id=entry.dataset_id,
        source_row=entry.source_row,
        source_field=(
            f"expires {entry.expires_on.isoformat()}" if entry.expires_on is not None else None
        ),
    )


def _exception_holds(
    ctx: _Context,
    issuer: IssuerNode,
    exception: PolicyException,
    entry: ListEntryPoint,
    fired: set[str],
) -> tuple[Evidence, ...] | None:
    """Whether a declared exception holds for ``issuer`` through ``entry``: None when it does
    not, else the evidence of its conditions (the issuer's country as its record states it, and
    the data that shows ``void_when`` false), for the reason that records the exception."""
    conditions = exception.conditions
    if exception.scope == "own_account" and ctx.account != "own":
        return None
    if exception.scope == "client_accounts" and ctx.account != "client":
        return None
    evidence: list[Evidence] = []
    if conditions.issuer_countries is not None:
        if issuer.country not in conditions.issuer_countries:
            return None
        evidence.append(
            Evidence(
                provider="internal",
                metric="issuer.country",
                value=issuer.country,
                comparison="in",
                threshold=", ".join(conditions.issuer_countries),
                as_of=None,
                dataset_id=issuer.dataset_id,
                source_row=issuer.source_row,
                source_field=f"issuer {issuer.issuer_id}",
            )
        )
    if conditions.issuer_kinds is not None and issuer.kind not in {
        k.value for k in conditions.issuer_kinds
    }:
        return None
    if fired & set(conditions.not_hit_by):
        return None
    if conditions.void_when is not None:
        void = _condition(ctx, issuer, conditions.void_when)
        if void.truth is not Truth.false:
            return None
        evidence.extend(_built(void.evidence))
    for required in exception.requires:
        if getattr(entry, required) is None:
            return None
    if exception.max_duration_days is not None:
        if entry.expires_on is None:
            return None
        if (entry.expires_on - entry.decided_on).days > exception.max_duration_days:
            return None
    return tuple(evidence)


def _lift(
    ctx: _Context, issuer: IssuerNode, reasons: list[Reason], lifting: list[ListEntryPoint]
) -> list[Reason]:
    """Apply inclusion (readmit) and exception entries to an issuer's hits."""
    if not lifting:
        return reasons
    via = (Via(issuer.issuer_id, "self"),)
    result = reasons
    notes: list[Reason] = []
    for entry in sorted(lifting, key=lambda e: (e.decided_on, e.dataset_id, e.source_row)):
        if entry.list == "exception":
            # "Void while any of these rules fires": a rule that cannot be decided may fire.
            fired = {r.rule_id for r in result if r.outcome in _MAY_FIRE}
            declared = [
                x
                for x in ctx.policy.exceptions
                if entry.reason.startswith(x.id)
                or not any(entry.reason.startswith(y.id) for y in ctx.policy.exceptions)
            ]
            for exception in declared:
                conditions = _exception_holds(ctx, issuer, exception, entry, fired)
                if conditions is None:
                    continue
                # The issuer's own hits only (its conditions were tested on this issuer, not
                # on a subsidiary), and hits only: no licence to hold without the data.
                lifted = [
                    r
                    for r in result
                    if r.rule_id in exception.lifts
                    and r.outcome in ("exclude", "watch")
                    and r.via[0].relation == "self"
                ]
                if lifted:
                    result = [r for r in result if r not in lifted]
                    notes.append(
                        _lifted_note(
                            f"exception:{exception.id}",
                            exception.title,
                            "excepted",
                            via,
                            entry,
                            lifted,
                            conditions,
                        )
                    )
            continue
        # Inclusion: lifts only the hits it was decided for (below); never missing data.
        lifted = [r for r in result if _readmits(ctx, entry, r)]
        if lifted:
            notes.append(
                _lifted_note("list:inclusion", entry.reason, "readmitted", via, entry, lifted)
            )
            result = [r for r in result if r not in lifted]
    return [*result, *notes]


_MAY_FIRE = frozenset({"exclude", "watch", "unknown", "undecided"})


def _lifted_note(
    rule_id: str,
    title: str,
    outcome: str,
    via: tuple[Via, ...],
    entry: ListEntryPoint,
    lifted: list[Reason],
    conditions: tuple[Evidence, ...] = (),
) -> Reason:
    """The reason an inclusion or exception lifted hits: the entry, the evidence of the
    exception's conditions, then the evidence of every hit it lifted (what was set aside, and
    on which data), so an auditor sees all three."""
    lifted_evidence = (e for r in lifted for e in r.evidence)
    evidence = (_entry_evidence(entry), *conditions, *lifted_evidence)
    detail = "lifts " + ", ".join(sorted({r.rule_id for r in lifted}))
    return Reason(rule_id, title, outcome, via, evidence, detail)


def _readmits(ctx: _Context, entry: ListEntryPoint, reason: Reason) -> bool:
    """Whether an inclusion entry lifts ``reason`` (seed 003: an excluded company can be
    readmitted by decision). Only hits (exclude or watch): an exclusion entry decided no later
    than it; a rule's hit when the entry names that rule (naming rules lifts those only), else
    when the rule's condition held on the data the decision could have seen (dated on or before
    ``decided_on``, loaded no later than the entry's dataset, judged that day). A later hit
    (new evidence), and missing or undecidable data, are never lifted."""
    if reason.outcome not in ("exclude", "watch"):
        return False
    if reason.rule_id.startswith("list:"):
        decided = reason.evidence[0].as_of if reason.evidence else None
        return decided is not None and decided <= entry.decided_on
    if entry.rule_ids:  # it names its rules: those, and no other
        return reason.rule_id in entry.rule_ids
    rule = ctx.policy.rule(reason.rule_id)
    origin = _node(ctx, reason.via[-1].issuer_id) if reason.via else None
    if rule is None or origin is None:
        return False
    past = ctx.as_of(entry.decided_on, entry.dataset_id)
    return _condition(past, origin, rule.when).truth is Truth.true


def _node(ctx: _Context, issuer_id: str) -> IssuerNode | None:
    """An issuer of the snapshot, or the stand-in for a country without a sovereign issuer."""
    node = ctx.snapshot.issuers.get(issuer_id)
    if node is None and issuer_id.startswith("country:"):
        node = next(iter(ctx.snapshot.sovereign_nodes(issuer_id.removeprefix("country:"))))
    return node


def _issuer_reasons(ctx: _Context, issuer: IssuerNode, seen: frozenset[str]) -> tuple[Reason, ...]:
    cached = ctx.issuer_cache.get(issuer.issuer_id)
    if cached is not None:
        return cached
    cuts = ctx.cuts
    reasons = [
        *_rule_reasons(ctx, issuer),
        *_group_reasons(ctx, issuer, seen | {issuer.issuer_id}),
        *_state_reasons(ctx, issuer, seen),
    ]
    list_hits, lifting = _list_reasons(ctx, issuer)
    result = tuple(_lift(ctx, issuer, [*reasons, *list_hits], lifting))
    if ctx.cuts == cuts:  # complete: the same whoever asks first
        ctx.issuer_cache[issuer.issuer_id] = result
    return result


# ------------------------------------------------------------------------------ instruments


def _instrument_reasons(
    ctx: _Context, isin: str, seen: frozenset[str]
) -> tuple[Reason, ...] | None:
    instrument = ctx.snapshot.instruments.get(isin)
    if instrument is None:
        if isin in ctx.snapshot.compositions:  # an index: judged by what it holds
            return tuple(_look_through(ctx, isin, None, seen))
        return None
    issuer = ctx.snapshot.issuers.get(instrument.issuer_id)
    if issuer is None:
        return None
    issuer_reasons = _issuer_reasons(ctx, issuer, frozenset())
    reasons = (
        [r for r in issuer_reasons if _asset_class_covered(ctx, r, instrument.asset_class)]
        if issuer_reasons
        else []
    )
    if instrument.asset_class == "fund" or isin in ctx.snapshot.compositions:
        reasons += _look_through(ctx, isin, instrument, seen)
    underlying = instrument.underlying_isin
    if ctx.policy.propagation.underlying and underlying and underlying not in seen:
        below = _instrument_reasons(ctx, underlying, seen | {isin})
        if below is None:
            # The instrument takes its underlying's verdict, which cannot be known: unknown.
            reasons.append(
                Reason(
                    rule_id="data:underlying",
                    title="Underlying not known",
                    outcome="unknown",
                    via=(Via(instrument.issuer_id, "self"),),
                    detail=f"{isin} is written on {underlying}, but no instrument with that "
                    f"ISIN (or its issuer) is known at data version {ctx.snapshot.data_version}",
                )
            )
        else:
            under = ctx.snapshot.instruments.get(underlying)
            under_issuer = under.issuer_id if under is not None else underlying  # an index
            reasons += [
                r.travelled(Via(under_issuer, "underlying"))
                for r in below
                if r.outcome in ("exclude", "watch", "unknown")
            ]
    return tuple(reasons)


# ------------------------------------------------------------------------------ look-through

LOOK_THROUGH = "look-through"
FUND_WEIGHT = "fund_weight_pct"
FUND_COVERAGE = "fund_coverage_pct"


class _Judged(NamedTuple):
    """A fund's constituent, judged: ``verdict`` None when it cannot be (not known, a cycle,
    too deep), with ``why``; ``via`` names it (its ISIN, or the issuer a reference resolved to)."""

    via: str
    verdict: Verdict | None
    reasons: tuple[Reason, ...] = ()
    why: str | None = None


def _constituent(ctx: _Context, ref: str, path: frozenset[str]) -> _Judged:
    """One constituent judged under the policy: an ISIN as an instrument (a fund or an index
    in turn looked through), an issuer reference as an issuer (every rule counts: fail closed,
    as on the issuer-level list). Cached per reference and depth (how deep the look-through
    may still go decides a fund's judgement) unless judged below a cut: the same whoever asks
    first (a cached constituent has no cycle through it; see ``fund_cuts``)."""
    cache = ctx.holding_cache.setdefault(len(path), {})
    cached = cache.get(ref)
    if cached is not None:
        return cached
    snapshot = ctx.snapshot
    if ref in path:
        ctx.fund_cuts += 1
        return _Judged(ref, None, why="a cycle: it holds, directly or not, a fund holding it")
    cuts = ctx.fund_cuts
    if ref in snapshot.instruments or ref in snapshot.compositions:
        found = _instrument_reasons(ctx, ref, path)
        judged = (
            _Judged(ref, None, why="its instrument's issuer is not known")
            if found is None
            else _Judged(ref, _verdict(found), found)
        )
    else:
        issuer = snapshot.issuers.get(snapshot.issuer_refs.get(ref, ref))
        if issuer is None:
            judged = _Judged(ref, None, why="no instrument or issuer is known by this reference")
        else:
            own = _issuer_reasons(ctx, issuer, frozenset())
            judged = _Judged(issuer.issuer_id, _verdict(own), own)
    if ctx.fund_cuts == cuts:
        cache[ref] = judged
    return judged


def _why(judged: _Judged) -> str:
    """Why a constituent is not covered: its own account, or its first undecided reason's."""
    if judged.why is not None:
        return judged.why
    first = next((r for r in judged.reasons if r.outcome == "unknown"), None)
    return "unknown" if first is None else f"unknown: {first.detail or first.title}"


def _pct(value: Decimal | float) -> str:
    return format(Decimal(str(value)).normalize(), "f")


def _look_through(
    ctx: _Context, isin: str, instrument: InstrumentNode | None, seen: frozenset[str]
) -> list[Reason]:
    """A fund's (or an index's) reasons from its composition (``LookThrough`` in the policy
    document): its firing constituents' reasons travelled (relation ``holding``) with their
    weights, or one ``look-through`` reason when the composition cannot settle it."""
    settings = ctx.policy.look_through
    own = (Via(instrument.issuer_id if instrument is not None else isin, "self"),)
    composition = ctx.snapshot.composition(isin, ctx.day)

    def undecided(detail: str, evidence: tuple[Evidence, ...] = ()) -> list[Reason]:
        return [
            Reason(LOOK_THROUGH, "Fund composition not known", "unknown", own, evidence, detail)
        ]

    if composition is None:
        return undecided(
            f"{isin} is a fund, but no composition of it dated on or before "
            f"{ctx.day.isoformat()} is known at data version {ctx.snapshot.data_version}"
        )
    age = (ctx.day - composition.as_of).days
    if age > settings.max_age_days:
        aged = Evidence(
            "internal",
            "fund_composition_age_days",
            str(age),
            "<=",
            str(settings.max_age_days),
            composition.as_of,
            composition.dataset_id,
        )
        return undecided(
            f"the composition of {isin} is as of {composition.as_of.isoformat()}, older than "
            f"the policy's {settings.max_age_days} days",
            (aged,),
        )
    if len(seen) >= settings.max_depth:
        ctx.fund_cuts += 1
        return undecided(
            f"{isin} is held {len(seen)} funds deep, the policy looks through at most "
            f"{settings.max_depth}"
        )
    return _judge_composition(ctx, composition, own, seen | {isin})


def _judge_composition(
    ctx: _Context,
    composition: Composition,
    own: tuple[Via, ...],
    path: frozenset[str],
) -> list[Reason]:
    settings = ctx.policy.look_through
    excluded = Decimal(0)
    flagged = Decimal(0)  # excluded or watch
    missing = Decimal(0)  # not covered
    fired: list[tuple[Constituent, _Judged]] = []
    uncovered: list[tuple[Constituent, _Judged]] = []
    # The hot loop of a universe compile (a million constituents): each constituent's
    # judgement is a cache hit but for the first fund holding it; most are allowed.
    cached = ctx.holding_cache.setdefault(len(path), {}).get
    for constituent in composition.constituents:
        judged = cached(constituent[0]) or _constituent(ctx, constituent[0], path)
        verdict = judged.verdict
        if verdict == "allowed":
            continue
        weight = constituent.weight_pct
        if verdict is None or verdict == "unknown":
            missing += weight
            uncovered.append((constituent, judged))
            continue
        flagged += weight
        if verdict == "excluded":
            excluded += weight
        fired.append((constituent, judged))
    covered = composition.total_weight() - missing
    reasons: list[Reason] = []
    exclude_at = Decimal(str(settings.exclude_above_pct))
    watch_at = Decimal(str(settings.watch_above_pct))
    excludes = excluded > exclude_at
    watches = flagged > watch_at
    fund = composition.fund_isin
    fired_as = {
        "exclude": ("excluded", _pct(exclude_at), _pct(excluded)),
        "watch": ("excluded or watch", _pct(watch_at), _pct(flagged)),
    }
    for constituent, judged in fired:
        shown = format(constituent.weight_pct.normalize(), "f")
        holding = Via(judged.via, "holding")
        # One weight evidence per constituent and outcome, shared by its reasons (rendered once).
        weights: dict[str, Evidence] = {}
        for reason in judged.reasons:
            if reason.outcome == "exclude" and excludes:
                outcome = "exclude"
            elif reason.outcome in ("exclude", "watch") and watches:
                outcome = "watch"
            else:
                continue
            what, threshold, total = fired_as[outcome]
            evidence = weights.get(outcome)
            if evidence is None:
                evidence = weights[outcome] = Evidence(
                    "internal",
                    FUND_WEIGHT,
                    shown,
                    ">",
                    threshold,
                    composition.as_of,
                    composition.dataset_id,
                    constituent.source_row,
                    f"holding_ref {constituent.ref}",
                )
            reasons.append(
                Reason(
                    reason.rule_id,
                    reason.title,
                    outcome,
                    (holding, *reason.via),
                    (evidence, *reason.evidence),
                    f"{fund} holds {shown} % in {judged.via} ({reason.outcome}: "
                    f"{reason.title}); its weight in {what} holdings, {total} %, is "
                    f"above {threshold} %",
                )
            )
    minimum = Decimal(str(settings.min_coverage_pct))
    if covered < minimum:
        named = ", ".join(f"{c.ref} {_pct(c.weight_pct)} % ({_why(j)})" for c, j in uncovered[:5])
        more = f" and {len(uncovered) - 5} more" if len(uncovered) > 5 else ""
        reasons.append(
            Reason(
                LOOK_THROUGH,
                "Fund composition not covered",
                "unknown",
                own,
                (
                    Evidence(
                        "internal",
                        FUND_COVERAGE,
                        _pct(covered),
                        ">=",
                        _pct(minimum),
                        composition.as_of,
                        composition.dataset_id,
                    ),
                ),
                f"{_pct(covered)} % of {fund} is judged, the policy needs {_pct(minimum)} %"
                + (f"; not judged: {named}{more}" if named else "; the rest is not stated"),
            )
        )
    return reasons


def _asset_class_covered(ctx: _Context, reason: Reason, asset_class: str) -> bool:
    classes = ctx.asset_classes.get(reason.rule_id, _UNCACHED)
    if classes is _UNCACHED:
        rule = ctx.policy.rule(reason.rule_id)
        classes = ctx.asset_classes[reason.rule_id] = (
            None if rule is None else frozenset(a.value for a in rule.applies_to.asset_classes)
        )
    return classes is None or asset_class in classes


def _sort_key(reason: Reason) -> tuple[Any, ...]:
    return (
        -VERDICT_RANK[reason.verdict],
        reason.rule_id,
        tuple((v.issuer_id, v.relation) for v in reason.via),
        reason.outcome,
    )


def _verdict(reasons: Iterable[Reason]) -> Verdict:
    verdict: Verdict = "allowed"
    for reason in reasons:
        if VERDICT_RANK[reason.verdict] > VERDICT_RANK[verdict]:
            verdict = reason.verdict
    return verdict


def evaluate(
    policy: PolicyDocument,
    snapshot: Snapshot,
    isin: str,
    at: dt.datetime,
    *,
    list_keys: Sequence[str] | None = None,
    account: Account = "client",
) -> Evaluation:
    """Judge one instrument under one (effective) policy document at time ``at``.

    ``list_keys``: whose list entries apply (default: the policy's own key). ``account``: whose
    money (``own``: the house's own account; ``client``, the default: client money, which is
    how a check without a portfolio is judged); it decides which exceptions can apply.
    """
    return evaluate_many(policy, snapshot, [isin], at, list_keys=list_keys, account=account)[0]


def evaluate_many(
    policy: PolicyDocument,
    snapshot: Snapshot,
    isins: Sequence[str],
    at: dt.datetime,
    *,
    list_keys: Sequence[str] | None = None,
    account: Account = "client",
) -> list[Evaluation]:
    """Judge several instruments at once: each issuer is evaluated once for all of them."""
    return Evaluator(policy, snapshot, at, list_keys=list_keys, account=account).instruments(isins)


def evaluate_issuers(
    policy: PolicyDocument,
    snapshot: Snapshot,
    issuer_ids: Sequence[str],
    at: dt.datetime,
    *,
    list_keys: Sequence[str] | None = None,
    account: Account = "client",
) -> list[IssuerEvaluation]:
    """Judge issuers themselves (custodians' issuer-level lists), as ``evaluate_many`` would
    judge an instrument of theirs, with two differences: every rule counts whatever asset
    classes it is restricted to (the issuer is listed when some of its instruments would be:
    fail closed), and nothing travels from an underlying (that is an instrument's matter).
    """
    return Evaluator(policy, snapshot, at, list_keys=list_keys, account=account).issuers(issuer_ids)


class Evaluator:
    """Judgements under one policy document, snapshot and day, in as many calls as wanted:
    each issuer is evaluated once however many calls ask about it (a whole-universe list is
    judged in chunks, and one issuer's instruments fall in different chunks)."""

    def __init__(
        self,
        policy: PolicyDocument,
        snapshot: Snapshot,
        at: dt.datetime,
        *,
        list_keys: Sequence[str] | None = None,
        account: Account = "client",
    ) -> None:
        self._ctx = _Context(
            policy=policy,
            snapshot=snapshot,
            day=at.date(),
            data=DataContext.of(policy),
            policy_keys=tuple(list_keys or (policy.key,)),
            account=account,
        )

    def instruments(self, isins: Sequence[str]) -> list[Evaluation]:
        return [_evaluate(self._ctx, isin) for isin in isins]

    def issuers(self, issuer_ids: Sequence[str]) -> list[IssuerEvaluation]:
        return [_evaluate_issuer(self._ctx, issuer_id) for issuer_id in issuer_ids]


def _evaluate_issuer(ctx: _Context, issuer_id: str) -> IssuerEvaluation:
    issuer = ctx.snapshot.issuers.get(issuer_id)
    if issuer is None:
        missing = Reason(
            rule_id="data:issuer",
            title="Issuer not known",
            outcome="unknown",
            via=(),
            detail=f"no issuer {issuer_id} is known at data version {ctx.snapshot.data_version}",
        )
        return IssuerEvaluation(
            issuer_id, "unknown", may_hold_under(ctx.policy, "unknown"), (missing,)
        )
    ordered = tuple(sorted(set(_issuer_reasons(ctx, issuer, frozenset())), key=_sort_key))
    verdict = _verdict(ordered)
    return IssuerEvaluation(issuer_id, verdict, may_hold_under(ctx.policy, verdict), ordered)


def _evaluate(ctx: _Context, isin: str) -> Evaluation:
    policy, snapshot = ctx.policy, ctx.snapshot
    instrument = snapshot.instruments.get(isin)
    reasons = _instrument_reasons(ctx, isin, frozenset())
    if reasons is None or instrument is None:
        missing = Reason(
            rule_id="data:instrument",
            title="Instrument not known",
            outcome="unknown",
            via=(),
            detail=f"no instrument with ISIN {isin} (or its issuer) is known at data version "
            f"{snapshot.data_version}",
        )
        return Evaluation(
            isin, False, None, "unknown", may_hold_under(policy, "unknown"), (missing,)
        )
    if not reasons:  # most instruments of a universe: nothing to order
        return Evaluation(isin, True, instrument.issuer_id, "allowed", True, ())
    ordered = tuple(sorted(set(reasons), key=_sort_key))
    verdict = _verdict(ordered)
    return Evaluation(
        isin, True, instrument.issuer_id, verdict, may_hold_under(policy, verdict), ordered
    )


def may_hold_under(policy: PolicyDocument, verdict: Verdict) -> bool:
    """Whether a verdict lets the instrument be held: never when excluded; when unknown, as
    the policy's ``unknown`` setting says (default: block, fail closed)."""
    if verdict == "excluded":
        return False
    if verdict == "unknown":
        return policy.unknown is UnknownPolicy.allow
    return True


JudgedT = TypeVar("JudgedT", Evaluation, IssuerEvaluation)


def stricter(a: JudgedT, b: JudgedT) -> JudgedT:
    """For overlays: the stricter of the base's and the overlay's evaluations (reasons of both)."""
    verdict = a.verdict if VERDICT_RANK[a.verdict] >= VERDICT_RANK[b.verdict] else b.verdict
    reasons = tuple(sorted(set(a.reasons) | set(b.reasons), key=_sort_key))
    return replace(b, verdict=verdict, may_hold=a.may_hold and b.may_hold, reasons=reasons)
