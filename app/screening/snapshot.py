"""What the rule engine reads: a snapshot of the data known at one data version.

Plain, frozen data; no I/O. The screening repository builds one from the database (for a few
instruments and their neighbourhood, or for the whole universe); tests build them by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter
from typing import NamedTuple

from app.datasets.records import (
    DIRECTLY_CONSOLIDATED,
    EmbargoLoad,
    Relationship,
)


class FactPoint(NamedTuple):
    """One value of a metric (a tuple: a universe holds millions, built straight from rows)."""

    metric: str
    provider: str
    value: str  # canonical text (app.kit.vocabulary.format_value)
    as_of: dt.date
    dataset_id: int
    source_row: int
    source_field: str | None = None


@dataclass(frozen=True, slots=True)
class IssuerNode:
    issuer_id: str
    name: str
    kind: str
    country: str
    parent_issuer_id: str | None = None
    parent_control_pct: Decimal | None = None
    state_owner_country: str | None = None
    state_owner_pct: Decimal | None = None
    # Where this issuer record came from (evidence for the control and ownership percentages).
    dataset_id: int | None = None
    source_row: int | None = None
    virtual: bool = False  # a sovereign stood in for a country no sovereign issuer was loaded for


@dataclass(frozen=True, slots=True)
class InstrumentNode:
    isin: str
    issuer_id: str
    asset_class: str
    underlying_isin: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Embargo:
    country: str
    authority: str
    regime: str
    since: dt.date | None
    until: dt.date | None
    dataset_id: int
    source_row: int

    def in_force(self, day: dt.date) -> bool:
        return (self.since is None or self.since <= day) and (
            self.until is None or day < self.until
        )


@dataclass(frozen=True)
class SanctionsListing:
    """One security on a published sanctions list load (``ofac-ns-cmic``): an entity and one of
    its ISINs, as published (upper-cased, kept even when it fails the check digit).

    Which loads are each provider's current list on a day is ``current_embargo_loads``'s
    decision, as for arms embargoes (``Snapshot.sanctions_loads``)."""

    isin: str
    entity_ref: str
    name: str
    listing_date: dt.date | None
    effective_date: dt.date | None
    dataset_id: int
    source_row: int


@dataclass(frozen=True)
class ListEntryPoint:
    policy_key: str
    issuer_id: str
    list: str
    reason: str
    decided_on: dt.date
    reference: str | None
    review_on: dt.date | None
    expires_on: dt.date | None
    dataset_id: int
    source_row: int
    # The rule ids an inclusion or exception entry names (empty: none named).
    rule_ids: tuple[str, ...] = ()

    def active(self, day: dt.date) -> bool:
        return self.decided_on <= day and (self.expires_on is None or day < self.expires_on)


# Guards against chains through LEIs that loop (a cycle in the published data).
MAX_CHAIN = 32


@dataclass(frozen=True)
class ConsolidationLink:
    """Issuer ``child_id`` consolidated by issuer ``parent_id``: one ultimate-parent record,
    or a chain of direct-parent records through LEIs no issuer of ours carries."""

    child_id: str
    parent_id: str
    hops: tuple[Relationship, ...]

    def in_force(self, day: dt.date, loaded_by: int | None = None) -> bool:
        return all(
            hop.not_control_on(day) is None and (loaded_by is None or hop.dataset_id <= loaded_by)
            for hop in self.hops
        )


def resolve_consolidation(
    records: Iterable[Relationship], issuers_by_lei: Mapping[str, Sequence[str]]
) -> list[ConsolidationLink]:
    """The links between our issuers that the current relationship records state.

    A direct-parent chain is followed through LEIs no issuer carries up to the first LEI one
    does (A -> X -> B, X not ours: B consolidates A through X); an ultimate-parent record names
    the top directly, and is kept unless the direct chain from the child reaches that same
    LEI (then the control shows through the intermediate parents already). Records that never
    state control (inactive, lapsed) are left out; a period end or valid_to is judged on the
    day of the check (``ConsolidationLink.in_force``). Cycles are cut.
    """
    direct: dict[str, list[Relationship]] = {}
    ultimate: dict[str, list[Relationship]] = {}
    for record in records:
        if record.not_control() is not None:
            continue
        by_type = direct if record.relationship_type == DIRECTLY_CONSOLIDATED else ultimate
        by_type.setdefault(record.start_lei, []).append(record)
    links: list[ConsolidationLink] = []

    def link(child_lei: str, parent_lei: str, hops: tuple[Relationship, ...]) -> None:
        for child_id in issuers_by_lei.get(child_lei, ()):
            for parent_id in issuers_by_lei.get(parent_lei, ()):
                if child_id != parent_id:
                    links.append(ConsolidationLink(child_id, parent_id, hops))

    for lei in sorted(issuers_by_lei):
        reached: set[str] = {lei}
        # (LEI, the records from the child to it, whether a link may still be made: only up
        # to the first LEI an issuer of ours carries; above it, only the reach is followed).
        pending: list[tuple[str, tuple[Relationship, ...], bool]] = [(lei, (), True)]
        while pending:
            at, hops, linking = pending.pop()
            for record in direct.get(at, ()):
                parent = record.end_lei
                if parent in reached or len(hops) >= MAX_CHAIN:
                    continue  # a cycle, or a chain too long to be real
                reached.add(parent)
                path = (*hops, record)
                ours = parent in issuers_by_lei
                if linking and ours:
                    link(lei, parent, path)
                pending.append((parent, path, linking and not ours))
        for record in ultimate.get(lei, ()):
            if record.end_lei not in reached:
                link(lei, record.end_lei, (record,))
    return links


class Constituent(NamedTuple):
    """One holding of a fund composition: its reference as loaded (an ISIN or an issuer
    reference, resolved through ``Snapshot.issuer_refs``), its weight (exact decimal text, as
    stored: parsed only for the few constituents that count, a universe holds a million) and
    its file row."""

    ref: str
    weight: str
    source_row: int

    @property
    def weight_pct(self) -> Decimal:
        return Decimal(self.weight)


@dataclass(frozen=True)
class Composition:
    """A fund's (or an index's) complete composition as of a date, from one load."""

    fund_isin: str
    as_of: dt.date
    dataset_id: int
    constituents: tuple[Constituent, ...]
    # The constituents' summed weight when known (the load records it); else summed here.
    weight_pct: Decimal | None = None

    def total_weight(self) -> Decimal:
        if self.weight_pct is not None:
            return self.weight_pct
        return sum((c.weight_pct for c in self.constituents), Decimal(0))


def current_composition(compositions: Iterable[Composition], day: dt.date) -> Composition | None:
    """The composition with the newest (``as_of``, ``dataset_id``) dated on or before ``day``:
    an older-dated composition loaded later (a back-fill) never supersedes a newer one, as for
    holdings reports and embargo lists."""
    latest: Composition | None = None
    for composition in compositions:
        if composition.as_of > day:
            continue
        if latest is None or (composition.as_of, composition.dataset_id) > (
            latest.as_of,
            latest.dataset_id,
        ):
            latest = composition
    return latest


_CHRONOLOGICAL = attrgetter("as_of", "dataset_id", "source_row")


def _index(items: Iterable[FactPoint]) -> dict[str, tuple[FactPoint, ...]]:
    by_metric: dict[str, list[FactPoint]] = {}
    for item in items:
        by_metric.setdefault(item.metric, []).append(item)
    # Oldest first, in a total order (source_row breaks ties within a load), so "the newest"
    # is the last one whatever order the rows were read in. Most issuers have one point per
    # metric: nothing to sort (a whole universe has millions).
    return {
        m: (v[0],) if len(v) == 1 else tuple(sorted(v, key=_CHRONOLOGICAL))
        for m, v in by_metric.items()
    }


_NO_FACTS: Mapping[str, tuple[FactPoint, ...]] = {}


@dataclass
class Snapshot:
    """Everything known at ``data_version`` about some issuers, instruments and countries."""

    data_version: int
    issuers: dict[str, IssuerNode] = field(default_factory=dict)
    instruments: dict[str, InstrumentNode] = field(default_factory=dict)
    # issuer_id -> metric -> facts, oldest first (as_of, dataset_id, source_row)
    issuer_facts: dict[str, dict[str, tuple[FactPoint, ...]]] = field(default_factory=dict)
    # country -> metric -> facts, oldest first
    country_facts: dict[str, dict[str, tuple[FactPoint, ...]]] = field(default_factory=dict)
    embargo_loads: tuple[EmbargoLoad, ...] = ()
    embargoes: dict[str, tuple[Embargo, ...]] = field(default_factory=dict)
    # Published sanctions lists (``ofac-ns-cmic``): every load, each its provider's complete
    # list as of its date; the listings by ISIN; and, per issuer, the ISINs of its current
    # instruments that some list names (matched textually at read time: ``link_listings``).
    sanctions_loads: tuple[EmbargoLoad, ...] = ()
    sanctions_listings: dict[str, tuple[SanctionsListing, ...]] = field(default_factory=dict)
    listed_isins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # (policy key, issuer_id) -> the entries in force (datasets.repository.list_entries_in_force)
    list_entries: dict[tuple[str, str], tuple[ListEntryPoint, ...]] = field(default_factory=dict)
    subsidiaries: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sovereigns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Control by consolidation (GLEIF): child issuer -> its links to consolidating parents,
    # and parent issuer -> its links to consolidated subsidiaries (``set_consolidation``).
    consolidated_by: dict[str, tuple[ConsolidationLink, ...]] = field(default_factory=dict)
    consolidates: dict[str, tuple[ConsolidationLink, ...]] = field(default_factory=dict)

    def set_consolidation(self, links: Iterable[ConsolidationLink]) -> None:
        up: dict[str, list[ConsolidationLink]] = {}
        down: dict[str, list[ConsolidationLink]] = {}
        for item in links:
            up.setdefault(item.child_id, []).append(item)
            down.setdefault(item.parent_id, []).append(item)
        self.consolidated_by = {k: tuple(v) for k, v in up.items()}
        self.consolidates = {k: tuple(v) for k, v in down.items()}

    # fund (or index) ISIN -> every composition loaded for it at this data version (which one
    # applies depends on the day asked: ``composition``)
    compositions: dict[str, tuple[Composition, ...]] = field(default_factory=dict)
    # A constituent's issuer reference (LEI, vendor id) -> the issuer it names (an issuer id
    # names itself and need not be here)
    issuer_refs: dict[str, str] = field(default_factory=dict)

    def add_issuer_facts(self, issuer_id: str, facts: Iterable[FactPoint]) -> None:
        self.issuer_facts[issuer_id] = _index(facts)

    def add_country_facts(self, country: str, facts: Iterable[FactPoint]) -> None:
        self.country_facts[country] = _index(facts)

    def facts_for(self, issuer_id: str, metric: str) -> Sequence[FactPoint]:
        return self.issuer_facts.get(issuer_id, _NO_FACTS).get(metric, ())

    def country_facts_for(self, country: str, metric: str) -> Sequence[FactPoint]:
        return self.country_facts.get(country, _NO_FACTS).get(metric, ())

    def composition(self, isin: str, day: dt.date) -> Composition | None:
        return current_composition(self.compositions.get(isin, ()), day)

    def entries(self, policy_key: str, issuer_id: str) -> Sequence[ListEntryPoint]:
        return self.list_entries.get((policy_key, issuer_id), ())

    def link_listings(self) -> None:
        """``listed_isins`` from the instruments held: each listed ISIN (exact text) to the
        issuer of the instrument carrying it (a snapshot holding every instrument concerned)."""
        linked: dict[str, list[str]] = {}
        for isin in self.sanctions_listings:
            instrument = self.instruments.get(isin)
            if instrument is not None:
                linked.setdefault(instrument.issuer_id, []).append(isin)
        self.listed_isins = {k: tuple(sorted(v)) for k, v in linked.items()}

    def sovereign_nodes(self, country: str) -> list[IssuerNode]:
        found = [self.issuers[i] for i in self.sovereigns.get(country, ()) if i in self.issuers]
        if found:
            return found
        # No sovereign issuer loaded for the country: judge the country itself.
        return [
            IssuerNode(
                issuer_id=f"country:{country}",
                name=country,
                kind="sovereign",
                country=country,
                virtual=True,
            )
        ]

    @staticmethod
    def group(items: Iterable[tuple[str, str]]) -> Mapping[str, tuple[str, ...]]:
        grouped: dict[str, list[str]] = {}
        for key, value in items:
            grouped.setdefault(key, []).append(value)
        return {k: tuple(sorted(v)) for k, v in grouped.items()}
