"""The decision log's writer: every decision is durable before it is returned (group commit).

``await decision_log.append(entries)`` returns the final decisions (``decision_id``,
``decided_at`` added) only once the transaction holding them has committed. One background task
per process drains a queue: it takes everything waiting (whole ``append`` calls, up to
``max_batch`` decisions; a larger call goes alone), renders the batch except for what the chain
assigns (``_Batch``: each decision's id, its header up to the seq, its payload around
``decided_at``), and hands it to the store (``app.decisions.stores``), which in ONE transaction

1. takes the chain lock (Postgres: a transaction-level advisory lock, so several service
   processes extend one chain; SQLite: the transaction began IMMEDIATE, the write lock),
2. reads the chain's head (last seq, hash, decided_at),
3. gives each decision the next seq and the batch's ``decided_at`` (never earlier than the
   head's, so decided_at never decreases along seq) and chains its hash
   (``app.decisions.chain``); on Postgres a batch of fewer than ``COPY_FROM`` decisions is
   chained by the database itself (the sequencer function), in one statement,
4. inserts the rows, commits, and only then resolves each caller's future.

While one batch commits, the next accumulates: under load many requests share one commit, and
a lone request pays one transaction (no waiting for a batch to fill).

This writer owns its transactions by design. Everything else in the service follows "services
flush, the request commits"; a decision log written in the request's transaction would commit
one decision per transaction, and the chain lock would be held for the whole request.

Failure: if the transaction fails (database down, lock timeout...), every caller in the batch
gets ``DatabaseUnavailable`` and nothing of that batch is returned as decided. Its rows may or
may not have been committed (a connection lost during COMMIT): a logged decision that was never
returned is harmless; the reverse cannot happen. The next batch reads the head again, so the
chain continues from whatever was committed. The writer keeps running and recovers by itself.

SQLite integration note: a request that awaits ``append`` must not hold SQLite's write lock
meanwhile, or the writer waits for it (``busy_timeout``) and fails. Routes that only read mark
their transaction read-only (``app.kit.db.read_only_transaction``, DEFERRED under WAL); a route
that appends decisions must do so too, or append before it writes. Postgres has no such issue.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.schemas import Actor
from app.decisions.chain import (
    ASSIGNED_KEYS,
    GENESIS,
    DecisionEntryInvalid,
    Projection,
    header_prefix,
    link_hash,
    project,
)
from app.decisions.repository import COLUMNS, ChainHead
from app.decisions.stores import ChainStore, PostgresChainStore, SessionChainStore
from app.kit.canonical import canonical_json, json_ready, rfc3339
from app.kit.db import Database
from app.kit.errors import DatabaseUnavailable
from app.kit.logging import get_logger
from app.kit.metrics import DECISION_APPEND_SECONDS, DECISION_QUEUE, REGISTRY
from app.kit.settings import Settings

log = get_logger("mayhold.decisions")

BATCHES = Counter(
    "mayhold_decision_log_batches_total",
    "Decision-log transactions (group commits), by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "mayhold_decision_log_batch_decisions",
    "Decisions per committed decision-log transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "mayhold_decision_log_commit_seconds",
    "Time of one decision-log transaction: lock, head, insert, commit.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)

# The row tuples below are built in this order; the table must agree (checked at import).
_ROW_ORDER = (
    "seq",
    "decision_id",
    "decided_at",
    "as_of",
    "policy_key",
    "policy_version",
    "policy_sha256",
    "data_version",
    "isin",
    "issuer_id",
    "verdict",
    "may_hold",
    "requested_by",
    "requested_by_key_id",
    "request_id",
    "request",
    "payload",
    "prev_hash",
    "hash",
)
if COLUMNS != _ROW_ORDER:  # a model change must update the tuple in _commit
    raise RuntimeError(f"decisions columns {COLUMNS} differ from the writer's {_ROW_ORDER}")

# Postgres's message when a row falls beyond the last partition (the partitioned log).
_NO_PARTITION = "no partition of relation"
_NO_ROOM = (
    "The decision could not be logged: the decision log has no partition for the next "
    "decisions (operators: run `mayhold decisions partitions`). Nothing was decided. Retry "
    "shortly."
)
_UNAVAILABLE = (
    "The decision could not be logged (the database is unavailable): nothing was decided. "
    "Retry shortly."
)


@dataclass(frozen=True)
class DecisionEntry:
    """One decision to log, as the engine made it.

    ``payload``: the decision without ``decision_id``/``decided_at`` (the log assigns them):
    ``as_of``, ``policy {key, version, sha256}``, ``data_version``, ``instrument``, ``issuer``,
    ``verdict``, ``may_hold``, ``reasons``. JSON values, or Decimals, dates, timezone-aware
    datetimes, UUIDs and enums, rendered as ``app.kit.canonical`` says; ``append`` returns the
    rendered (JSON-ready) form, exactly what is stored.
    ``request``: what was asked for *this* decision (``policy``, ``instrument``, ``as_of``...;
    for a batch check, the item, not the whole batch: it is stored with every decision).
    ``actor``: who asked. ``request_id``: the request's X-Request-ID.
    ``plain``: the payload holds plain JSON values only (str, int, bool, None, lists, dicts with
    string keys), e.g. built from the compiled index's pre-rendered templates: it is returned
    as given instead of rendered once more (the stored text is canonical either way).
    """

    payload: dict[str, Any]
    request: dict[str, Any]
    actor: Actor
    request_id: str | None
    plain: bool = False


@dataclass(frozen=True, slots=True)
class _Prepared:
    body: dict[str, Any]
    request: str
    projection: Projection
    requested_by: str
    requested_by_key_id: uuid.UUID | None
    request_id: str | None


@dataclass(slots=True)
class _Waiter:
    items: list[_Prepared]
    future: asyncio.Future[list[dict[str, Any]]]


def _prepare(entry: DecisionEntry) -> _Prepared:
    """Validate and render one entry, in the caller's task: a bad entry fails its caller only."""
    try:
        body = entry.payload if entry.plain else json_ready(entry.payload)
        request_text = canonical_json(entry.request)
    except TypeError as exc:
        cause = exc.__cause__ or exc
        raise DecisionEntryInvalid(f"decision not renderable as JSON: {cause}") from exc
    if not isinstance(body, dict):
        raise DecisionEntryInvalid("decision payload: must be an object")
    if not request_text.startswith("{"):
        raise DecisionEntryInvalid("decision request: must be an object")
    assigned = [key for key in ASSIGNED_KEYS if key in body]
    if assigned:
        raise DecisionEntryInvalid(
            f"decision payload: {', '.join(assigned)} is assigned by the log"
        )
    if not entry.actor.name or len(entry.actor.name) > 200:
        raise DecisionEntryInvalid("actor name: 1 to 200 characters")
    if entry.request_id is not None and len(entry.request_id) > 128:
        raise DecisionEntryInvalid("request_id: at most 128 characters")
    return _Prepared(
        body=body,
        request=request_text,
        projection=project(body, entry.request),
        requested_by=entry.actor.name,
        requested_by_key_id=entry.actor.key_id,
        request_id=entry.request_id,
    )


