from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.datasets.records import EmbargoLoad
from app.models import ArmsEmbargo, Dataset, ListEntry, ListReplacement, SanctionsListEntry
from app.models.base import Base

# Any constant will do: it names "the dataset loads" among Postgres advisory locks.
_LOAD_LOCK_KEY = 0x6D61_7968_6F6C_64  # "mayhold"


class DatasetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def connection(self) -> AsyncConnection:
        return await self.session.connection()

    async def lock_loads(self) -> None:
        """Serialize loads: two at once queue instead of interleaving or deadlocking.

        Postgres: a transaction-scoped advisory lock (released at commit or rollback).
        SQLite: the write transaction already began IMMEDIATE, which serializes writers.
        """
        conn = await self.connection()
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOAD_LOCK_KEY})

    async def next_id(self) -> int:
        """The next dataset id; only safe under ``lock_loads``."""
        current = await self.session.execute(select(func.max(Dataset.id)))
        return (current.scalar_one() or 0) + 1

    async def get_same_load(
        self, kind: str, sha256: str, provider: str, as_of: dt.date, mode: str, policy: str
    ) -> Dataset | None:
        """The dataset these bytes were loaded as with exactly these parameters, if any (the
        datasets' unique key: contract, "Loads that replace a list")."""
        result = await self.session.execute(
            select(Dataset).where(
                Dataset.kind == kind,
                Dataset.sha256 == sha256,
                Dataset.provider == provider,
                Dataset.as_of == as_of,
                Dataset.mode == mode,
                Dataset.policy == policy,
            )
        )
        return result.scalar_one_or_none()

    async def get(self, dataset_id: int) -> Dataset | None:
        return await self.session.get(Dataset, dataset_id)

    async def list(
        self, *, kind: str | None, provider: str | None, limit: int, before_id: int | None
    ) -> Sequence[Dataset]:
        query = select(Dataset).order_by(Dataset.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(Dataset.kind == kind)
        if provider is not None:
            query = query.where(Dataset.provider == provider)
        if before_id is not None:
            query = query.where(Dataset.id < before_id)
        return (await self.session.execute(query)).scalars().all()

    async def add(self, dataset: Dataset) -> Dataset:
        self.session.add(dataset)
        await self.session.flush()
        return dataset

    async def analyze(self, model: type[Base]) -> None:
        """Refresh the planner's statistics of a table (Postgres; SQLite plans without)."""
        conn = await self.connection()
        if conn.dialect.name == "postgresql":
            table = model.__table__.name  # type: ignore[attr-defined]
            await conn.execute(text(f'ANALYZE "{table}"'))

    async def planned_rows(self, model: type[Base]) -> float | None:
        """The row count the planner believes a table has (Postgres ``pg_class.reltuples``:
        -1 when never analyzed); None on SQLite, which plans without statistics."""
        conn = await self.connection()
        if conn.dialect.name != "postgresql":
            return None
        table = model.__table__.name  # type: ignore[attr-defined]
        found = await conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"),
            {"table": table},
        )
        value = found.scalar_one_or_none()
        return None if value is None else float(value)

    async def create_stage(self, table: Table) -> None:
        conn = await self.connection()
        await conn.run_sync(lambda sync: table.create(sync))

    async def clear_stage(self, table: Table) -> None:
        conn = await self.connection()
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {table.name}"))
        else:
            await conn.execute(table.delete())

    async def drop_stage(self, table: Table) -> None:
        conn = await self.connection()
        await conn.run_sync(lambda sync: table.drop(sync))


async def data_version(session: AsyncSession, at: dt.datetime | None = None) -> int:
    """The data version at ``at`` (now when None): the newest dataset id loaded by then; 0
    before any load. Dataset ids are dense and follow load time (allocated under the load lock),
    so "what we knew at T" is everything from datasets with id <= this."""
    query = select(func.max(Dataset.id))
    if at is not None:
        query = query.where(Dataset.loaded_at <= at)
    return (await session.execute(query)).scalar_one() or 0


def embargo_loads(version: int, provider: str | None = None) -> Select[int, str, dt.date]:
    """Every arms-embargoes load known at data ``version`` (optionally of one ``provider``):
    rows (dataset id, provider, as_of), in load order."""
    query = (
        select(Dataset.id, Dataset.provider, Dataset.as_of)
        .where(Dataset.kind == "arms-embargoes", Dataset.id <= version)
        .order_by(Dataset.id)
    )
    if provider is not None:
        query = query.where(Dataset.provider == provider)
    return query


async def arms_embargo_loads(session: AsyncSession, version: int) -> list[EmbargoLoad]:
    """Every arms-embargoes load known at data ``version``: (dataset id, provider, as_of).

    Which of them is each provider's current list on a day is ``current_embargo_loads``'s
    decision (the newest provider date), never the load order; the screening snapshot,
    /v1/countries and the summary of an arms-embargoes load all read the loads here.
    """
    rows = await session.execute(embargo_loads(version))
    return [EmbargoLoad(dataset_id=i, provider=p, as_of=a) for i, p, a in rows.all()]


def embargo_list(dataset_id: int) -> Select[str, str, str]:
    """The embargoes one arms-embargoes load listed, as distinct (country, authority, regime)."""
    return (
        select(ArmsEmbargo.country, ArmsEmbargo.authority, ArmsEmbargo.regime)
        .where(ArmsEmbargo.dataset_id == dataset_id)
        .distinct()
    )


