"""Position limits (seed 002, ABTN §5.2 point 6): pure evaluation, no I/O, no clock.

"Investments in the sponsoring companies are limited to at most 5 % of the portfolio;
investments in companies of the same group as the sponsoring companies to at most 10 %."
A policy declares such limits (``PositionLimit``); this module judges them against one
portfolio's position report (``Holdings``), before a trade (``PortfolioLimits.check``, per
order) and after (``PortfolioLimits.utilisation``).

Semantics:

* **Issuers of a limit.** ``sponsor``: the issuers the sponsor list entries in force name.
  ``sponsor_group``: for each sponsor its *ultimate* parent (``parent_issuer_id`` followed to
  the top; a cycle stops at the last issuer before it repeats) and every issuer under that
  parent (all descendants through ``Snapshot.subsidiaries`` and the issuers' parent links),
  the sponsor included; the union over the sponsors. A limit is one aggregate limit over its
  issuer set. No sponsor entry in force: every limit is undecidable (``unknown``).
* **Exposure.** The share of a position's value that counts toward a limit (``exposure``):
  all of it when its instrument's issuer is in the set, or, for an instrument on an underlying
  (a derivative, a receipt), when the issuer of an instrument down its underlying chain is.
  A fund (asset class ``fund``, or any instrument or index with a composition) whose own issuer
  is not in the set counts at its constituents' weights (seed 002 §2.3.3: the lifecycle invests
  only through funds; a limit a fund could sidestep is no limit): the sum over the composition
  in force on the day of ``weight_pct / 100`` times the constituent's own exposure (an ISIN as
  an instrument, looked through in turn; an issuer reference as its issuer). Not known, so
  between bounds (0 and 1, or the fund's partial sums): an instrument missing from the
  snapshot, a fund with no composition, one older than the policy's ``look_through.max_age_days``
  or deeper than its ``max_depth``, a cycle of funds, a constituent reference that resolves to
  nothing, and the weight a composition does not state (``100 - sum``: cash or undisclosed).
* **Share.** The counted market value of the limit's long positions (value times exposure)
  over the portfolio's total market value (every position's market value as reported, shorts
  included as the negative values they are), times 100. Short positions (``Position.short``)
  never count in the numerator: a short in the sponsor makes no room for more of it. Exact
  arithmetic (no division in the comparisons): within the limit iff
  ``numerator * 100 <= max_pct * total``; exactly at the limit is allowed.
* **Undecidable.** No position report (``holdings`` None); a position without a market value
  (the total is unknown; the reason names the first five rows and the count); a total of zero
  or less (before or after an order). Positions of unknown exposure give bounds: ``lo``
  counts each at its lowest exposure, ``hi`` at its highest (for a negative value the other
  way round); the limit is decided when the bounds agree on it (e.g. even counting every
  unknown instrument the group stays within the limit), else it is unknown and the reason names
  the unknown instruments.
* **Pre-trade** (``check``): each order is judged on the current holdings alone (not on the
  other orders of a request). A buy adds its market value to the total and its counted value
  (times its exposure) to the numerator; a sell takes them from both likewise (an exposure
  known only within bounds widens the numerator's bounds). An order *breaches* a limit when
  the share after it is above the limit and higher than before: a sell reducing a breach, or a
  buy of something else that dilutes one, is allowed; a sell of something else that pushes the
  group over is not.
  With bounds: a certain breach iff ``lo_after > max`` and ``lo_after > hi_before``; certainly
  fine iff ``hi_after <= max`` or ``hi_after <= lo_before``; otherwise unknown.
  The answer is one engine ``Reason`` per limit breached (``exclude``) or undecidable
  (``unknown``), none for a limit the order keeps: ``rule_id`` the limit's id, evidence
  ``metric: portfolio_pct``, ``value`` the share after the order, ``comparison`` ``<=``,
  ``threshold`` the limit, dated by the holdings (``as_of``, ``dataset_id``).
* **Post-trade** (``utilisation``): per limit its share and whether it is breached
  (share above the limit).
* **Value text.** The exact share rounded half up to 4 decimals, trailing zeros stripped; a
  breached share that would read as the threshold gets more digits until it differs. A share
  only known within bounds reads ``lo..hi``; one that cannot be computed, ``unknown``.

Arithmetic is exact: decimals in a context of ``_PRECISION`` digits (no rounding for market
values and weights as loaded, several funds deep), shares compared as fractions.

Cost: ``PortfolioLimits.build`` is O(positions + the snapshot's issuers + the constituents of
the funds held); after it each order costs O(limits) plus one walk up its instrument's
underlying chain, or through a fund's composition when it is a fund not held.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Literal, NamedTuple

from app.policies.document import LookThrough, PositionLimit
from app.screening.engine import Evidence, Reason
from app.screening.snapshot import ListEntryPoint, Snapshot

GroupKind = Literal["sponsor", "sponsor_group"]
Side = Literal["buy", "sell"]
Status = Literal["ok", "breach", "unknown"]

PROVIDER = "mayhold"
METRIC = "portfolio_pct"
SPONSOR_LIST = "sponsor"
_SHOWN = 5  # rows or instruments named in a reason, then a count
_MAX_DIGITS = 40

_HUNDRED = Decimal(100)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_PRECISION = 120


class Position(NamedTuple):
    """One row of a position report: an instrument and its market value (base currency)."""

    isin: str
    market_value: Decimal | None
    source_row: int
    short: bool = False


@dataclass(frozen=True)
class Holdings:
    """A portfolio's complete position report as of one date (one holdings dataset)."""

    portfolio_id: str
    dataset_id: int
    as_of: dt.date
    positions: tuple[Position, ...]
    base_currency: str | None = None