# Stands for the batch's decided_at in a payload rendered before the chain assigns it: the
# payload is cut around it. Random per process, so no decision's data can contain it.
_DECIDED_AT = "decided-at-" + os.urandom(16).hex()


class _Batch:
    """Whole waiting calls, for the chain (``app.decisions.stores.Batch``): each decision's id
    drawn; the rest rendered as the store asks. For the database's sequencer (``columns``):
    the header up to the seq and the payload around ``decided_at``, before the chain lock;
    for the COPY path (``rows``): each row rendered and chained as COPY sends it, so Postgres
    inserts the first rows while the rest are rendered."""

    def __init__(self, waiters: Sequence[_Waiter]) -> None:
        self.waiters = waiters
        items = [item for waiter in waiters for item in waiter.items]
        self.size = len(items)
        self._items = items
        # One read of the system's randomness for the whole batch: uuid4() reads it per call,
        # a system call that costs as much as rendering the decision.
        randomness = os.urandom(16 * self.size)
        self._ids = [
            uuid.UUID(bytes=randomness[offset : offset + 16], version=4)
            for offset in range(0, 16 * self.size, 16)
        ]
        self._id_texts = [str(decision_id) for decision_id in self._ids]

    def _prefix(self, n: int) -> str:
        item = self._items[n]
        key_id = item.requested_by_key_id
        return header_prefix(
            decision_id=self._id_texts[n],
            requested_by=item.requested_by,
            requested_by_key_id=None if key_id is None else str(key_id),
            request_id=item.request_id,
        )

    def _payload(self, n: int, decided_text: str) -> str:
        # JSON-ready already: what is stored is exactly what the caller gets.
        final = {"decision_id": self._id_texts[n], "decided_at": decided_text}
        return canonical_json(final | self._items[n].body)

    def columns(self) -> tuple[list[Any], ...]:
        items = self._items
        projections = [item.projection for item in items]
        heads: list[str] = []
        tails: list[str] = []
        for n in range(self.size):
            head, found, tail = self._payload(n, _DECIDED_AT).partition(_DECIDED_AT)
            if not found:  # cannot happen: the key is set by _payload
                raise DecisionEntryInvalid("decision payload: decided_at not rendered")
            heads.append(head)
            tails.append(tail)
        return (
            self._ids,
            [p.as_of for p in projections],
            [p.policy_key for p in projections],
            [p.policy_version for p in projections],
            [p.policy_sha256 for p in projections],
            [p.data_version for p in projections],
            [p.isin for p in projections],
            [p.issuer_id for p in projections],
            [p.verdict for p in projections],
            [p.may_hold for p in projections],
            [item.requested_by for item in items],
            [item.requested_by_key_id for item in items],
            [item.request_id for item in items],
            [item.request for item in items],
            [self._prefix(n) for n in range(self.size)],
            heads,
            tails,
        )

    def rows(self, head: ChainHead | None, decided_at: dt.datetime) -> Iterator[tuple[Any, ...]]:
        seq, prev_hash = (0, GENESIS) if head is None else (head.seq, head.hash)
        decided_text = rfc3339(decided_at)
        for n, item in enumerate(self._items):
            seq += 1
            payload = self._payload(n, decided_text)
            digest = link_hash(prev_hash, self._prefix(n), seq, item.request, payload)
            p = item.projection
            yield (
                seq,
                self._ids[n],
                decided_at,
                p.as_of,
                p.policy_key,
                p.policy_version,
                p.policy_sha256,
                p.data_version,
                p.isin,
                p.issuer_id,
                p.verdict,
                p.may_hold,
                item.requested_by,
                item.requested_by_key_id,
                item.request_id,
                item.request,
                payload,
                prev_hash,
                digest,
            )
            prev_hash = digest

    def results(self, decided_text: str) -> Iterator[list[dict[str, Any]]]:
        """Each caller's decisions as stored (the payload's JSON value)."""
        ids = iter(self._id_texts)
        for waiter in self.waiters:
            yield [
                {"decision_id": next(ids), "decided_at": decided_text, **item.body}
                for item in waiter.items
            ]


