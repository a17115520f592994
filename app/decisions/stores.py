"""Where the decision log's writer puts a batch: one atomic, durable append to the chain.

The writer (``app.decisions.log``) hands a store a ``render`` function: given the chain's head
it numbers, times and hashes the batch and returns its rows and the new head. A store makes the
append atomic and serialized against every other writer of the same database, and returns only
once the rows are committed.

``PostgresChainStore`` (the service on Postgres): a dedicated connection, the head kept in
memory, and ONE autocommitted statement per batch (``INSERT ... SELECT FROM unnest(...)``: a
single round trip; COPY for a large batch), durable when it returns (synchronous_commit).
Other processes are excluded optimistically by the primary key on ``seq``: if another writer
took the next seq first, the insert fails with a unique violation (Postgres makes it wait for
the other's commit, then fail), nothing of the batch is written, and the batch is rendered
again on the re-read head. So the chain never forks, and one process, the usual deployment,
never waits on a lock.

``SessionChainStore`` (SQLite, and tests inside a rolled-back transaction): the ordinary
session path: lock the chain, read the head, insert, commit. SQLite's IMMEDIATE transaction
serializes writers; on Postgres the advisory lock does.

Don't mix the two on one Postgres database: the session store's lock means nothing to the
optimistic one (a conflict would then fail a session-store batch instead of retrying it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.decisions.repository import COLUMNS, TABLE, ChainHead, DecisionRepository
from app.kit.metrics import DECISION_LOG_CONFLICTS


class RenderedBatch(Protocol):
    """A batch rendered on a head: ``size`` rows, made lazily by ``rows`` (``COLUMNS``
    order); ``head()``, the chain's head after them, once ``rows`` is exhausted."""

    size: int
    rows: Iterator[tuple[Any, ...]]

    def head(self) -> ChainHead: ...


# Renders the batch on the given head (the store's idea of the chain's last decision).
Render = Callable[[ChainHead | None], RenderedBatch]


class ChainStore(Protocol):
    async def append(self, render: Render) -> None:
        """Append the rendered batch atomically; return once it is committed, or raise."""

    async def close(self) -> None: ...


class ChainContended(RuntimeError):
    """Other writers kept taking the next seq first: the batch was not written."""


class SessionChainStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def append(self, render: Render) -> None:
        session = self._sessionmaker()
        try:
            repository = DecisionRepository(session)
            await repository.lock_chain()
            batch = render(await repository.head())
            await repository.append_rows(list(batch.rows))
            await session.commit()
        finally:
            # Rolls back if we did not commit; a failure to close a dead connection changes
            # nothing (the pool discards it), so it must not turn a commit into a failure.
            with contextlib.suppress(Exception):
                await session.close()

    async def close(self) -> None:
        return None


def _insert_statement() -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f"${n}::{TABLE.c[name].type.compile(dialect=dialect)}[]"
        for n, name in enumerate(COLUMNS, start=1)
    )
    # Built from the model's own table and column names only: nothing from outside.
    columns = ", ".join(COLUMNS)
    return f"INSERT INTO {TABLE.name} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608


_INSERT = _insert_statement()
# From this many rows on, COPY (two round trips, then the fastest load there is) beats the
# INSERT (one round trip): 10,000 decisions take about 80 ms by COPY, 180 ms by unnest.
_COPY_FROM = 200
_HEAD = f"SELECT seq, hash, decided_at FROM {TABLE.name} ORDER BY seq DESC LIMIT 1"  # noqa: S608


class PostgresChainStore:
    """One connection of its own; one autocommitted INSERT per batch (see the module doc)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        statement_timeout: float = 30.0,
        max_attempts: int = 20,
    ) -> None:
        self._connect = connect
        self._timeout = statement_timeout
        self._max_attempts = max_attempts
        self._connection: asyncpg.Connection | None = None
        self._head: ChainHead | None = None
        self._head_known = False
        self.conflicts = 0  # batches rendered again because another writer went first

    @classmethod
    def for_engine(cls, engine: AsyncEngine, *, connect_timeout: float) -> PostgresChainStore:
        """Connect exactly as the engine does (same URL, credentials and options)."""
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs.pop("async_creator_fn", None)
        kwargs = {**kwargs, "timeout": connect_timeout}

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(*args, **kwargs)

        return cls(connect)

    async def append(self, render: Render) -> None:
        for _ in range(self._max_attempts):
            connection = await self._ensure_connection()
            try:
                if not self._head_known:
                    row = await connection.fetchrow(_HEAD, timeout=self._timeout)
                    self._head = None if row is None else ChainHead(*row)
                    self._head_known = True
                batch = render(self._head)
                if batch.size < _COPY_FROM:
                    columns = zip(*batch.rows, strict=True)
                    await connection.execute(_INSERT, *columns, timeout=self._timeout)
                else:
                    # Streamed: Postgres inserts the first rows (on its own core) while the
                    # rest are still being rendered.
                    await connection.copy_records_to_table(
                        TABLE.name, records=batch.rows, columns=COLUMNS, timeout=self._timeout
                    )
            except asyncpg.UniqueViolationError:
                self.conflicts += 1
                DECISION_LOG_CONFLICTS.inc()
                self._head_known = False  # another writer went first: read the head again
                continue
            except BaseException:
                # Lost, timed out or cancelled mid-statement: the connection's state and whether
                # the batch committed are unknown. Start afresh: a new connection, the head read.
                self._discard()
                raise
            self._head = batch.head()
            return
        raise ChainContended(
            f"the next seq was taken by another writer {self._max_attempts} times in a row"
        )

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=5)

    async def _ensure_connection(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._head_known = False
            self._connection = await self._connect()
        return self._connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        self._head_known = False
        if connection is not None:
            connection.terminate()