@dataclass(frozen=True)
class Order:
    """An order judged as if executed on the current holdings."""

    isin: str
    side: Side
    market_value: Decimal
    quantity: Decimal | None = None

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"an order's side is buy or sell, not {self.side!r}")
        if not self.market_value > 0:
            raise ValueError(f"an order's market value must be positive: {self.market_value}")


@dataclass(frozen=True)
class LimitUtilisation:
    """A limit after the trade (post-trade): the share, and whether it is breached."""

    limit_id: str
    title: str
    pct: Decimal | None  # the share (as shown: 4 decimals or more); None when not exact
    max_pct: Decimal
    breach: bool | None  # None: undecidable
    status: Status
    reason: Reason | None  # for a breach or an undecidable limit


# ------------------------------------------------------------------------- issuer sets


def _children(snapshot: Snapshot) -> dict[str, set[str]]:
    children: dict[str, set[str]] = {}
    for parent, subs in snapshot.subsidiaries.items():
        children.setdefault(parent, set()).update(subs)
    for node in snapshot.issuers.values():
        if node.parent_issuer_id is not None:
            children.setdefault(node.parent_issuer_id, set()).add(node.issuer_id)
    return children


def ultimate_parent(issuer_id: str, snapshot: Snapshot) -> str:
    """The top of ``issuer_id``'s parent chain (itself if it has no parent); cycle-safe."""
    seen = {issuer_id}
    current = issuer_id
    while True:
        node = snapshot.issuers.get(current)
        parent = node.parent_issuer_id if node is not None else None
        if parent is None or parent in seen:
            return current
        seen.add(parent)
        current = parent


def _descendants(top: str, children: Mapping[str, set[str]]) -> set[str]:
    found = {top}
    todo = [top]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def issuer_sets(
    sponsors: Iterable[ListEntryPoint], snapshot: Snapshot
) -> dict[GroupKind, frozenset[str]]:
    """The issuers of each kind of limit: the sponsors, and the sponsors' groups."""
    named = frozenset(e.issuer_id for e in sponsors if e.list == SPONSOR_LIST)
    group: set[str] = set(named)
    if named:
        children = _children(snapshot)
        for top in {ultimate_parent(s, snapshot) for s in named}:
            group |= _descendants(top, children)
    return {"sponsor": named, "sponsor_group": frozenset(group)}


