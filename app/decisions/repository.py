"""Queries on the decision log. The log is written only through ``append_rows`` (group commit)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Select, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.kit.bulk import bulk_insert
from app.kit.canonical import canonical_bytes
from app.models import Decision, DecisionCheckpoint

# Any constant will do: it names "the decision chain" among Postgres advisory locks (the
# dataset loads use another). The sequencer function (migration 20261130_decision_sequencer)
# takes it too.
CHAIN_LOCK_KEY = 0x6D68_6465_6369_7369  # "mhdecisi"

TABLE = cast(Table, Decision.__table__)
COLUMNS: tuple[str, ...] = tuple(column.name for column in TABLE.columns)

# What verify reads of each row: all of it (the payload is parsed there, never the ORM object
# built).
_VERIFY_COLUMNS = tuple(TABLE.columns)

# What a listing reads of each row: enough to render the stored decision and its audit record.
_STORED_COLUMNS = (
    Decision.seq,
    Decision.requested_by,
    Decision.requested_by_key_id,
    Decision.request_id,
    Decision.request,
    Decision.payload,
    Decision.prev_hash,
    Decision.hash,
)


@dataclass(frozen=True, slots=True)
class DecisionFilters:
    """What a listing asks for; every field given must match (None: any)."""

    isin: str | None = None
    issuer_id: str | None = None
    policy_key: str | None = None
    verdict: str | None = None
    decided_from: dt.datetime | None = None  # decided_at >= it
    decided_before: dt.datetime | None = None  # decided_at < it
    request_id: str | None = None
    # A portfolio's checks: matched in the stored request text (no column, no index: a scan
    # the auditor's console makes, never the check path).
    portfolio_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    hash: str
    decided_at: dt.datetime


class DecisionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- the writer --------------------------------------------------------------------------

    async def lock_chain(self) -> None:
        """Serialize appends across processes until this transaction ends.

        Postgres: a transaction-level advisory lock. Under READ COMMITTED every later statement
        takes a fresh snapshot, so ``head()`` then sees what the previous holder committed.
        SQLite: the write transaction already began IMMEDIATE, which serializes writers.
        """
        conn = await self.session.connection()
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})

    async def head(self) -> ChainHead | None:
        """The last decision of the chain; only meaningful under ``lock_chain``."""
        row = (
            await self.session.execute(
                select(Decision.seq, Decision.hash, Decision.decided_at)
                .order_by(Decision.seq.desc())
                .limit(1)
            )
        ).one_or_none()
        return None if row is None else ChainHead(seq=row.seq, hash=row.hash, decided_at=row[2])

    async def append_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows (tuples in ``COLUMNS`` order): COPY on Postgres, executemany elsewhere."""
        await bulk_insert(await self.session.connection(), TABLE, rows)

    # -- readers -----------------------------------------------------------------------------

    async def get(self, decision_id: uuid.UUID) -> Decision | None:
        result = await self.session.execute(
            select(Decision).where(Decision.decision_id == decision_id)
        )
        return result.scalar_one_or_none()

    async def seq_range(
        self, start: dt.datetime | None, end: dt.datetime | None
    ) -> tuple[int, int] | None:
        """The first and last seq decided in [start, end); None when there is none.

        decided_at never decreases along seq, so the range is contiguous in seq, and each end
        is one probe of the (decided_at, seq) index.
        """
        first = select(Decision.seq).order_by(Decision.decided_at, Decision.seq).limit(1)
        last = (
            select(Decision.seq).order_by(Decision.decided_at.desc(), Decision.seq.desc()).limit(1)
        )
        if start is not None:
            first = first.where(Decision.decided_at >= start)
            last = last.where(Decision.decided_at >= start)
        if end is not None:
            first = first.where(Decision.decided_at < end)
            last = last.where(Decision.decided_at < end)
        low = (await self.session.execute(first)).scalar_one_or_none()
        high = (await self.session.execute(last)).scalar_one_or_none()
        if low is None or high is None:
            return None
        return int(low), int(high)

    async def listing(
        self, filters: DecisionFilters, after_seq: int, limit: int
    ) -> Sequence[Row[*tuple[Any, ...]]]:
        """Up to ``limit`` matching rows with seq > after_seq, in seq order (keyset page)."""
        return (await self.session.execute(listing_query(filters, after_seq, limit))).all()

    async def newest(
        self, filters: DecisionFilters, before_seq: int | None, limit: int
    ) -> Sequence[Row[*tuple[Any, ...]]]:
        """Up to ``limit`` matching rows with seq < before_seq (None: from the newest), newest
        first (a keyset page read backwards: the console's search)."""
        query = _filtered(
            select(*_STORED_COLUMNS, Decision.decision_id).order_by(Decision.seq.desc()),
            filters,
        ).limit(limit)
        if before_seq is not None:
            query = query.where(Decision.seq < before_seq)
        return (await self.session.execute(query)).all()

    async def neighbour_hashes(self, seq: int) -> tuple[str | None, str | None]:
        """The hash of the decision before ``seq`` and the prev_hash of the one after it
        (None where there is none in the live table)."""
        before = await self.hash_at(seq - 1)
        after = (
            await self.session.execute(select(Decision.prev_hash).where(Decision.seq == seq + 1))
        ).scalar_one_or_none()
        return before, after

    async def chain_links(
        self, first: int, last: int, limit: int
    ) -> Sequence[Row[*tuple[Any, ...]]]:
        """(seq, prev_hash, hash) of first <= seq <= last, at most ``limit``, in seq order."""
        result = await self.session.execute(
            select(Decision.seq, Decision.prev_hash, Decision.hash)
            .where(Decision.seq >= first, Decision.seq <= last)
            .order_by(Decision.seq)
            .limit(limit)
        )
        return result.all()

    async def checkpoint_before(self, seq: int) -> DecisionCheckpoint | None:
        """The latest checkpoint at or before ``seq``."""
        result = await self.session.execute(
            select(DecisionCheckpoint)
            .where(DecisionCheckpoint.seq <= seq)
            .order_by(DecisionCheckpoint.seq.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def hash_at(self, seq: int) -> str | None:
        result = await self.session.execute(select(Decision.hash).where(Decision.seq == seq))
        return result.scalar_one_or_none()

    async def head_at(self, seq: int) -> ChainHead | None:
        row = (
            await self.session.execute(
                select(Decision.seq, Decision.hash, Decision.decided_at).where(Decision.seq == seq)
            )
        ).one_or_none()
        return None if row is None else ChainHead(seq=row.seq, hash=row.hash, decided_at=row[2])

    async def first_seq(self) -> int | None:
        """The first decision still in the live table (earlier ones may be archived)."""
        result = await self.session.execute(select(Decision.seq).order_by(Decision.seq).limit(1))
        return result.scalar_one_or_none()

    # -- checkpoints -------------------------------------------------------------------------

    async def checkpoint_hashes(self, first: int, last: int) -> dict[int, str]:
        """The checkpoints recorded for first <= seq <= last (a handful: one per archive)."""
        result = await self.session.execute(
            select(DecisionCheckpoint.seq, DecisionCheckpoint.hash).where(
                DecisionCheckpoint.seq >= first, DecisionCheckpoint.seq <= last
            )
        )
        return {row.seq: row.hash for row in result}

    async def checkpoints_decided_before(
        self, end: dt.datetime | None
    ) -> Sequence[DecisionCheckpoint]:
        """Every checkpoint whose decision was decided before ``end`` (None: all), in seq order:
        the checkpoint chain a range ending there rests on (one row per archive: a few
        hundred over ten years)."""
        query = select(DecisionCheckpoint).order_by(DecisionCheckpoint.seq)
        if end is not None:
            query = query.where(DecisionCheckpoint.decided_at < end)
        return (await self.session.execute(query)).scalars().all()

    async def latest_checkpoint(self) -> DecisionCheckpoint | None:
        result = await self.session.execute(
            select(DecisionCheckpoint).order_by(DecisionCheckpoint.seq.desc()).limit(1)
        )
        return result.scalar_one_or_none()

    async def add_checkpoint(self, checkpoint: DecisionCheckpoint) -> None:
        self.session.add(checkpoint)
        await self.session.flush()

    async def page(
        self, after_seq: int, last_seq: int, limit: int
    ) -> Sequence[Row[*tuple[Any, ...]]]:
        """Up to ``limit`` rows with after_seq < seq <= last_seq, in seq order (keyset page)."""
        result = await self.session.execute(
            select(*_VERIFY_COLUMNS)
            .where(Decision.seq > after_seq, Decision.seq <= last_seq)
            .order_by(Decision.seq)
            .limit(limit)
        )
        return result.all()


def listing_query(filters: DecisionFilters, after_seq: int, limit: int) -> Select[*tuple[Any, ...]]:
    """The keyset page query (a function of its own so that tests and benchmarks read its plan).

    A time range becomes a seq range (decided_at never decreases along seq) through two scalar
    subqueries, each one probe of the (decided_at, seq) index; the page is then one range scan
    of the filter's (column, seq) index, or of the primary key, with no sort.
    """
    query: Select[*tuple[Any, ...]] = (
        select(*_STORED_COLUMNS).where(Decision.seq > after_seq).order_by(Decision.seq).limit(limit)
    )
    return _filtered(query, filters)


def _filtered(
    query: Select[*tuple[Any, ...]], filters: DecisionFilters
) -> Select[*tuple[Any, ...]]:
    """``query`` restricted to the decisions ``filters`` ask for."""
    for column, value in (
        (Decision.isin, filters.isin),
        (Decision.issuer_id, filters.issuer_id),
        (Decision.policy_key, filters.policy_key),
        (Decision.verdict, filters.verdict),
        (Decision.request_id, filters.request_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.decided_from is not None:
        first = (
            select(Decision.seq)
            .where(Decision.decided_at >= filters.decided_from)
            .order_by(Decision.decided_at, Decision.seq)
            .limit(1)
            .scalar_subquery()
        )
        query = query.where(Decision.seq >= first)
    if filters.decided_before is not None:
        last = (
            select(Decision.seq)
            .where(Decision.decided_at < filters.decided_before)
            .order_by(Decision.decided_at.desc(), Decision.seq.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = query.where(Decision.seq <= last)
    if filters.portfolio_id is not None:
        # The request is canonical JSON: the portfolio appears as exactly this text.
        needle = '"portfolio":' + canonical_bytes(filters.portfolio_id).decode("utf-8")
        query = query.where(Decision.request.contains(needle, autoescape=True))
    return query


# -- partitions (Postgres) -----------------------------------------------------------------------

# Names "keeping the partitions ahead" among advisory locks: concurrent runners take turns, and
# the second finds the work done.
_PARTITION_LOCK_KEY = 0x6D68_7061_7274_6974  # "mhpartit"
# A partition's name: "decisions_p" and its first seq, zero-padded to a bigint's 19 digits, so
# that names sort as their ranges do (the decisions_partitions migration names them alike).
PARTITION_PREFIX = "decisions_p"
_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
# The archive's row format: COPY's text format, columns in this order (the table's).
ARCHIVE_COLUMNS = COLUMNS


def partition_name(start: int) -> str:
    return f"{PARTITION_PREFIX}{start:019d}"


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of ``decisions``: the seqs ``start <= seq < end``."""

    name: str
    start: int
    end: int

    @property
    def last(self) -> int:
        return self.end - 1


@dataclass(frozen=True, slots=True)
class PartitionRows:
    """What one partition holds (``count`` 0: the other fields are None)."""

    count: int
    first_seq: int | None
    last_seq: int | None
    first_decided_at: dt.datetime | None
    last_decided_at: dt.datetime | None


class PartitionRepository:
    """The DDL and reads of partition maintenance and archiving. Postgres only."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, lock_timeout_ms: int) -> None:
        """Take the maintenance lock until this transaction ends, and bound how long any DDL
        of it waits for a table lock (a long reader must not make writers queue behind it)."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PARTITION_LOCK_KEY}
        )
        await self.session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))

    async def partitions(self) -> list[Partition]:
        """The attached partitions of ``decisions``, in seq order."""
        rows = await self.session.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:parent AS regclass)"
            ),
            {"parent": TABLE.name},
        )
        found = []
        for name, bound in rows:
            match = _BOUND.fullmatch(bound or "")
            if match is None:  # a DEFAULT or MINVALUE partition: not one of ours
                raise RuntimeError(f"partition {name}: a bound this service never makes: {bound}")
            found.append(Partition(name, int(match[1]), int(match[2])))
        return sorted(found, key=lambda p: p.start)

    async def head_seq(self) -> int | None:
        result = await self.session.execute(select(func.max(Decision.seq)))
        value = result.scalar_one_or_none()
        return None if value is None else int(value)

    async def first_seq_from(self, at: dt.datetime) -> int | None:
        """The first seq decided at or after ``at`` (one probe of (decided_at, seq))."""
        result = await self.session.execute(
            select(Decision.seq)
            .where(Decision.decided_at >= at)
            .order_by(Decision.decided_at, Decision.seq)
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def create(self, start: int, end: int) -> Partition:
        """A new partition [start, end) with its TRUNCATE trigger (the row triggers are the
        parent's, cloned by Postgres)."""
        name = partition_name(start)
        await self.session.execute(
            text(
                f"CREATE TABLE {name} PARTITION OF {TABLE.name} "
                f"FOR VALUES FROM ({int(start)}) TO ({int(end)})"
            )
        )
        await self.session.execute(text(_truncate_trigger(name)))
        return Partition(name, start, end)

    async def rows_in(self, partition: Partition) -> PartitionRows:
        row = (
            await self.session.execute(
                select(
                    func.count(),
                    func.min(Decision.seq),
                    func.max(Decision.seq),
                    func.min(Decision.decided_at),
                    func.max(Decision.decided_at),
                ).where(Decision.seq >= partition.start, Decision.seq < partition.end)
            )
        ).one()
        return PartitionRows(int(row[0]), row[1], row[2], row[3], row[4])

    async def export(self, partition: Partition, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Stream the partition's rows in seq order, COPY's text format (the stored texts byte
        for byte; times in UTC, ISO), to ``write``."""
        await self.session.execute(text("SET LOCAL TimeZone = 'UTC'"))
        await self.session.execute(text("SET LOCAL DateStyle = 'ISO, YMD'"))
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        columns = ", ".join(ARCHIVE_COLUMNS)
        await driver.copy_from_query(
            f"SELECT {columns} FROM {partition.name} ORDER BY seq",  # noqa: S608
            output=write,
        )

    async def protect_detached(self, name: str) -> None:
        """A detached partition is a table of its own: append-only like the log (Postgres
        drops the cloned row trigger at DETACH)."""
        exists = await self.session.execute(
            text(
                "SELECT 1 FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) AND tgname = :name"
            ),
            {"t": name, "name": f"{TABLE.name}_append_only"},
        )
        if exists.first() is None:
            await self.session.execute(
                text(
                    f"CREATE TRIGGER {TABLE.name}_append_only BEFORE UPDATE OR DELETE ON {name} "
                    "FOR EACH ROW EXECUTE FUNCTION mayhold_reject_change()"
                )
            )

    async def drop(self, name: str) -> None:
        await self.session.execute(text(f"DROP TABLE {name}"))


async def detach_partition(connection: AsyncConnection, name: str) -> None:
    """``ALTER TABLE decisions DETACH PARTITION name CONCURRENTLY`` on an autocommit
    connection (it cannot run in a transaction): writers and readers of the log never wait
    for it. Interrupted, it leaves the partition "detach pending"; ``ALTER TABLE decisions
    DETACH PARTITION <name> FINALIZE`` completes it."""
    await connection.execute(text(f"ALTER TABLE {TABLE.name} DETACH PARTITION {name} CONCURRENTLY"))


def _truncate_trigger(name: str) -> str:
    return (
        f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mayhold_reject_change()"
    )
