"""Building a ``Snapshot`` from the database at a data version.

For a check, only the neighbourhood of the instruments asked about is read: the instruments
and their underlyings, their issuers, every issuer controlled by those (for the group rule),
the sovereigns of state owners, and the facts, country facts, embargoes and list entries of
all of them. A handful of queries per check, whatever the size of the universe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import operator
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select, String, func, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.records import Relationship
from app.datasets.repository import (
    SANCTIONS_LIST_KINDS,
    arms_embargo_loads,
    data_version,
    list_entries_in_force,
    sanctions_list_loads,
)
from app.datasets.schemas import RESOLUTION_KIND
from app.kit.bulk import fetch_plain
from app.kit.identifiers import is_valid_isin
from app.kit.sql import one_of
from app.models import (
    ArmsEmbargo,
    ConsolidationRecord,
    Dataset,
    Fact,
    FundComposition,
    FundHolding,
    InstrumentRecord,
    IssuerRecord,
    ListEntry,
    ListReplacement,
    SanctionsListEntry,
)
from app.screening.snapshot import (
    Composition,
    Constituent,
    Embargo,
    FactPoint,
    InstrumentNode,
    IssuerNode,
    ListEntryPoint,
    SanctionsListing,
    Snapshot,
    resolve_consolidation,
)

RecordT = TypeVar("RecordT", IssuerRecord, InstrumentRecord)


@dataclass
class SnapshotChanges:
    """What some datasets changed in a whole-universe snapshot (``ScreeningRepository.changes``):
    the ids they touched, and the current data of those ids after them."""

    blocked: str | None = None  # why the change cannot be applied incrementally
    issuer_ids: set[str] = field(default_factory=set)  # issuer records loaded
    isins: set[str] = field(default_factory=set)  # instrument records loaded
    fact_issuers: set[str] = field(default_factory=set)
    fact_countries: set[str] = field(default_factory=set)  # country facts loaded
    list_issuers: set[str] = field(default_factory=set)  # list entries of the policies loaded
    issuers: dict[str, IssuerNode] = field(default_factory=dict)  # current, of issuer_ids
    instruments: dict[str, InstrumentNode] = field(default_factory=dict)  # current, of isins
    issuer_facts: dict[str, list[FactPoint]] = field(default_factory=dict)  # all, of fact_issuers
    country_facts: dict[str, list[FactPoint]] = field(default_factory=dict)
    # (policy key, issuer_id) -> the entries in force, of list_issuers (none: key absent)
    list_entries: dict[tuple[str, str], tuple[ListEntryPoint, ...]] = field(default_factory=dict)
    fund_isins: set[str] = field(default_factory=set)  # fund (index) compositions loaded
    # fund ISIN -> every composition of it (of fund_isins), oldest first
    compositions: dict[str, tuple[Composition, ...]] = field(default_factory=dict)
    # What may name a touched issuer or instrument as a constituent reference, before or after
    # the load: issuer ids, LEIs, MSCI and Sustainalytics ids, ISINs.
    names: set[str] = field(default_factory=set)


# Guards against a malformed ownership graph (a cycle loaded by mistake).
MAX_DEPTH = 32


def _issuer_node(record: IssuerRecord) -> IssuerNode:
    return IssuerNode(*(getattr(record, column.key) for column in _ISSUER_COLUMNS))


# The columns of a FactPoint, in its field order.
_FACT_COLUMNS = (
    Fact.metric,
    Fact.provider,
    Fact.value,
    Fact.as_of,
    Fact.dataset_id,
    Fact.source_row,
    Fact.source_field,
)


# An IssuerNode's and an InstrumentNode's fields, in order.
_ISSUER_COLUMNS = (
    IssuerRecord.issuer_id,
    IssuerRecord.name,
    IssuerRecord.kind,
    IssuerRecord.country,
    IssuerRecord.parent_issuer_id,
    IssuerRecord.parent_control_pct,
    IssuerRecord.state_owner_country,
    IssuerRecord.state_owner_pct,
    IssuerRecord.dataset_id,
    IssuerRecord.source_row,
)
_INSTRUMENT_COLUMNS = (
    InstrumentRecord.isin,
    InstrumentRecord.issuer_id,
    InstrumentRecord.asset_class,
    InstrumentRecord.underlying_isin,
    InstrumentRecord.name,
)


def _current(
    model: type[RecordT], key: Any, columns: Sequence[Any], version: int
) -> Select[*tuple[Any, ...]]:
    """The latest record of every key as of ``version`` (a later load supersedes)."""
    newest = (
        select(key.label("k"), func.max(model.dataset_id).label("dataset_id"))
        .where(model.dataset_id <= version)
        .group_by(key)
        .subquery()
    )
    return select(*columns).join(
        newest, (key == newest.c.k) & (model.dataset_id == newest.c.dataset_id)
    )


# A Relationship's fields, in order.
_RELATIONSHIP_COLUMNS = (
    ConsolidationRecord.start_lei,
    ConsolidationRecord.end_lei,
    ConsolidationRecord.relationship_type,
    ConsolidationRecord.relationship_status,
    ConsolidationRecord.registration_status,
    ConsolidationRecord.period_end,
    ConsolidationRecord.valid_to,
    ConsolidationRecord.as_of,
    ConsolidationRecord.dataset_id,
    ConsolidationRecord.source_row,
)


def consolidation_in_force(
    version: int, start_leis: Sequence[str] | None = None
) -> Select[*tuple[Any, ...]]:
    """The current relationship records at data ``version`` (optionally of the children
    ``start_leis``), in ``_RELATIONSHIP_COLUMNS``: per (child, type), every record of the
    newest-dated load naming it (ties: the later load), whatever their status
    (``app.datasets.adapters.gleif_relationships``: a load is complete per child and type)."""
    cr = ConsolidationRecord
    rank = (
        func.rank()
        .over(
            partition_by=(cr.start_lei, cr.relationship_type),
            order_by=(cr.as_of.desc(), cr.dataset_id.desc()),
        )
        .label("rank")
    )
    ranked = select(*_RELATIONSHIP_COLUMNS, rank).where(cr.dataset_id <= version)
    if start_leis is not None:
        ranked = ranked.where(one_of(cr.start_lei, sorted(set(start_leis))))
    current = ranked.subquery("ranked")
    return select(*(current.c[c.key] for c in _RELATIONSHIP_COLUMNS)).where(current.c.rank == 1)


def _assemble(
    snapshot: Snapshot,
    instrument_rows: Sequence[Sequence[Any]],
    issuer_rows: Sequence[Sequence[Any]],
    fact_rows: Sequence[Sequence[Any]],
) -> None:
    """Fill a whole-universe snapshot from plain rows (in ``_INSTRUMENT_COLUMNS``,
    ``_ISSUER_COLUMNS`` and issuer_id, country + ``_FACT_COLUMNS`` order)."""
    for row in instrument_rows:
        snapshot.instruments[row[0]] = InstrumentNode(*row)
    for row in issuer_rows:
        snapshot.issuers[row[0]] = IssuerNode(*row)
    nodes = snapshot.issuers.values()
    snapshot.subsidiaries = dict(
        Snapshot.group((n.parent_issuer_id, n.issuer_id) for n in nodes if n.parent_issuer_id)
    )
    snapshot.sovereigns = dict(
        Snapshot.group((n.country, n.issuer_id) for n in nodes if n.kind == "sovereign")
    )
    by_issuer: dict[str, list[FactPoint]] = {}
    by_country: dict[str, list[FactPoint]] = {}
    make = FactPoint._make
    # The driver decodes each row's values afresh, but a universe's facts hold a few dozen
    # metric names, providers, dates, source fields and dataset ids, and few distinct values,
    # each repeated hundreds of thousands of times: one object per distinct one instead (the
    # snapshot's memory per 100,000 instruments 245 -> 134 MB, bench/index_compile.py --memory).
    metrics: dict[Any, Any] = {}
    providers: dict[Any, Any] = {}
    values: dict[Any, Any] = {}
    dates: dict[Any, Any] = {}
    fields: dict[Any, Any] = {}
    loads: dict[Any, Any] = {}
    metric, provider, value, as_of, field, dataset = (
        metrics.setdefault,
        providers.setdefault,
        values.setdefault,
        dates.setdefault,
        fields.setdefault,
        loads.setdefault,
    )
    for fact in fact_rows:
        issuer_id, country = fact[0], fact[1]
        point = make(
            (
                metric(fact[2], fact[2]),
                provider(fact[3], fact[3]),
                value(fact[4], fact[4]),
                as_of(fact[5], fact[5]),
                dataset(fact[6], fact[6]),
                fact[7],
                field(fact[8], fact[8]),
            )
        )
        if issuer_id is not None:
            by_issuer.setdefault(issuer_id, []).append(point)
        elif country is not None:
            by_country.setdefault(country, []).append(point)
    for issuer_id, points in by_issuer.items():
        snapshot.add_issuer_facts(issuer_id, points)
    for country, points in by_country.items():
        snapshot.add_country_facts(country, points)


_COMPOSITION_COLUMNS = (
    FundComposition.fund_isin,
    FundComposition.as_of,
    FundComposition.dataset_id,
    FundComposition.weight_pct,
)
_CONSTITUENT_COLUMNS = (
    FundHolding.fund_isin,
    FundHolding.dataset_id,
    FundHolding.holding_ref,
    # As stored (exact decimal text): the engine parses the few weights that count.
    type_coerce(FundHolding.weight_pct, String()),
    FundHolding.source_row,
)
# Grouped by the database (another process): Python only walks the runs.
_CONSTITUENT_ORDER = (FundHolding.fund_isin, FundHolding.dataset_id, FundHolding.source_row)


def _assemble_compositions(
    heads: Sequence[Sequence[Any]], rows: Sequence[Sequence[Any]]
) -> dict[str, tuple[Composition, ...]]:
    """Compositions from plain rows (``_COMPOSITION_COLUMNS``; ``_CONSTITUENT_COLUMNS`` in
    ``_CONSTITUENT_ORDER``): per fund, oldest first; constituents in file order."""
    make = Constituent._make
    by_load = {
        key: tuple(make(row[2:]) for row in run)
        for key, run in itertools.groupby(rows, key=operator.itemgetter(0, 1))
    }
    grouped: dict[str, list[Composition]] = {}
    for fund, as_of, dataset_id, weight in heads:
        members = by_load.get((fund, dataset_id), ())
        grouped.setdefault(fund, []).append(Composition(fund, as_of, dataset_id, members, weight))
    return {
        fund: tuple(sorted(loads, key=lambda c: (c.as_of, c.dataset_id)))
        for fund, loads in grouped.items()
    }


# The dataset kinds whose loads ``ScreeningRepository.changes`` bounds (what they touched, read
# by dataset id); every other kind makes the index rebuild in full. gleif-relationships is here
# because its records are looked for, and block, on their own.
INCREMENTAL_KINDS = frozenset(
    {
        "issuers",
        "instruments",
        "facts",
        "msci-esg",
        "freedom-house",
        "ti-cpi",
        "ituc",
        "list-entries",
        "portfolios",
        "holdings",
        "gleif-relationships",
        "fund-holdings",
        "published-exclusions",
        RESOLUTION_KIND,
    }
)


class ScreeningRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def data_version(self, at: dt.datetime | None = None) -> int:
        return await data_version(self.session, at)

    async def _latest(
        self, model: type[RecordT], key: str, ids: Iterable[str], version: int
    ) -> list[RecordT]:
        """The newest record (at ``version``) of each of ``ids``."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        column = getattr(model, key)
        newest = (
            select(column.label("k"), func.max(model.dataset_id).label("dataset_id"))
            .where(one_of(column, wanted), model.dataset_id <= version)
            .group_by(column)
            .subquery()
        )
        query = select(model).join(
            newest, (column == newest.c.k) & (model.dataset_id == newest.c.dataset_id)
        )
        return list((await self.session.execute(query)).scalars())

    async def _newest_rows(
        self, key: Any, columns: Sequence[Any], ids: Iterable[str], version: int
    ) -> Sequence[Any]:
        """``columns`` of the newest record (at ``version``) of each of ``ids``: plain rows, no
        ORM objects (a 10,000-holding portfolio's neighbourhood is 20,000 records)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        model = key.class_
        newest = (
            select(key.label("k"), func.max(model.dataset_id).label("dataset_id"))
            .where(one_of(key, wanted), model.dataset_id <= version)
            .group_by(key)
            .subquery()
        )
        query = select(*columns).join(
            newest, (key == newest.c.k) & (model.dataset_id == newest.c.dataset_id)
        )
        return (await self.session.execute(query)).all()

    async def instruments_by(
        self, scheme: str, values: Iterable[str], version: int
    ) -> dict[str, list[str]]:
        """The current instruments (newest record at ``version``) whose ``scheme`` identifier
        (ISIN, CUSIP, SEDOL or FIGI) is each of ``values``: value -> their ISINs, sorted (none
        when no current instrument has it; two or more: the identifier is ambiguous).

        An ISIN whose older record had the identifier but whose current one has another (or
        none) does not match: the instrument data at ``version`` says what it is.
        """
        wanted = sorted(set(values))
        if not wanted:
            return {}
        if scheme == "ISIN":
            current = await self._latest(InstrumentRecord, "isin", wanted, version)
            return {v: sorted({r.isin for r in current if r.isin == v}) for v in wanted}
        column = {
            "CUSIP": InstrumentRecord.cusip,
            "SEDOL": InstrumentRecord.sedol,
            "FIGI": InstrumentRecord.figi,
        }[scheme]
        candidates = (
            (
                await self.session.execute(
                    select(InstrumentRecord.isin)
                    .where(one_of(column, wanted), InstrumentRecord.dataset_id <= version)
                    .distinct()
                )
            )
            .scalars()
            .all()
        )
        found: dict[str, set[str]] = {v: set() for v in wanted}
        for record in await self._latest(InstrumentRecord, "isin", candidates, version):
            value = getattr(record, scheme.lower())
            if value in found:
                found[value].add(record.isin)
        return {v: sorted(isins) for v, isins in found.items()}

    async def issuers_by(self, ref: str, lei: str | None, version: int) -> list[str]:
        """The current issuers (newest record at ``version``) that ``ref`` names: by issuer id,
        and, when ``lei`` is given (``ref`` as a valid LEI), by LEI. Sorted; two or more: the
        reference is ambiguous."""
        named = {r.issuer_id for r in await self._latest(IssuerRecord, "issuer_id", [ref], version)}
        if lei is not None:
            candidates = (
                (
                    await self.session.execute(
                        select(IssuerRecord.issuer_id)
                        .where(IssuerRecord.lei == lei, IssuerRecord.dataset_id <= version)
                        .distinct()
                    )
                )
                .scalars()
                .all()
            )
            for record in await self._latest(IssuerRecord, "issuer_id", candidates, version):
                if record.lei == lei:
                    named.add(record.issuer_id)
        return sorted(named)

    async def snapshot(
        self,
        isins: Sequence[str],
        version: int,
        policy_keys: Sequence[str],
        group_rule: bool,
        *,
        sponsor_groups: bool = False,
        metrics: Collection[str] | None = None,
    ) -> Snapshot:
        """The neighbourhood of ``isins`` at data ``version`` (see the module docstring).

        ``sponsor_groups``: also every issuer of the groups of the policies' sponsors (their
        parents up to the ultimate parent, and everything under it), for position limits.
        ``metrics``: read only the facts of these (``AppliedPolicy.metrics``: the engine reads
        no other); None: every fact.
        """
        snapshot = Snapshot(data_version=version)
        pending = set(isins)
        issuer_refs: set[str] = set()
        asked: set[str] = set()
        for _ in range(MAX_DEPTH):
            pending -= asked
            if not pending:
                break
            asked |= pending
            rows = await self._newest_rows(
                InstrumentRecord.isin, _INSTRUMENT_COLUMNS, pending, version
            )
            # Fund look-through: the compositions of what is asked (a fund, an index), whose
            # constituents join the neighbourhood (ISINs as instruments, else issuer refs).
            found = await self._compositions(pending, version)
            snapshot.compositions.update(found)
            refs = {c.ref for loads in found.values() for load in loads for c in load.constituents}
            pending = set()
            for ref in refs:
                if is_valid_isin(ref):
                    if ref not in snapshot.instruments and ref not in snapshot.compositions:
                        pending.add(ref)
                else:
                    issuer_refs.add(ref)
            for row in rows:
                node = snapshot.instruments[row[0]] = InstrumentNode(*row)
                if node.underlying_isin and node.underlying_isin not in snapshot.instruments:
                    pending.add(node.underlying_isin)

        await self._add_issuers(
            snapshot, {i.issuer_id for i in snapshot.instruments.values()}, version
        )
        await self._resolve_issuer_refs(snapshot, issuer_refs, version)
        if sponsor_groups:
            await self._add_sponsors(snapshot, version, policy_keys)
        if group_rule or sponsor_groups:
            await self._add_groups(snapshot, version)
        await self._add_state_owners(snapshot, version)
        await self._add_facts(snapshot, version, metrics)
        await self._add_embargoes(snapshot, version)
        await self._add_sanctions_lists(snapshot, version)
        await self._add_list_entries(snapshot, version, policy_keys)
        return snapshot

    async def full_snapshot(self, version: int, policy_keys: Sequence[str]) -> Snapshot:
        """Everything known at ``version``: every current issuer and instrument and their data.

        For verdicts over the whole universe (impact previews, the compiled index, lists). Read
        as plain rows (``fetch_plain``), never ORM objects: a universe is a million rows.
        """
        snapshot = Snapshot(data_version=version)
        conn = await self.session.connection()
        instruments = _current(
            InstrumentRecord, InstrumentRecord.isin, _INSTRUMENT_COLUMNS, version
        )
        issuers = _current(IssuerRecord, IssuerRecord.issuer_id, _ISSUER_COLUMNS, version)
        facts = select(Fact.issuer_id, Fact.country, *_FACT_COLUMNS).where(
            Fact.dataset_id <= version
        )
        rows = (
            await fetch_plain(conn, instruments),
            await fetch_plain(conn, issuers),
            await fetch_plain(conn, facts),
        )
        # A million rows into objects: seconds of pure Python, off the event loop.
        await asyncio.to_thread(_assemble, snapshot, *rows)
        del rows
        compositions = select(*_COMPOSITION_COLUMNS).where(FundComposition.dataset_id <= version)
        constituents = (
            select(*_CONSTITUENT_COLUMNS)
            .where(FundHolding.dataset_id <= version)
            .order_by(*_CONSTITUENT_ORDER)
        )
        snapshot.compositions = await asyncio.to_thread(
            _assemble_compositions,
            await fetch_plain(conn, compositions),
            await fetch_plain(conn, constituents),
        )
        refs = {
            c.ref
            for loads in snapshot.compositions.values()
            for load in loads
            for c in load.constituents
        }
        await self._resolve_issuer_refs(
            snapshot,
            refs.difference(snapshot.instruments, snapshot.compositions, snapshot.issuers),
            version,
        )
        await self._add_embargoes(snapshot, version, everywhere=True)
        await self._add_sanctions_lists(snapshot, version, everywhere=True)
        await self._add_list_entries(snapshot, version, policy_keys, everywhere=True)
        await self._set_consolidation(snapshot, version, everywhere=True)
        return snapshot

    async def _compositions(
        self, isins: Iterable[str], version: int
    ) -> dict[str, tuple[Composition, ...]]:
        """Every composition loaded (at ``version``) for each of ``isins`` that has one."""
        wanted = sorted(set(isins))
        if not wanted:
            return {}
        conn = await self.session.connection()
        heads = await fetch_plain(
            conn,
            select(*_COMPOSITION_COLUMNS).where(
                one_of(FundComposition.fund_isin, wanted), FundComposition.dataset_id <= version
            ),
        )
        if not heads:
            return {}
        rows = await fetch_plain(
            conn,
            select(*_CONSTITUENT_COLUMNS)
            .where(
                one_of(FundHolding.fund_isin, sorted({h[0] for h in heads})),
                one_of(FundHolding.dataset_id, sorted({h[2] for h in heads})),
            )
            .order_by(*_CONSTITUENT_ORDER),
        )
        return _assemble_compositions(heads, rows)

    async def _resolve_issuer_refs(self, snapshot: Snapshot, refs: set[str], version: int) -> None:
        """The issuers constituents' references name (issuer id, LEI, MSCI ISSUERID,
        Sustainalytics EntityId, by current records), into the snapshot and ``issuer_refs``.
        By precedence in that order; a reference naming two issuers at one level is left
        unresolved (its constituent is not known: uncovered)."""
        wanted = sorted(refs)
        if not wanted:
            return
        columns = (
            IssuerRecord.issuer_id,
            IssuerRecord.lei,
            IssuerRecord.msci_issuer_id,
            IssuerRecord.sustainalytics_entity_id,
        )
        candidates = (
            (
                await self.session.execute(
                    select(IssuerRecord.issuer_id)
                    .where(
                        or_(*(one_of(c, wanted) for c in columns)),
                        IssuerRecord.dataset_id <= version,
                    )
                    .distinct()
                )
            )
            .scalars()
            .all()
        )
        records = await self._latest(IssuerRecord, "issuer_id", candidates, version)
        for record in records:
            if record.issuer_id not in snapshot.issuers:
                snapshot.issuers[record.issuer_id] = _issuer_node(record)
        names: dict[str, list[set[str]]] = {}
        for record in records:
            for level, value in enumerate(
                (
                    record.issuer_id,
                    record.lei,
                    record.msci_issuer_id,
                    record.sustainalytics_entity_id,
                )
            ):
                if value in refs:
                    levels = names.setdefault(value, [set(), set(), set(), set()])
                    levels[level].add(record.issuer_id)
        for ref, levels in names.items():
            first = next((found for found in levels if found), set())
            if len(first) == 1:
                snapshot.issuer_refs[ref] = next(iter(first))

    async def _add_issuers(self, snapshot: Snapshot, ids: set[str], version: int) -> None:
        missing = {i for i in ids if i not in snapshot.issuers}
        for row in await self._newest_rows(
            IssuerRecord.issuer_id, _ISSUER_COLUMNS, missing, version
        ):
            snapshot.issuers[row[0]] = IssuerNode(*row)

    async def _add_sponsors(
        self, snapshot: Snapshot, version: int, policy_keys: Sequence[str]
    ) -> None:
        """The issuers the policies' ``sponsor`` lists name, and their parents to the top."""
        entries = list_entries_in_force(version, policy_keys).subquery()
        sponsors = (
            (
                await self.session.execute(
                    select(entries.c.issuer_id).where(entries.c.list == "sponsor")
                )
            )
            .scalars()
            .all()
        )
        pending, seen = set(sponsors), set[str]()
        for _ in range(MAX_DEPTH):
            if not pending:
                break
            await self._add_issuers(snapshot, pending, version)
            seen |= pending
            pending = {
                parent
                for issuer_id in pending
                if (node := snapshot.issuers.get(issuer_id)) is not None
                and (parent := node.parent_issuer_id) is not None
                and parent not in seen
            }

    async def _add_subsidiaries(self, snapshot: Snapshot, version: int) -> None:
        """Every issuer below those loaded, whose current record names a loaded parent."""
        frontier = set(snapshot.issuers)
        children: dict[str, set[str]] = {}
        for _ in range(MAX_DEPTH):
            if not frontier:
                break
            candidates = (
                (
                    await self.session.execute(
                        select(IssuerRecord.issuer_id)
                        .where(
                            one_of(IssuerRecord.parent_issuer_id, sorted(frontier)),
                            IssuerRecord.dataset_id <= version,
                        )
                        .distinct()
                    )
                )
                .scalars()
                .all()
            )
            before = set(snapshot.issuers)
            await self._add_issuers(snapshot, set(candidates), version)
            frontier = set()
            for issuer_id in candidates:
                node = snapshot.issuers.get(issuer_id)
                if node is not None and node.parent_issuer_id is not None:
                    children.setdefault(node.parent_issuer_id, set()).add(issuer_id)
                    if issuer_id not in before:
                        frontier.add(issuer_id)
        snapshot.subsidiaries = {k: tuple(sorted(v)) for k, v in children.items()}

    async def _add_groups(self, snapshot: Snapshot, version: int) -> None:
        """Every issuer below those loaded, by control percentages (``_add_subsidiaries``)
        and by consolidation (``_add_consolidated``), each side's finds searched by the other
        until nothing new is found."""
        await self._add_subsidiaries(snapshot, version)
        for _ in range(MAX_DEPTH):
            before = len(snapshot.issuers)
            await self._add_consolidated(snapshot, version)
            if len(snapshot.issuers) == before:
                break
            await self._add_subsidiaries(snapshot, version)

    async def _leis(self, issuer_ids: Iterable[str] | None, version: int) -> dict[str, str]:
        """issuer_id -> the LEI its current record carries (those that carry one), of
        ``issuer_ids`` (None: of every issuer)."""
        query = _current(
            IssuerRecord,
            IssuerRecord.issuer_id,
            (IssuerRecord.issuer_id, IssuerRecord.lei),
            version,
        ).where(IssuerRecord.lei.is_not(None))
        if issuer_ids is not None:
            wanted = sorted(set(issuer_ids))
            if not wanted:
                return {}
            query = query.where(one_of(IssuerRecord.issuer_id, wanted))
        rows = (await self.session.execute(query)).all()
        return {issuer_id: lei for issuer_id, lei in rows if lei is not None}

    async def _issuers_by_lei(self, leis: Iterable[str], version: int) -> dict[str, list[str]]:
        """LEI -> the issuers whose current record carries it."""
        wanted = sorted(set(leis))
        if not wanted:
            return {}
        candidates = select(IssuerRecord.issuer_id).where(
            one_of(IssuerRecord.lei, wanted), IssuerRecord.dataset_id <= version
        )
        query = _current(
            IssuerRecord,
            IssuerRecord.issuer_id,
            (IssuerRecord.issuer_id, IssuerRecord.lei),
            version,
        ).where(IssuerRecord.issuer_id.in_(candidates), one_of(IssuerRecord.lei, wanted))
        found: dict[str, list[str]] = {}
        for issuer_id, lei in (await self.session.execute(query)).all():
            found.setdefault(lei, []).append(issuer_id)
        return found

    async def _any_consolidation(self, version: int) -> bool:
        """Whether any relationship record is known at ``version`` (none: nothing to read)."""
        query = (
            select(ConsolidationRecord.dataset_id)
            .where(ConsolidationRecord.dataset_id <= version)
            .limit(1)
        )
        return (await self.session.execute(query)).first() is not None

    async def _add_consolidated(self, snapshot: Snapshot, version: int) -> None:
        """Every issuer consolidated, directly or through LEIs no issuer carries, by an issuer
        loaded: the relationship records are followed down from the issuers' LEIs, LEI by LEI;
        then the snapshot's consolidation links are resolved (``_set_consolidation``)."""
        if not await self._any_consolidation(version):
            return
        leis = await self._leis(snapshot.issuers, version)
        frontier = set(leis.values())
        seen = set(frontier)
        found: set[str] = set()
        for _ in range(MAX_DEPTH):
            if not frontier:
                break
            children = (
                (
                    await self.session.execute(
                        select(ConsolidationRecord.start_lei)
                        .where(
                            one_of(ConsolidationRecord.end_lei, sorted(frontier)),
                            ConsolidationRecord.dataset_id <= version,
                        )
                        .distinct()
                    )
                )
                .scalars()
                .all()
            )
            frontier = set(children) - seen
            seen |= frontier
            found |= frontier
        by_lei = await self._issuers_by_lei(found, version)
        await self._add_issuers(snapshot, {i for ids in by_lei.values() for i in ids}, version)
        await self._set_consolidation(snapshot, version)

    async def _set_consolidation(
        self, snapshot: Snapshot, version: int, *, everywhere: bool = False
    ) -> None:
        """The consolidation links among the snapshot's issuers (``resolve_consolidation``):
        the current records of their LEIs and of every LEI above them, followed up."""
        if not await self._any_consolidation(version):
            return
        leis = await self._leis(None if everywhere else snapshot.issuers, version)
        if not leis:
            return
        by_lei: dict[str, list[str]] = {}
        for issuer_id, lei in leis.items():
            by_lei.setdefault(lei, []).append(issuer_id)
        records: list[Relationship] = []
        if everywhere:
            rows = await self.session.execute(consolidation_in_force(version))
            records = [Relationship(*row) for row in rows.all()]
        else:
            pending, seen = set(by_lei), set[str]()
            for _ in range(MAX_DEPTH):
                if not pending:
                    break
                seen |= pending
                rows = await self.session.execute(consolidation_in_force(version, sorted(pending)))
                batch = [Relationship(*row) for row in rows.all()]
                records += batch
                pending = {r.end_lei for r in batch if r.not_control() is None} - seen
        snapshot.set_consolidation(resolve_consolidation(records, by_lei))

    async def _add_state_owners(self, snapshot: Snapshot, version: int) -> None:
        countries = {
            n.state_owner_country for n in snapshot.issuers.values() if n.state_owner_country
        }
        if not countries:
            return
        candidates = (
            (
                await self.session.execute(
                    select(IssuerRecord.issuer_id)
                    .where(
                        one_of(IssuerRecord.country, sorted(countries)),
                        IssuerRecord.kind == "sovereign",
                        IssuerRecord.dataset_id <= version,
                    )
                    .distinct()
                )
            )
            .scalars()
            .all()
        )
        await self._add_issuers(snapshot, set(candidates), version)
        snapshot.sovereigns = dict(
            Snapshot.group(
                (n.country, n.issuer_id)
                for n in snapshot.issuers.values()
                if n.kind == "sovereign" and n.issuer_id in set(candidates)
            )
        )

    async def _add_facts(
        self, snapshot: Snapshot, version: int, metrics: Collection[str] | None = None
    ) -> None:
        if metrics is not None and not metrics:
            return  # the policy reads no metric (e.g. one of position limits only)
        issuer_ids = sorted(snapshot.issuers)
        countries = sorted(
            {n.country for n in snapshot.issuers.values()}
            | {n.state_owner_country for n in snapshot.issuers.values() if n.state_owner_country}
        )
        by_issuer: dict[str, list[FactPoint]] = {}
        by_country: dict[str, list[FactPoint]] = {}
        for column, keys, target in (
            (Fact.issuer_id, issuer_ids, by_issuer),
            (Fact.country, countries, by_country),
        ):
            if not keys:
                continue
            # Plain rows, not ORM objects: a batch check reads tens of thousands of facts.
            rows = await self.session.execute(
                select(column, *_FACT_COLUMNS).where(
                    one_of(column, keys),
                    Fact.dataset_id <= version,
                    *([] if metrics is None else [one_of(Fact.metric, sorted(metrics))]),
                )
            )
            for key, metric, provider, value, as_of, dataset_id, row, named in rows:
                target.setdefault(key or "", []).append(
                    FactPoint(metric, provider, value, as_of, dataset_id, row, named)
                )
        for issuer_id, points in by_issuer.items():
            snapshot.add_issuer_facts(issuer_id, points)
        for country, points in by_country.items():
            snapshot.add_country_facts(country, points)

    async def _add_embargoes(
        self, snapshot: Snapshot, version: int, *, everywhere: bool = False
    ) -> None:
        loads = await arms_embargo_loads(self.session, version)
        snapshot.embargo_loads = tuple(loads)
        countries = sorted(
            {n.country for n in snapshot.issuers.values()}
            | {n.state_owner_country for n in snapshot.issuers.values() if n.state_owner_country}
        )
        if not loads or not (countries or everywhere):
            return
        query = select(ArmsEmbargo).where(ArmsEmbargo.dataset_id <= version)
        if not everywhere:
            query = query.where(one_of(ArmsEmbargo.country, countries))
        rows = await self.session.execute(query)
        grouped: dict[str, list[Embargo]] = {}
        for row in rows.scalars():
            grouped.setdefault(row.country, []).append(
                Embargo(
                    country=row.country,
                    authority=row.authority,
                    regime=row.regime,
                    since=row.since,
                    until=row.until,
                    dataset_id=row.dataset_id,
                    source_row=row.source_row,
                )
            )
        snapshot.embargoes = {k: tuple(v) for k, v in grouped.items()}

    async def _add_sanctions_lists(
        self, snapshot: Snapshot, version: int, *, everywhere: bool = False
    ) -> None:
        """Published sanctions lists (``ofac-ns-cmic``): every load, and the listings whose ISIN
        (exact text) an instrument of the snapshot's issuers carries; everywhere: every listing,
        linked through the instruments held (the whole universe).

        Matched here, at read time, not when the list was loaded: an instrument loaded after
        the list still matches, and an instrument moved to another issuer follows its current
        record.
        """
        loads = await sanctions_list_loads(self.session, version)
        snapshot.sanctions_loads = tuple(loads)
        if not loads or not (snapshot.issuers or everywhere):
            return
        query = select(SanctionsListEntry).where(
            SanctionsListEntry.dataset_id <= version, SanctionsListEntry.isin.is_not(None)
        )
        if not everywhere:
            isins = select(InstrumentRecord.isin).where(
                one_of(InstrumentRecord.issuer_id, sorted(snapshot.issuers)),
                InstrumentRecord.dataset_id <= version,
            )
            query = query.where(SanctionsListEntry.isin.in_(isins))
        grouped: dict[str, list[SanctionsListing]] = {}
        for row in (await self.session.execute(query)).scalars():
            assert row.isin is not None
            grouped.setdefault(row.isin, []).append(
                SanctionsListing(
                    isin=row.isin,
                    entity_ref=row.entity_ref,
                    name=row.name,
                    listing_date=row.listing_date,
                    effective_date=row.effective_date,
                    dataset_id=row.dataset_id,
                    source_row=row.source_row,
                )
            )
        snapshot.sanctions_listings = {k: tuple(v) for k, v in grouped.items()}
        if everywhere:
            snapshot.link_listings()
            return
        # The current record of each listed instrument decides whose it is now.
        linked: dict[str, list[str]] = {}
        for record in await self._latest(InstrumentRecord, "isin", grouped, version):
            if record.issuer_id in snapshot.issuers:
                linked.setdefault(record.issuer_id, []).append(record.isin)
        snapshot.listed_isins = {k: tuple(sorted(v)) for k, v in linked.items()}

    async def _add_list_entries(
        self,
        snapshot: Snapshot,
        version: int,
        policy_keys: Sequence[str],
        *,
        everywhere: bool = False,
    ) -> None:
        """Per policy, the entries in force at ``version`` (``list_entries_in_force``)."""
        if not policy_keys or not snapshot.issuers:
            return
        query = list_entries_in_force(
            version, policy_keys, None if everywhere else sorted(snapshot.issuers)
        )
        rows = await self.session.execute(query)
        grouped: dict[tuple[str, str], list[ListEntryPoint]] = {}
        for row in rows:
            fields = dict(row._mapping)
            fields["rule_ids"] = tuple((fields["rule_ids"] or "").split())
            point = ListEntryPoint(**fields)
            grouped.setdefault((point.policy_key, point.issuer_id), []).append(point)
        snapshot.list_entries = {k: tuple(v) for k, v in grouped.items()}

    # ------------------------------------------------------------ incremental (the index)

    async def changes(
        self, after: int, version: int, policy_keys: Sequence[str], limit: int
    ) -> SnapshotChanges:
        """What the datasets ``after`` < id <= ``version`` changed in a whole-universe snapshot
        of ``policy_keys`` at ``after`` (``VerdictIndex``'s incremental build). Read by dataset
        id (every table's key starts with it), so a few small reads whatever the universe.

        ``blocked``: why the change cannot be applied incrementally (then nothing else is
        read): embargo or sanctions list loads, relationship records, an LEI that
        relationship records name changing hands, or more than ``limit`` issuers, instruments
        (funds included) or countries touched."""
        found = SnapshotChanges()
        conn = await self.session.connection()

        def new(model: Any) -> Any:
            return (model.dataset_id > after) & (model.dataset_id <= version)

        async def exists(query: Select[Any]) -> bool:
            return (await conn.execute(query.limit(1))).first() is not None

        kinds = (
            (
                await conn.execute(
                    select(Dataset.kind).where(Dataset.id > after, Dataset.id <= version).distinct()
                )
            )
            .scalars()
            .all()
        )
        whole = sorted(set(kinds) & {"arms-embargoes", *SANCTIONS_LIST_KINDS})
        if whole:
            found.blocked = f"{', '.join(whole)} load (a list judged over every country)"
            return found
        # Fail closed: a kind this build does not know how to bound (a new one) is read in full.
        unknown = sorted(set(kinds) - INCREMENTAL_KINDS)
        if unknown:
            found.blocked = f"{', '.join(unknown)} load (not bounded by the incremental build)"
            return found
        for model, what in (
            (ConsolidationRecord, "gleif-relationships records"),
            (ArmsEmbargo, "arms embargoes"),
            (SanctionsListEntry, "sanctions listings"),
        ):
            if await exists(select(model.dataset_id).where(new(model))):
                found.blocked = f"{what} loaded"
                return found
        keys = sorted(set(policy_keys))

        async def distinct(column: Any, *where: Any) -> set[str]:
            rows = await conn.execute(select(column).where(*where).distinct())
            return {value for value in rows.scalars() if value is not None}

        found.issuer_ids = await distinct(IssuerRecord.issuer_id, new(IssuerRecord))
        found.isins = await distinct(InstrumentRecord.isin, new(InstrumentRecord))
        found.fact_issuers = await distinct(Fact.issuer_id, new(Fact))
        found.fact_countries = await distinct(Fact.country, new(Fact), Fact.issuer_id.is_(None))
        if keys:
            found.list_issuers = await distinct(
                ListEntry.issuer_id, new(ListEntry), ListEntry.policy_key.in_(keys)
            )
            # A list replaced: every issuer its policy ever listed may have left the list.
            replaced = await distinct(
                ListReplacement.policy_key,
                new(ListReplacement),
                ListReplacement.policy_key.in_(keys),
            )
            if replaced:
                found.list_issuers |= await distinct(
                    ListEntry.issuer_id,
                    ListEntry.policy_key.in_(sorted(replaced)),
                    ListEntry.dataset_id <= version,
                )
        found.fund_isins = await distinct(FundComposition.fund_isin, new(FundComposition))
        sizes = {
            "issuers": len(found.issuer_ids | found.fact_issuers | found.list_issuers),
            "instruments": len(found.isins | found.fund_isins),
            "countries": len(found.fact_countries),
        }
        over = [f"{n:,} {what}" for what, n in sizes.items() if n > limit]
        if over:
            found.blocked = f"{', '.join(over)} touched (more than {limit:,})"
            return found

        for row in await self._newest_rows(
            IssuerRecord.issuer_id, _ISSUER_COLUMNS, found.issuer_ids, version
        ):
            found.issuers[row[0]] = IssuerNode(*row)
        for row in await self._newest_rows(
            InstrumentRecord.isin, _INSTRUMENT_COLUMNS, found.isins, version
        ):
            found.instruments[row[0]] = InstrumentNode(*row)
        for column, wanted, target, extra in (
            (Fact.issuer_id, found.fact_issuers, found.issuer_facts, ()),
            (Fact.country, found.fact_countries, found.country_facts, (Fact.issuer_id.is_(None),)),
        ):
            if not wanted:
                continue
            rows = await fetch_plain(
                conn,
                select(column, *_FACT_COLUMNS).where(
                    one_of(column, sorted(wanted)), Fact.dataset_id <= version, *extra
                ),
            )
            for row in rows:
                target.setdefault(row[0], []).append(FactPoint._make(row[1:]))
        # A fund's compositions, all of them (which applies depends on the day asked).
        found.compositions = await self._compositions(found.fund_isins, version)
        if found.list_issuers:
            entries = await self.session.execute(
                list_entries_in_force(version, keys, sorted(found.list_issuers))
            )
            grouped: dict[tuple[str, str], list[ListEntryPoint]] = {}
            for row in entries:
                fields = dict(row._mapping)
                fields["rule_ids"] = tuple((fields["rule_ids"] or "").split())
                point = ListEntryPoint(**fields)
                grouped.setdefault((point.policy_key, point.issuer_id), []).append(point)
            found.list_entries = {k: tuple(v) for k, v in grouped.items()}

        if found.issuer_ids:
            # Identifiers that moved: consolidation links (by LEI) and the issuer references
            # of fund constituents (by issuer id, LEI, MSCI or Sustainalytics id) may follow.
            before = await self._identifiers(found.issuer_ids, after)
            now = await self._identifiers(found.issuer_ids, version)
            moved = {
                lei
                for issuer_id in found.issuer_ids
                if before.get(issuer_id, (None,))[0] != now.get(issuer_id, (None,))[0]
                for lei in (before.get(issuer_id, (None,))[0], now.get(issuer_id, (None,))[0])
                if lei is not None
            }
            if moved and await exists(
                select(ConsolidationRecord.dataset_id).where(
                    or_(
                        one_of(ConsolidationRecord.start_lei, sorted(moved)),
                        one_of(ConsolidationRecord.end_lei, sorted(moved)),
                    ),
                    ConsolidationRecord.dataset_id <= version,
                )
            ):
                found.blocked = "an LEI that relationship records name moved between issuers"
                return found
            found.names = {v for ids in (*before.values(), *now.values()) for v in ids if v}
            found.names |= found.issuer_ids
        found.names |= found.isins
        return found

    async def _identifiers(
        self, issuer_ids: Iterable[str], version: int
    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        """issuer_id -> (LEI, MSCI issuer id, Sustainalytics entity id) of its current record
        at ``version`` (issuers without one at ``version`` are left out)."""
        rows = await self._newest_rows(
            IssuerRecord.issuer_id,
            (
                IssuerRecord.issuer_id,
                IssuerRecord.lei,
                IssuerRecord.msci_issuer_id,
                IssuerRecord.sustainalytics_entity_id,
            ),
            issuer_ids,
            version,
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    async def resolve_refs(
        self, refs: Iterable[str], issuers: dict[str, IssuerNode], version: int
    ) -> dict[str, str]:
        """The issuers constituent references name (``full_snapshot``'s ``issuer_refs``, for
        ``refs`` only; ``issuers``: the snapshot's, every current issuer)."""
        scratch = Snapshot(data_version=version, issuers=issuers)
        await self._resolve_issuer_refs(scratch, set(refs), version)
        return scratch.issuer_refs