class Exposure(NamedTuple):
    """The share of an instrument's value that counts toward a limit: ``lo``..``hi`` (0..1),
    equal when known; ``unknown`` names what could not be told (instruments, funds)."""

    lo: Decimal
    hi: Decimal
    unknown: tuple[str, ...] = ()


COUNTS = Exposure(_ONE, _ONE)
NONE = Exposure(_ZERO, _ZERO)


@dataclass(frozen=True)
class ExposureRules:
    """What deciding an exposure needs besides the issuer set: the day (which composition is in
    force) and the policy's look-through limits (a composition's age, funds' depth)."""

    day: dt.date
    look_through: LookThrough = field(default_factory=LookThrough)


def exposure(
    isin: str,
    members: frozenset[str],
    snapshot: Snapshot,
    rules: ExposureRules,
    _path: frozenset[str] = frozenset(),
) -> Exposure:
    """How much of ``isin``'s value counts toward a limit over ``members`` (see the module's
    "Exposure"). Exact; cycle-safe (a fund on its own path is unknown)."""
    seen: set[str] = set()
    current: str | None = isin
    while current is not None and current not in seen:
        seen.add(current)
        node = snapshot.instruments.get(current)
        if node is not None and node.issuer_id in members:
            return COUNTS
        if current in snapshot.compositions or (node is not None and node.asset_class == "fund"):
            return _fund_exposure(current, members, snapshot, rules, _path)
        if node is None:
            return Exposure(_ZERO, _ONE, (current,))
        current = node.underlying_isin
    return NONE


def _fund_exposure(
    fund: str,
    members: frozenset[str],
    snapshot: Snapshot,
    rules: ExposureRules,
    path: frozenset[str],
) -> Exposure:
    settings = rules.look_through
    composition = snapshot.composition(fund, rules.day)
    if (
        fund in path
        or len(path) >= settings.max_depth
        or composition is None
        or (rules.day - composition.as_of).days > settings.max_age_days
    ):
        return Exposure(_ZERO, _ONE, (fund,))
    within = path | {fund}
    with localcontext(prec=_PRECISION):
        lo = hi = _ZERO
        unknown: dict[str, None] = {}
        for constituent in composition.constituents:
            ref = constituent.ref
            if ref in snapshot.instruments or ref in snapshot.compositions:
                part = exposure(ref, members, snapshot, rules, within)
            else:
                issuer = snapshot.issuer_refs.get(ref, ref)
                if issuer in members:
                    part = COUNTS
                elif issuer in snapshot.issuers:
                    part = NONE
                else:
                    part = Exposure(_ZERO, _ONE, (f"{ref} (held by {fund})",))
            if part.hi == 0:
                continue
            weight = constituent.weight_pct / _HUNDRED
            lo += weight * part.lo
            hi += weight * part.hi
            unknown.update(dict.fromkeys(part.unknown))
        undisclosed = _ONE - composition.total_weight() / _HUNDRED
        if undisclosed > 0:
            hi += undisclosed
            unknown[f"{fund} (undisclosed {_plain(undisclosed * _HUNDRED)} %)"] = None
    return Exposure(lo, hi, tuple(unknown))


# ------------------------------------------------------------------------- text


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _rounded(share: Fraction, digits: int) -> Decimal:
    units = math.floor(share * 10**digits + Fraction(1, 2))  # half up
    return Decimal(f"{units}E-{digits}")


def share_text(share: Fraction, threshold: Decimal | None = None) -> str:
    """The share rounded to 4 decimals; more when a share above ``threshold`` would read as it."""
    digits = 4
    shown = _rounded(share, digits)
    while threshold is not None and share > threshold and shown == threshold:
        if digits >= _MAX_DIGITS:
            break
        digits += 1
        shown = _rounded(share, digits)
    return _plain(shown)


def _money(amount: Decimal, currency: str | None) -> str:
    whole = amount == amount.to_integral_value()
    text = f"{int(amount):,}" if whole else f"{amount:,.2f}"
    return f"{currency} {text}" if currency else text


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = len(items) - _SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


_SUBJECT: dict[GroupKind, str] = {
    "sponsor": "the sponsor",
    "sponsor_group": "the sponsor's group",
}


# ------------------------------------------------------------------------- state