class DecisionLog:
    """The group-commit writer of one process (``app.state.decision_log``)."""

    def __init__(
        self,
        store: ChainStore,
        *,
        max_batch: int = 2000,
        stop_timeout: float = 30.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._store = store
        self._max_batch = max_batch
        self._stop_timeout = stop_timeout
        self._queue: deque[_Waiter] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Counters for tests and benchmarks (Prometheus has the same, process-wide).
        self.committed_batches = 0
        self.committed_decisions = 0
        self.failed_batches = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def for_database(
        cls, database: Database, settings: Settings, *, dedicated_connection: bool, **kwargs: Any
    ) -> DecisionLog:
        """The service's log: on Postgres, with a connection of its own (one round trip per
        batch); otherwise (SQLite, or a test's transaction-bound sessions) on sessions."""
        if dedicated_connection and database.engine.dialect.name == "postgresql":
            return cls(
                PostgresChainStore.for_engine(
                    database.engine, connect_timeout=settings.database_connect_timeout
                ),
                **kwargs,
            )
        return cls(SessionChainStore(database.sessionmaker), **kwargs)

    @classmethod
    def on_sessions(
        cls, sessionmaker: async_sessionmaker[AsyncSession], **kwargs: Any
    ) -> DecisionLog:
        return cls(SessionChainStore(sessionmaker), **kwargs)

    @property
    def store(self) -> ChainStore:
        return self._store

    async def start(self) -> None:
        self._closing = False
        self._ensure_writer()

    async def stop(self) -> None:
        """Flush what is queued (up to ``stop_timeout`` seconds), then stop; fail what is left."""
        timeout = self._stop_timeout
        self._closing = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                log.error("decision log: flush timed out; failing what is left", timeout=timeout)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_queued("The service is shutting down: nothing was decided. Retry shortly.")
        await self._store.close()

    def _ensure_writer(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="mayhold-decision-log")

    # -- the interface -------------------------------------------------------------------------

    async def append(self, entries: Sequence[DecisionEntry]) -> list[dict[str, Any]]:
        """Log decisions; return them, in order, once committed.

        Each returned decision is ``{"decision_id": str, "decided_at": RFC 3339 UTC,
        **payload}`` (JSON-ready). Raises ``DatabaseUnavailable`` if they could not be logged
        (then none of them is decided), ``DecisionEntryInvalid`` for an entry missing a field.
        """
        if not entries:
            return []
        if self._closing:
            raise DatabaseUnavailable("The service is shutting down: nothing was decided.")
        items = [_prepare(entry) for entry in entries]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        started = loop.time()
        self._queue.append(_Waiter(items, future))
        DECISION_QUEUE.inc(len(items))
        self._ensure_writer()
        self._wakeup.set()
        decisions = await future
        DECISION_APPEND_SECONDS.observe(loop.time() - started)
        return decisions

    # -- the writer task -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take()
            if batch:
                await self._write(batch)

    def _take(self) -> list[_Waiter]:
        """Whole waiting calls, oldest first, up to max_batch decisions (at least one call)."""
        batch: list[_Waiter] = []
        size = 0
        while self._queue:
            waiter = self._queue[0]
            if waiter.future.done():  # its caller gave up before we started: nothing to log
                self._queue.popleft()
                DECISION_QUEUE.dec(len(waiter.items))
                continue
            if batch and size + len(waiter.items) > self._max_batch:
                break
            self._queue.popleft()
            DECISION_QUEUE.dec(len(waiter.items))
            batch.append(waiter)
            size += len(waiter.items)
        return batch

    async def _write(self, batch: list[_Waiter]) -> None:
        size = sum(len(waiter.items) for waiter in batch)
        started = asyncio.get_running_loop().time()
        try:
            await self._commit(batch)
        except Exception as exc:
            self.failed_batches += 1
            BATCHES.labels(outcome="failed").inc()
            if _NO_PARTITION in str(exc):
                # The database is up, the log has no room: an operator's job did not run.
                log.error(
                    "decision log: no partition for the next decisions; run `mayhold "
                    "decisions partitions` (the service's partition job may be failing)",
                    decisions=size,
                    error=repr(exc)[:300],
                )
                self._fail(batch, _NO_ROOM)
                return
            log.warning("decision log: batch not logged", decisions=size, error=repr(exc)[:300])
            self._fail(batch, _UNAVAILABLE)
            return
        except BaseException:  # cancelled (stop timed out) or interpreter exit
            self._fail(batch, "The service is shutting down: nothing was decided.")
            raise
        self.committed_batches += 1
        self.committed_decisions += size
        BATCHES.labels(outcome="committed").inc()
        BATCH_SIZE.observe(size)
        COMMIT_SECONDS.observe(asyncio.get_running_loop().time() - started)

    async def _commit(self, waiters: list[_Waiter]) -> None:
        # The log's own transaction, not a request's (see the module docstring).
        batch = _Batch(waiters)
        appended = await self._store.append(batch)
        # Durable now: only from here on is anything returned as decided.
        for waiter, decisions in zip(waiters, batch.results(appended.decided_text), strict=True):
            if not waiter.future.done():
                waiter.future.set_result(decisions)

    def _fail(self, batch: Sequence[_Waiter], detail: str) -> None:
        for waiter in batch:
            if not waiter.future.done():
                waiter.future.set_exception(DatabaseUnavailable(detail))

    def _fail_queued(self, detail: str) -> None:
        while self._queue:
            waiter = self._queue.popleft()
            DECISION_QUEUE.dec(len(waiter.items))
            self._fail([waiter], detail)


async def get_decision_log(request: Request) -> DecisionLog:
    decision_log: DecisionLog = request.app.state.decision_log
    return decision_log


DecisionLogDep = Annotated[DecisionLog, Depends(get_decision_log)]
