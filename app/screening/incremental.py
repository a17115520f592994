"""The compiled index updated from the previous compilation: a load re-evaluates what it touched.

Pure functions, no I/O (``ScreeningRepository.changes`` reads what the new datasets touched).
Three steps, each leaving what it was given unchanged (checks keep reading the previous
compilation meanwhile; its snapshot and templates are shared, never mutated):

1. ``patch``: a new ``Snapshot`` sharing every unchanged structure with the previous one: the
   maps a load can touch (issuers, instruments, facts, list entries, compositions,
   subsidiaries, sovereigns, sanctions links, constituent references) are shallow copies with
   the touched keys replaced
   (pointer copying, tens of milliseconds for a 500,000-instrument universe; never a deep copy).
2. ``affected``: the instruments whose decision can have changed. An issuer's judgement reads
   its own data, its subsidiaries' judgements (by control percentage and by consolidation: the
   group rule) and, for a state-owned company, the sovereign's; an instrument's reads its
   issuer's, its underlying's (a derivative) and its constituents' (a fund, an index). So from
   the touched issuers, countries, instruments and compositions: their parents up every chain
   (before and after the load), the state-owned companies of an affected sovereign or
   country, the instruments of every affected issuer, the funds whose compositions were
   loaded, then derivatives on and funds holding an affected instrument, fund or issuer,
   transitively. Plus every instrument whose decision names the data
   version (``data:underlying`` and the like: its text changes with each load).
3. ``recompile``: the affected instruments evaluated on the new snapshot; every other template
   kept, its ``data_version`` moved on (a shallow copy of a seven-key dict).

Equality with a full rebuild at the same data version is what ``tests/test_index_incremental``
checks, over random loads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from app.screening.applied import AppliedPolicy
from app.screening.repository import SnapshotChanges
from app.screening.snapshot import Composition, InstrumentNode, IssuerNode, Snapshot
from app.screening.templates import Templates, render_templates


@dataclass
class Dependents:
    """Reverse maps of a snapshot, for finding what depends on what a load touched: built once
    after a full compilation (``of``), then carried from compilation to compilation.

    * ``funds_by_ref``: constituent reference -> the funds (and indices) whose compositions
      name it (any composition loaded: which applies depends on the day asked);
    * ``by_issuer``, ``by_underlying``: issuer -> its instruments, underlying ISIN -> the
      instruments written on it.

    Loads add to them (``add``, ``add_compositions``) and never take out: an instrument moved
    to another issuer stays listed under the old one too. A superset only costs a few needless
    re-evaluations (an unaffected instrument re-evaluated renders the same template) and never
    misses one, whichever compilation of the lineage the maps are used from.
    """

    funds_by_ref: dict[str, tuple[str, ...]]
    by_issuer: dict[str, set[str]]
    by_underlying: dict[str, set[str]]

    @classmethod
    def of(cls, snapshot: Snapshot) -> Dependents:
        grouped: dict[str, set[str]] = {}
        for fund, loads in snapshot.compositions.items():
            for load in loads:
                for constituent in load.constituents:
                    grouped.setdefault(constituent.ref, set()).add(fund)
        found = cls({k: tuple(sorted(v)) for k, v in grouped.items()}, {}, {})
        found.add(snapshot.instruments.values())
        return found

    def add_compositions(self, compositions: Mapping[str, Iterable[Composition]]) -> None:
        """Fund compositions loaded: each constituent reference to its funds (add-only)."""
        added: dict[str, set[str]] = {}
        for fund, loads in compositions.items():
            for load in loads:
                for constituent in load.constituents:
                    added.setdefault(constituent.ref, set()).add(fund)
        funds_by_ref = self.funds_by_ref
        for ref, funds in added.items():
            funds_by_ref[ref] = tuple(sorted(funds.union(funds_by_ref.get(ref, ()))))

    def add(self, instruments: Iterable[InstrumentNode]) -> None:
        by_issuer, by_underlying = self.by_issuer, self.by_underlying
        for instrument in instruments:
            isins = by_issuer.get(instrument.issuer_id)
            if isins is None:
                isins = by_issuer[instrument.issuer_id] = set()
            isins.add(instrument.isin)
            if instrument.underlying_isin:
                by_underlying.setdefault(instrument.underlying_isin, set()).add(instrument.isin)


@dataclass
class Patched:
    """The new snapshot and what changed from the previous one."""

    snapshot: Snapshot
    issuers: set[str] = field(default_factory=set)  # issuers whose own judgement may change
    countries: set[str] = field(default_factory=set)  # countries whose data changed
    sovereign_countries: set[str] = field(default_factory=set)  # sovereigns of these changed
    isins: set[str] = field(default_factory=set)  # instruments whose record changed
    funds: set[str] = field(default_factory=set)  # funds (indices) whose compositions changed
    refs: set[str] = field(default_factory=set)  # constituent references resolved anew
    old_parents: set[str] = field(default_factory=set)  # parents before the load


def _grouped_patch(
    grouped: Mapping[str, tuple[str, ...]],
    removals: Iterable[tuple[str, str]],
    additions: Iterable[tuple[str, str]],
) -> dict[str, tuple[str, ...]]:
    """A copy of a key -> sorted values map, with (key, value) pairs taken out and put in."""
    changed: dict[str, set[str]] = {}
    for key, value in removals:
        changed.setdefault(key, set(grouped.get(key, ()))).discard(value)
    for key, value in additions:
        changed.setdefault(key, set(grouped.get(key, ()))).add(value)
    result = dict(grouped)
    for key, values in changed.items():
        if values:
            result[key] = tuple(sorted(values))
        else:
            result.pop(key, None)
    return result


def patch(
    old: Snapshot, version: int, changes: SnapshotChanges, policy_keys: Iterable[str]
) -> Patched:
    """The snapshot at ``version``: ``old`` with ``changes`` applied (but for the constituent
    references, ``patch_refs``: they are resolved against the new issuers)."""
    new = replace(old, data_version=version)
    result = Patched(new)

    if changes.issuers:
        issuers = dict(old.issuers)
        parents_out: list[tuple[str, str]] = []
        parents_in: list[tuple[str, str]] = []
        sovereigns_out: list[tuple[str, str]] = []
        sovereigns_in: list[tuple[str, str]] = []
        for issuer_id, node in changes.issuers.items():
            before: IssuerNode | None = old.issuers.get(issuer_id)
            issuers[issuer_id] = node
            result.issuers.add(issuer_id)
            if before is not None:
                if before.parent_issuer_id:
                    parents_out.append((before.parent_issuer_id, issuer_id))
                    result.old_parents.add(before.parent_issuer_id)
                if before.kind == "sovereign":
                    sovereigns_out.append((before.country, issuer_id))
                    result.sovereign_countries.add(before.country)
            if node.parent_issuer_id:
                parents_in.append((node.parent_issuer_id, issuer_id))
            if node.kind == "sovereign":
                sovereigns_in.append((node.country, issuer_id))
                result.sovereign_countries.add(node.country)
        new.issuers = issuers
        new.subsidiaries = _grouped_patch(old.subsidiaries, parents_out, parents_in)
        new.sovereigns = _grouped_patch(old.sovereigns, sovereigns_out, sovereigns_in)

    if changes.instruments:
        instruments = dict(old.instruments)
        listed_out: list[tuple[str, str]] = []
        listed_in: list[tuple[str, str]] = []
        for isin, instrument in changes.instruments.items():
            before_node = old.instruments.get(isin)
            instruments[isin] = instrument
            result.isins.add(isin)
            if isin in old.sanctions_listings:  # whose listed ISIN it is follows the record
                if before_node is not None:
                    listed_out.append((before_node.issuer_id, isin))
                    result.issuers.add(before_node.issuer_id)
                listed_in.append((instrument.issuer_id, isin))
                result.issuers.add(instrument.issuer_id)
        new.instruments = instruments
        if listed_out or listed_in:
            new.listed_isins = _grouped_patch(old.listed_isins, listed_out, listed_in)

    if changes.fund_isins:
        compositions = dict(old.compositions)
        compositions.update(changes.compositions)
        new.compositions = compositions
        result.funds |= changes.fund_isins

    if changes.issuer_facts:
        new.issuer_facts = dict(old.issuer_facts)
        for issuer_id, points in changes.issuer_facts.items():
            new.add_issuer_facts(issuer_id, points)
    result.issuers |= changes.fact_issuers
    if changes.country_facts:
        new.country_facts = dict(old.country_facts)
        for country, points in changes.country_facts.items():
            new.add_country_facts(country, points)
    result.countries |= changes.fact_countries

    if changes.list_issuers:
        entries = dict(old.list_entries)
        keys = set(policy_keys)
        for issuer_id in changes.list_issuers:
            for key in keys:
                entries.pop((key, issuer_id), None)
        entries.update(changes.list_entries)
        new.list_entries = entries
        result.issuers |= changes.list_issuers

    return result


def patch_refs(patched: Patched, refs: Iterable[str], resolved: Mapping[str, str]) -> None:
    """``refs`` resolved anew in the patched snapshot (``resolved``: what they name now; a
    reference absent there names nothing). Replaces the snapshot's map, never mutates it."""
    new = patched.snapshot
    found = dict(new.issuer_refs)
    for ref in refs:
        found.pop(ref, None)
        patched.refs.add(ref)
        # As ``full_snapshot``: only what names no instrument, fund or issuer is resolved.
        if ref in new.instruments or ref in new.compositions or ref in new.issuers:
            continue
        issuer_id = resolved.get(ref)
        if issuer_id is not None:
            found[ref] = issuer_id
    new.issuer_refs = found