@dataclass(frozen=True)
class _Aggregate:
    """The numerator bounds of one kind of limit over the current holdings."""

    members: frozenset[str]
    lo: Decimal
    hi: Decimal
    unknown: tuple[str, ...]  # instruments (or a fund's parts) of unknown exposure (held, long)
    exposures: Mapping[str, Exposure]  # per held instrument


@dataclass(frozen=True)
class _Range:
    """A share known within bounds (as numerators over one total)."""

    lo: Decimal
    hi: Decimal
    total: Decimal

    def lo_share(self) -> Fraction:
        return Fraction(self.lo) * 100 / Fraction(self.total)

    def hi_share(self) -> Fraction:
        return Fraction(self.hi) * 100 / Fraction(self.total)

    def text(self, threshold: Decimal) -> str:
        lo = share_text(self.lo_share(), threshold)
        if self.lo == self.hi:
            return lo
        return f"{lo}..{share_text(self.hi_share(), threshold)}"

    def within(self, max_pct: Decimal, numerator: Decimal) -> bool:
        return numerator * _HUNDRED <= max_pct * self.total


@dataclass(frozen=True)
class PortfolioLimits:
    """One portfolio's limit state, computed once; then each order costs O(limits)."""

    limits: tuple[PositionLimit, ...]
    snapshot: Snapshot
    holdings: Holdings | None
    portfolio_id: str | None
    at: dt.date | None
    total: Decimal | None
    issuers: Mapping[GroupKind, frozenset[str]]
    aggregates: Mapping[GroupKind, _Aggregate]
    # Why no limit can be evaluated at all (no report, no sponsor, missing values, total <= 0).
    blocked: str | None
    max_pcts: Mapping[str, Decimal] = field(default_factory=dict)
    rules: ExposureRules = field(default_factory=lambda: ExposureRules(dt.date.min))

    @classmethod
    def build(
        cls,
        limits: Sequence[PositionLimit],
        sponsors: Sequence[ListEntryPoint],
        snapshot: Snapshot,
        holdings: Holdings | None,
        *,
        portfolio_id: str | None = None,
        at: dt.date | None = None,
        look_through: LookThrough | None = None,
    ) -> PortfolioLimits:
        """The limit state of a portfolio. ``portfolio_id`` and ``at`` name the portfolio and
        the day in the reason when there is no position report (``holdings`` None); ``at``
        (else the report's date) picks the funds' compositions, judged by ``look_through``
        (the policy's section; default: its defaults)."""
        sets = issuer_sets(sponsors, snapshot)
        maxima = {lim.id: Decimal(str(lim.max_portfolio_pct)) for lim in limits}
        portfolio = holdings.portfolio_id if holdings is not None else portfolio_id
        blocked: str | None = None
        total: Decimal | None = None
        aggregates: dict[GroupKind, _Aggregate] = {}
        if holdings is None:
            day = f" at {at.isoformat()}" if at is not None else ""
            blocked = f"no position report for portfolio {portfolio or '(unnamed)'}{day}"
        else:
            missing = [p for p in holdings.positions if p.market_value is None]
            if missing:
                rows = [f"row {p.source_row} ({p.isin})" for p in missing]
                blocked = (
                    f"{len(missing)} position(s) of portfolio {holdings.portfolio_id} have no "
                    f"market value ({_named(rows)}): the portfolio's total is unknown"
                )
            else:
                total = sum((p.market_value or _ZERO for p in holdings.positions), _ZERO)
                if total <= 0:
                    blocked = (
                        f"the total market value of portfolio {holdings.portfolio_id} is "
                        f"{_money(total, holdings.base_currency)}, not positive: no share of it "
                        "can be computed"
                    )
        if blocked is None and not sets["sponsor"]:
            blocked = (
                "no sponsor is named in the policy's `sponsor` list: the sponsor and its group "
                "are unknown"
            )
        rules = ExposureRules(
            at or (holdings.as_of if holdings is not None else dt.date.min),
            look_through or LookThrough(),
        )
        if holdings is not None:
            kinds = {lim.group for lim in limits}
            for kind in sorted(kinds):
                aggregates[kind] = _aggregate(sets[kind], snapshot, holdings.positions, rules)
        return cls(
            limits=tuple(limits),
            snapshot=snapshot,
            holdings=holdings,
            portfolio_id=portfolio,
            at=at,
            total=total,
            issuers=sets,
            aggregates=aggregates,
            blocked=blocked,
            max_pcts=maxima,
            rules=rules,
        )

    # -- display

    def members(self, limit: PositionLimit | str) -> frozenset[str]:
        """The issuer ids a limit is over."""
        return self.issuers[self._limit(limit).group]

    def _limit(self, limit: PositionLimit | str) -> PositionLimit:
        limit_id = limit if isinstance(limit, str) else limit.id
        for candidate in self.limits:
            if candidate.id == limit_id:
                return candidate
        raise KeyError(limit_id)

    # -- pre-trade

    def check(self, order: Order) -> tuple[Reason, ...]:
        """A reason per limit ``order`` would breach or leaves undecidable (none: within)."""
        reasons: list[Reason] = []
        for limit in self.limits:
            reason = self._check_one(limit, order)
            if reason is not None:
                reasons.append(reason)
        return tuple(reasons)

    def _check_one(self, limit: PositionLimit, order: Order) -> Reason | None:
        max_pct = self.max_pcts[limit.id]
        action = (
            f"{'buying' if order.side == 'buy' else 'selling'} "
            f"{_money(order.market_value, self._currency())} of {order.isin}"
        )
        if self.blocked is not None or self.total is None:
            return self._reason(limit, "unknown", "unknown", f"{action}: {self.blocked}")
        aggregate = self.aggregates[limit.group]
        delta = order.market_value if order.side == "buy" else -order.market_value
        total_after = self.total + delta
        if total_after <= 0:
            return self._reason(
                limit,
                "unknown",
                "unknown",
                f"{action} leaves the portfolio a total market value of "
                f"{_money(total_after, self._currency())}, not positive: no share of it can be "
                "computed",
            )
        counts = aggregate.exposures.get(order.isin) or exposure(
            order.isin, aggregate.members, self.snapshot, self.rules
        )
        before = _Range(aggregate.lo, aggregate.hi, self.total)
        low, high = _counted(delta, counts)
        after = _Range(aggregate.lo + low, aggregate.hi + high, total_after)
        unknown = list(aggregate.unknown)
        if counts.lo != counts.hi:
            unknown.extend(u for u in counts.unknown if u not in unknown)
        # Shares compared without division: a/b > c/d  <=>  a*d > c*b (totals positive).
        certain_breach = not after.within(max_pct, after.lo) and (
            after.lo * before.total > before.hi * after.total
        )
        if certain_breach:
            outcome, verdict = "exclude", "breach"
        elif after.within(max_pct, after.hi) or after.hi * before.total <= before.lo * after.total:
            return None
        else:
            outcome, verdict = "unknown", "unknown"
        subject = _SUBJECT[limit.group]
        if verdict == "breach":
            detail = (
                f"{action} takes {subject} to {after.text(max_pct)}% of the portfolio "
                f"(limit {_plain(max_pct)}%); before the order {before.text(max_pct)}%"
            )
        else:
            detail = (
                f"{action} takes {subject} to between {share_text(after.lo_share(), max_pct)}% "
                f"and {share_text(after.hi_share(), max_pct)}% of the portfolio (limit "
                f"{_plain(max_pct)}%; before the order {before.text(max_pct)}%): whether "
                f"{_named(unknown)} count toward it is unknown (not in the data)"
            )
        return self._reason(limit, outcome, after.text(max_pct), detail)

    # -- post-trade

    def utilisation(self) -> tuple[LimitUtilisation, ...]:
        """Every limit's share of the portfolio now, and whether it is breached."""
        return tuple(self._utilisation_one(limit) for limit in self.limits)

    def _utilisation_one(self, limit: PositionLimit) -> LimitUtilisation:
        max_pct = self.max_pcts[limit.id]
        subject = _SUBJECT[limit.group]

        def result(
            pct: Decimal | None, breach: bool | None, reason: Reason | None
        ) -> LimitUtilisation:
            status: Status = "unknown" if breach is None else ("breach" if breach else "ok")
            return LimitUtilisation(limit.id, limit.title, pct, max_pct, breach, status, reason)

        if self.blocked is not None or self.total is None:
            return result(None, None, self._reason(limit, "unknown", "unknown", self.blocked))
        aggregate = self.aggregates[limit.group]
        now = _Range(aggregate.lo, aggregate.hi, self.total)
        text = now.text(max_pct)
        pct = Decimal(text) if aggregate.lo == aggregate.hi else None
        if not now.within(max_pct, now.lo):
            detail = f"{subject} is {text}% of the portfolio (limit {_plain(max_pct)}%)"
            if aggregate.lo != aggregate.hi:
                detail += f", counting none of {_named(aggregate.unknown)} (not in the data)"
            return result(pct, True, self._reason(limit, "exclude", text, detail))
        if now.within(max_pct, now.hi):
            return result(pct, False, None)
        detail = (
            f"{subject} is between {share_text(now.lo_share(), max_pct)}% and "
            f"{share_text(now.hi_share(), max_pct)}% of the portfolio (limit "
            f"{_plain(max_pct)}%): whether {_named(aggregate.unknown)} count toward it is "
            "unknown (not in the data)"
        )
        return result(None, None, self._reason(limit, "unknown", text, detail))

    # -- helpers

    def _currency(self) -> str | None:
        return self.holdings.base_currency if self.holdings is not None else None

    def _reason(self, limit: PositionLimit, outcome: str, value: str, detail: str | None) -> Reason:
        holdings = self.holdings
        evidence = Evidence(
            provider=PROVIDER,
            metric=METRIC,
            value=value,
            comparison="<=",
            threshold=_plain(self.max_pcts[limit.id]),
            as_of=holdings.as_of if holdings is not None else None,
            dataset_id=holdings.dataset_id if holdings is not None else None,
        )
        return Reason(
            rule_id=limit.id,
            title=limit.title,
            outcome=outcome,
            via=(),
            evidence=(evidence,),
            detail=detail,
        )