# Published sanctions lists (``ofac-ns-cmic``): loads and lists, read like arms embargoes.
SANCTIONS_LIST_KINDS = ("ofac-ns-cmic",)


def sanctions_loads(version: int, provider: str | None = None) -> Select[int, str, dt.date]:
    """Every sanctions-list load known at data ``version`` (optionally of one ``provider``):
    rows (dataset id, provider, as_of), in load order. Each is its provider's complete list
    as of its date; ``current_embargo_loads`` picks the current one, as for arms embargoes."""
    query = (
        select(Dataset.id, Dataset.provider, Dataset.as_of)
        .where(Dataset.kind.in_(SANCTIONS_LIST_KINDS), Dataset.id <= version)
        .order_by(Dataset.id)
    )
    if provider is not None:
        query = query.where(Dataset.provider == provider)
    return query


async def sanctions_list_loads(session: AsyncSession, version: int) -> list[EmbargoLoad]:
    rows = await session.execute(sanctions_loads(version))
    return [EmbargoLoad(dataset_id=i, provider=p, as_of=a) for i, p, a in rows.all()]


def sanctions_list(dataset_id: int) -> Select[str, str]:
    """The (entity_ref, name) pairs one sanctions-list load named, distinct."""
    return (
        select(SanctionsListEntry.entity_ref, SanctionsListEntry.name)
        .where(SanctionsListEntry.dataset_id == dataset_id)
        .distinct()
    )


# A ListEntryPoint's fields, in order.
LIST_ENTRY_COLUMNS = (
    ListEntry.policy_key,
    ListEntry.issuer_id,
    ListEntry.list,
    ListEntry.reason,
    ListEntry.decided_on,
    ListEntry.reference,
    ListEntry.review_on,
    ListEntry.expires_on,
    ListEntry.dataset_id,
    ListEntry.source_row,
    ListEntry.rule_ids,
)


def list_entries_in_force(
    version: int, policy_keys: Sequence[str], issuer_ids: Sequence[str] | None = None
) -> Select[*tuple[Any, ...]]:
    """The entries of each of ``policy_keys`` in force at data ``version``, in
    ``LIST_ENTRY_COLUMNS`` (optionally only those about ``issuer_ids``).

    The one definition of a policy's list (contract, "Loads that replace a list"; checks, the
    compiled index, custodian lists and the summaries of list loads all read it here): the
    entries of the policy's newest replacing load at ``version`` (``list_replacements``; none:
    from the first load), plus every entry appended after it up to ``version``. Of several
    entries for the same (policy, issuer, list) the one with the latest ``decided_on`` wins,
    ties by the later load: the rule facts follow (the provider's date decides, not the load
    order), so an archive back-fill of an old decision appended today stays in the history and
    never displaces the committee's newer decision. A replacing load's list may be empty.
    Bitemporal by construction: everything is bounded by ``version``, so a decision replayed
    at an old data version sees the list exactly as it was.

    One scan and a sort per policy (ROW_NUMBER over each key, on Postgres and SQLite alike),
    whether it reads a few issuers or every entry (the compiled index).
    """
    keys = sorted(set(policy_keys))
    replaced = (
        select(
            ListReplacement.policy_key.label("policy_key"),
            func.max(ListReplacement.dataset_id).label("since_id"),
        )
        .where(ListReplacement.policy_key.in_(keys), ListReplacement.dataset_id <= version)
        .group_by(ListReplacement.policy_key)
        .subquery("replaced")
    )
    # Within one load a (policy, issuer, list) appears once (duplicates are row errors), so
    # (decided_on, dataset_id) orders the candidates completely.
    rank = (
        func.row_number()
        .over(
            partition_by=(ListEntry.policy_key, ListEntry.issuer_id, ListEntry.list),
            order_by=(ListEntry.decided_on.desc(), ListEntry.dataset_id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(*LIST_ENTRY_COLUMNS, rank)
        .outerjoin(replaced, replaced.c.policy_key == ListEntry.policy_key)
        .where(
            ListEntry.policy_key.in_(keys),
            ListEntry.dataset_id <= version,
            ListEntry.dataset_id >= func.coalesce(replaced.c.since_id, 0),
        )
    )
    if issuer_ids is not None:
        ranked = ranked.where(ListEntry.issuer_id.in_(sorted(set(issuer_ids))))
    current = ranked.subquery("ranked")
    return select(*(current.c[column.key] for column in LIST_ENTRY_COLUMNS)).where(
        current.c.rank == 1
    )


def newest_list_replacements(version: int, policy_keys: Sequence[str]) -> Select[*tuple[Any, ...]]:
    """Per policy of ``policy_keys``, its replacing list-entries loads at ``version``:
    (policy_key, dataset id, as_of), newest load first."""
    return (
        select(ListReplacement.policy_key, Dataset.id, Dataset.as_of)
        .join(Dataset, Dataset.id == ListReplacement.dataset_id)
        .where(
            ListReplacement.policy_key.in_(sorted(set(policy_keys))),
            ListReplacement.dataset_id <= version,
        )
        .order_by(ListReplacement.policy_key, Dataset.id.desc())
    )


def stage_name() -> str:
    return f"stage_{uuid.uuid4().hex[:12]}"