def affected(
    old: Snapshot, patched: Patched, dependents: Dependents, old_templates: Templates
) -> set[str]:
    """The ISINs of the new snapshot whose decision may differ from ``old_templates``'.
    ``dependents``: of the old snapshot (the new instruments are added to it)."""
    new = patched.snapshot
    # Issuers: the touched ones, up every chain of control, and to state-owned companies.
    state_owned: dict[str, list[str]] | None = None
    countries = set(patched.countries) | set(patched.sovereign_countries)
    issuers: set[str] = set()
    pending = [*patched.issuers, *patched.old_parents]
    by_country: dict[str, list[str]] | None = None
    if patched.countries:  # country facts: every issuer of the country reads them
        by_country = {}
        for node in new.issuers.values():
            by_country.setdefault(node.country, []).append(node.issuer_id)
        for country in patched.countries:
            pending += by_country.get(country, ())
    seen_countries: set[str] = set()
    while pending or countries - seen_countries:
        for country in sorted(countries - seen_countries):
            seen_countries.add(country)
            if state_owned is None:
                state_owned = {}
                for node in new.issuers.values():
                    if node.state_owner_country:
                        state_owned.setdefault(node.state_owner_country, []).append(node.issuer_id)
            pending += state_owned.get(country, ())
            pending.append(f"country:{country}")
        while pending:
            issuer_id = pending.pop()
            if issuer_id in issuers:
                continue
            issuers.add(issuer_id)
            for snapshot in (new, old):
                issuer = snapshot.issuers.get(issuer_id)
                if issuer is not None:
                    if issuer.parent_issuer_id:
                        pending.append(issuer.parent_issuer_id)
                    if issuer.kind == "sovereign":
                        countries.add(issuer.country)
                for link in snapshot.consolidated_by.get(issuer_id, ()):
                    pending.append(link.parent_id)
            if issuer_id.startswith("country:"):
                countries.add(issuer_id.removeprefix("country:"))

    # Instruments: of the affected issuers, then derivatives and funds over them.
    dependents.add(new.instruments[isin] for isin in patched.isins)
    by_issuer, by_underlying = dependents.by_issuer, dependents.by_underlying
    funds_by_ref = dependents.funds_by_ref
    names_issuer: dict[str, list[str]] = {}
    for ref, issuer_id in (*old.issuer_refs.items(), *new.issuer_refs.items()):
        if issuer_id in issuers:
            names_issuer.setdefault(issuer_id, []).append(ref)
    isins: set[str] = set()
    queue: list[str] = [*patched.isins, *patched.funds, *patched.refs]
    for issuer_id in issuers:
        queue += by_issuer.get(issuer_id, ())
        queue += funds_by_ref.get(issuer_id, ())  # held by issuer reference
        for ref in names_issuer.get(issuer_id, ()):
            queue += funds_by_ref.get(ref, ())
    for ref in patched.refs:
        queue += funds_by_ref.get(ref, ())
    while queue:
        isin = queue.pop()
        if isin in isins:
            continue
        isins.add(isin)
        queue += by_underlying.get(isin, ())
        queue += funds_by_ref.get(isin, ())
    isins |= old_templates.versioned  # decisions whose text names the data version
    return {i for i in isins if i in new.instruments}


def recompile(
    applied: AppliedPolicy,
    snapshot: Snapshot,
    old_templates: Templates,
    isins: Iterable[str],
    at: dt.datetime,
) -> Templates:
    """The templates of every instrument of ``snapshot``: ``isins`` evaluated anew, the rest
    ``old_templates``' (stamped with the new data version when read), as a full compile
    would render them."""
    fresh = render_templates(applied, snapshot, sorted(isins), at)
    return old_templates.updated(snapshot.data_version, fresh)