def _counted(value: Decimal, counts: Exposure) -> tuple[Decimal, Decimal]:
    """The bounds of ``value``'s counted part (exact): a negative value swaps them."""
    with localcontext(prec=_PRECISION):
        low, high = value * counts.lo, value * counts.hi
    return (low, high) if low <= high else (high, low)


def _aggregate(
    members: frozenset[str],
    snapshot: Snapshot,
    positions: Iterable[Position],
    rules: ExposureRules,
) -> _Aggregate:
    lo = hi = _ZERO
    unknown: dict[str, None] = {}  # insertion-ordered set
    seen: dict[str, Exposure] = {}
    for position in positions:
        if position.isin in seen:
            counts = seen[position.isin]
        else:
            counts = seen[position.isin] = exposure(position.isin, members, snapshot, rules)
        if position.short or position.market_value is None or counts.hi == 0:
            continue
        low, high = _counted(position.market_value, counts)
        with localcontext(prec=_PRECISION):
            lo += low
            hi += high
        if counts.lo != counts.hi:
            unknown.update(dict.fromkeys(counts.unknown))
    return _Aggregate(members, lo, hi, tuple(unknown), seen)


def check_orders(
    limits: Sequence[PositionLimit],
    sponsors: Sequence[ListEntryPoint],
    snapshot: Snapshot,
    holdings: Holdings | None,
    orders: Iterable[Order],
) -> list[tuple[Reason, ...]]:
    """Each order's limit reasons, each judged on the current holdings (a convenience)."""
    state = PortfolioLimits.build(limits, sponsors, snapshot, holdings)
    return [state.check(order) for order in orders]


__all__ = [
    "COUNTS",
    "NONE",
    "Exposure",
    "ExposureRules",
    "Holdings",
    "LimitUtilisation",
    "Order",
    "PortfolioLimits",
    "Position",
    "check_orders",
    "exposure",
    "issuer_sets",
    "share_text",
    "ultimate_parent",
]
