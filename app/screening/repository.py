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
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, String, func, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.repository import arms_embargo_loads, data_version, list_entries_in_force
from app.kit.bulk import fetch_plain
from app.kit.identifiers import is_valid_isin
from app.models import (
    ArmsEmbargo,
    Fact,
    FundComposition,
    FundHolding,
    InstrumentRecord,
    IssuerRecord,
)
from app.screening.snapshot import (
    Composition,
    Constituent,
    Embargo,
    FactPoint,
    InstrumentNode,
    IssuerNode,
    ListEntryPoint,
    Snapshot,
)

RecordT = TypeVar("RecordT", IssuerRecord, InstrumentRecord)

# Guards against a malformed ownership graph (a cycle loaded by mistake).
MAX_DEPTH = 32


def _issuer_node(record: IssuerRecord) -> IssuerNode:
    return IssuerNode(
        issuer_id=record.issuer_id,
        name=record.name,
        kind=record.kind,
        country=record.country,
        parent_issuer_id=record.parent_issuer_id,
        parent_control_pct=record.parent_control_pct,
        state_owner_country=record.state_owner_country,
        state_owner_pct=record.state_owner_pct,
        dataset_id=record.dataset_id,
        source_row=record.source_row,
    )


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
    for fact in fact_rows:
        issuer_id, country = fact[0], fact[1]
        point = make(fact[2:])
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
            .where(column.in_(wanted), model.dataset_id <= version)
            .group_by(column)
            .subquery()
        )
        query = select(model).join(
            newest, (column == newest.c.k) & (model.dataset_id == newest.c.dataset_id)
        )
        return list((await self.session.execute(query)).scalars())

    async def snapshot(
        self,
        isins: Sequence[str],
        version: int,
        policy_keys: Sequence[str],
        group_rule: bool,
        *,
        sponsor_groups: bool = False,
    ) -> Snapshot:
        """The neighbourhood of ``isins`` at data ``version`` (see the module docstring).

        ``sponsor_groups``: also every issuer of the groups of the policies' sponsors (their
        parents up to the ultimate parent, and everything under it), for position limits.
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
            records = await self._latest(InstrumentRecord, "isin", pending, version)
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
            for record in records:
                snapshot.instruments[record.isin] = InstrumentNode(
                    isin=record.isin,
                    issuer_id=record.issuer_id,
                    asset_class=record.asset_class,
                    underlying_isin=record.underlying_isin,
                    name=record.name,
                )
                if record.underlying_isin and record.underlying_isin not in snapshot.instruments:
                    pending.add(record.underlying_isin)

        await self._add_issuers(
            snapshot, {i.issuer_id for i in snapshot.instruments.values()}, version
        )
        await self._resolve_issuer_refs(snapshot, issuer_refs, version)
        if sponsor_groups:
            await self._add_sponsors(snapshot, version, policy_keys)
        if group_rule or sponsor_groups:
            await self._add_subsidiaries(snapshot, version)
        await self._add_state_owners(snapshot, version)
        await self._add_facts(snapshot, version)
        await self._add_embargoes(snapshot, version)
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
        await self._add_list_entries(snapshot, version, policy_keys, everywhere=True)
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
                FundComposition.fund_isin.in_(wanted), FundComposition.dataset_id <= version
            ),
        )
        if not heads:
            return {}
        rows = await fetch_plain(
            conn,
            select(*_CONSTITUENT_COLUMNS)
            .where(
                FundHolding.fund_isin.in_(sorted({h[0] for h in heads})),
                FundHolding.dataset_id.in_(sorted({h[2] for h in heads})),
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
                        or_(*(c.in_(wanted) for c in columns)), IssuerRecord.dataset_id <= version
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
        for record in await self._latest(IssuerRecord, "issuer_id", missing, version):
            snapshot.issuers[record.issuer_id] = _issuer_node(record)

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
                            IssuerRecord.parent_issuer_id.in_(sorted(frontier)),
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
                        IssuerRecord.country.in_(sorted(countries)),
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

    async def _add_facts(self, snapshot: Snapshot, version: int) -> None:
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
                select(column, *_FACT_COLUMNS).where(column.in_(keys), Fact.dataset_id <= version)
            )
            for key, metric, provider, value, as_of, dataset_id, row, field in rows:
                target.setdefault(key or "", []).append(
                    FactPoint(metric, provider, value, as_of, dataset_id, row, field)
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
            query = query.where(ArmsEmbargo.country.in_(countries))
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
