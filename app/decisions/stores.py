"""Where the decision log's writer puts a batch: one atomic, durable append to the chain.

The writer (``app.decisions.log``) hands a store a ``Batch``: its decisions rendered except for
what only the chain can assign (each one's seq, previous hash and hash, and the batch's
``decided_at``). A store appends it atomically, serialized against every other writer of the
same database by the chain lock (``DecisionRepository.lock_chain``'s advisory lock on Postgres,
SQLite's write lock), and returns only once the rows are committed.

``PostgresChainStore`` (the service on Postgres, one per process): a dedicated connection and,
for a batch of fewer than ``COPY_FROM`` decisions, ONE autocommitted statement: the sequencer
``mayhold_append_decisions`` (migration ``20261130_decision_sequencer``) takes the chain lock in
the database, reads the head, takes the database's time, chains the hashes (the recipe of
``app.decisions.chain.link_hash``) and inserts, so processes sharing the database (replicas)
wait for each other only while one INSERT runs, and never read a stale head or render a batch
twice. A larger batch is chained here and streamed by COPY inside one transaction holding the
same lock. Durable when it returns (synchronous_commit).

``SessionChainStore`` (SQLite, and tests inside a rolled-back transaction): the ordinary
session path: lock the chain, read the head, insert, commit. The same lock as the sequencer's on
Postgres, so the two may share a database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.decisions.repository import (
    CHAIN_LOCK_KEY,
    COLUMNS,
    TABLE,
    ChainHead,
    DecisionRepository,
)
from app.kit.canonical import rfc3339
from app.kit.metrics import DECISION_LOG_CHAIN_WAIT
from app.kit.time import utcnow


class Batch(Protocol):
    """A batch of decisions to append, rendered except for what the chain assigns under its
    lock: each decision's seq, previous hash and hash, and the batch's ``decided_at``."""

    size: int

    def columns(self) -> tuple[list[Any], ...]:
        """The arrays ``mayhold_append_decisions`` takes, in its parameter order."""

    def rows(self, head: ChainHead | None, decided_at: dt.datetime) -> Iterator[tuple[Any, ...]]:
        """The rows (``COLUMNS`` order) chained after ``head``, made lazily."""


@dataclass(frozen=True, slots=True)
class Appended:
    """Where a batch went: its first seq, and its ``decided_at`` (as stored, and as rendered in
    every payload)."""

    first_seq: int
    decided_at: dt.datetime
    decided_text: str


class ChainStore(Protocol):
    async def append(self, batch: Batch) -> Appended:
        """Append the batch atomically; return once it is committed, or raise."""

    async def close(self) -> None: ...


def _decided_at(head: ChainHead | None, now: dt.datetime) -> dt.datetime:
    # decided_at never decreases along seq, whatever the clocks of the writers did.
    return now if head is None else max(now, head.decided_at)


class SessionChainStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def append(self, batch: Batch) -> Appended:
        session = self._sessionmaker()
        try:
            repository = DecisionRepository(session)
            await repository.lock_chain()
            head = await repository.head()
            decided_at = _decided_at(head, utcnow())
            await repository.append_rows(list(batch.rows(head, decided_at)))
            await session.commit()
        finally:
            # Rolls back if we did not commit; a failure to close a dead connection changes
            # nothing (the pool discards it), so it must not turn a commit into a failure.
            with contextlib.suppress(Exception):
                await session.close()
        return Appended(1 if head is None else head.seq + 1, decided_at, rfc3339(decided_at))

    async def close(self) -> None:
        return None


def _function_call() -> str:
    # The sequencer's parameters, typed (asyncpg then sends each list as that array type).
    types = (
        "uuid", "timestamptz", "text", "integer", "text", "bigint", "text", "text", "text",
        "boolean", "text", "uuid", "text", "text", "text", "text", "text",
    )  # fmt: skip
    arguments = ", ".join(f"${n}::{name}[]" for n, name in enumerate(types, start=1))
    return f"SELECT * FROM mayhold_append_decisions({arguments})"  # noqa: S608


_APPEND = _function_call()
# From this many decisions on, the batch is chained here and streamed by COPY under the chain
# lock (a few round trips, the fastest load there is) instead of sent as arrays to the
# sequencer (one round trip, hashing in plpgsql).
COPY_FROM = 200
_LOCK = f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})"
# A statement after the lock: its snapshot sees what the previous holder committed.
_HEAD = (
    "SELECT h.seq, h.hash, h.decided_at, clock_timestamp() AS now FROM (SELECT 1) AS one "  # noqa: S608
    f"LEFT JOIN LATERAL (SELECT seq, hash, decided_at FROM {TABLE.name} "
    "ORDER BY seq DESC LIMIT 1) AS h ON true"
)


class PostgresChainStore:
    """One connection of its own; one autocommitted statement per batch (see the module doc)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        statement_timeout: float = 30.0,
    ) -> None:
        self._connect = connect
        self._timeout = statement_timeout
        self._connection: asyncpg.Connection | None = None

    @classmethod
    def for_engine(cls, engine: AsyncEngine, *, connect_timeout: float) -> PostgresChainStore:
        """Connect exactly as the engine does (same URL, credentials and options)."""
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs.pop("async_creator_fn", None)
        kwargs = {**kwargs, "timeout": connect_timeout}

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(*args, **kwargs)

        return cls(connect)

    async def append(self, batch: Batch) -> Appended:
        connection = await self._ensure_connection()
        try:
            if batch.size < COPY_FROM:
                row = await connection.fetchrow(_APPEND, *batch.columns(), timeout=self._timeout)
                assert row is not None
                DECISION_LOG_CHAIN_WAIT.observe(row["lock_wait"])
                return Appended(row["first_seq"], row["decided_at"], row["decided_text"])
            async with connection.transaction():
                waited = time.monotonic()
                await connection.execute(_LOCK, timeout=self._timeout)
                DECISION_LOG_CHAIN_WAIT.observe(time.monotonic() - waited)
                found = await connection.fetchrow(_HEAD, timeout=self._timeout)
                assert found is not None
                head = None if found["seq"] is None else ChainHead(*tuple(found)[:3])
                decided_at = _decided_at(head, found["now"])
                # Streamed: Postgres inserts the first rows (on its own core) while the rest
                # are still being rendered.
                await connection.copy_records_to_table(
                    TABLE.name,
                    records=batch.rows(head, decided_at),
                    columns=COLUMNS,
                    timeout=self._timeout,
                )
            first_seq = 1 if head is None else head.seq + 1
            return Appended(first_seq, decided_at, rfc3339(decided_at))
        except BaseException:
            # Lost, timed out or cancelled mid-statement: the connection's state and whether
            # the batch committed are unknown. Start afresh with a new connection.
            self._discard()
            raise

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=5)

    async def _ensure_connection(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await self._connect()
        return self._connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
