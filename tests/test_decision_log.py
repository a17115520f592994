"""The decision log's writer: durable before returned, group commit, one chain, recovery.

Tests on the transactional fixture (both dialects) drive the app's own log; tests that need
real commits, several "processes" or an outage have a database of their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.schemas import Actor
from app.decisions import service
from app.decisions.chain import GENESIS, DecisionEntryInvalid, chain_hash
from app.decisions.log import DecisionEntry, DecisionLog
from app.decisions.repository import CHAIN_LOCK_KEY
from app.decisions.stores import COPY_FROM, PostgresChainStore
from app.kit.canonical import canonical_json, parse_rfc3339, rfc3339
from app.kit.db import READ_ONLY_OPTION, Database
from app.kit.errors import DatabaseUnavailable
from app.kit.metrics import REGISTRY
from app.kit.settings import Settings
from app.kit.time import utcnow
from app.models import Decision
from tests.support.databases import DIALECTS, POSTGRES_ADMIN_URL
from tests.support.decisions import (
    ORACLE,
    entry,
    isin_for,
    migrated_database,
    payload,
    running_log,
    stored_seqs,
    uses_index,
)
from tests.support.tcp_proxy import TcpProxy


def decision_log(app: FastAPI) -> DecisionLog:
    log: DecisionLog = app.state.decision_log
    return log


async def rows(connection: AsyncConnection) -> list[Any]:
    result = await connection.execute(select(Decision.__table__).order_by(Decision.seq))
    return list(result.all())


async def test_append_returns_committed_decisions_with_ids_and_times(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    before = utcnow()
    decisions = await decision_log(app).append([entry(1), entry(2, verdict="allowed")])

    assert [d["instrument"]["isin"] for d in decisions] == ["NL0000000010", "NL0000000020"]
    for decision in decisions:
        assert uuid.UUID(decision["decision_id"]).version == 4
        assert decision["decided_at"].endswith("Z")
        assert before <= parse_rfc3339(decision["decided_at"]) <= utcnow()
        # JSON-ready: the Decimal evidence became its text
        assert decision["reasons"][0]["evidence"][0]["value"] == "50.1"
    assert decisions[1]["may_hold"] is True

    stored = await rows(connection)
    assert [row.seq for row in stored] == [1, 2]
    first, second = stored
    # stored byte for byte as returned, and chained
    assert first.payload == canonical_json(decisions[0])
    assert json.loads(second.payload) == decisions[1]
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert (first.isin, first.issuer_id, first.verdict, first.may_hold) == (
        "NL0000000010",
        "I0000001",
        "excluded",
        False,
    )
    assert (first.policy_key, first.policy_version, first.data_version) == ("rpf", 3, 42)
    assert (first.requested_by, first.requested_by_key_id, first.request_id) == (
        ORACLE.name,
        ORACLE.key_id,
        "req-1",
    )
    assert json.loads(first.request) == {
        "policy": "rpf",
        "instrument": "NL0000000010",
        "as_of": None,
    }


async def test_the_hash_is_the_documented_recipe(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    await decision_log(app).append([entry(1), entry(2)])
    prev = "0" * 64
    for row in await rows(connection):
        # An independent re-implementation of the README's recipe.
        header = json.dumps(
            {
                "seq": row.seq,
                "decision_id": str(row.decision_id),
                "requested_by": row.requested_by,
                "requested_by_key_id": str(row.requested_by_key_id),
                "request_id": row.request_id,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        covered = f"{prev}\n{header}\n{row.request}\n{row.payload}"
        assert row.prev_hash == prev
        assert row.hash == hashlib.sha256(covered.encode("utf-8")).hexdigest()
        prev = row.hash


async def test_two_hundred_concurrent_appends_share_few_commits(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    log = decision_log(app)
    batches_before = log.committed_batches
    results = await asyncio.gather(*(log.append([entry(n)]) for n in range(200)))

    assert all(len(decisions) == 1 for decisions in results)
    ids = {decisions[0]["decision_id"] for decisions in results}
    assert len(ids) == 200
    stored = await rows(connection)
    assert [row.seq for row in stored] == list(range(1, 201))  # gap-free
    assert {str(row.decision_id) for row in stored} == ids
    for previous, current in itertools.pairwise(stored):
        assert current.prev_hash == previous.hash
    # each caller got back what was stored for it
    by_id = {str(row.decision_id): row for row in stored}
    for decisions in results:
        assert by_id[decisions[0]["decision_id"]].payload == canonical_json(decisions[0])
    batches = log.committed_batches - batches_before
    assert 1 <= batches < 20, batches  # group commit: far fewer transactions than calls
    async with app.state.database.sessionmaker() as session:
        assert (await service.verify(session, None, None)).ok


async def test_decided_at_never_decreases_along_the_chain(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    log = decision_log(app)
    for n in range(5):
        await asyncio.gather(*(log.append([entry(n * 10 + i)]) for i in range(n + 1)))
    stored = await rows(connection)
    assert len(stored) == 15
    times = [row.decided_at for row in stored]
    assert times == sorted(times)


async def test_a_call_is_never_split_and_big_calls_go_alone(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection, sessionmaker: Any
) -> None:
    log = DecisionLog.on_sessions(sessionmaker, max_batch=5)
    await log.start()
    try:
        calls = [[entry(c * 100 + i) for i in range(size)] for c, size in enumerate((3, 3, 12, 1))]
        results = await asyncio.gather(*(log.append(call) for call in calls))
    finally:
        await log.stop()
    assert [len(r) for r in results] == [3, 3, 12, 1]
    stored = {str(row.decision_id): row for row in await rows(connection)}
    for decisions in results:
        seqs = [stored[d["decision_id"]].seq for d in decisions]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous, in order
        assert len({stored[d["decision_id"]].decided_at for d in decisions}) == 1  # one commit
    # 3 | 3 (3 + 3 > 5) | 12 alone | 1
    assert log.committed_batches == 4


async def test_a_bad_entry_fails_its_caller_only(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    log = decision_log(app)
    bad = DecisionEntry(
        payload={**payload(1), "decision_id": "mine"},
        request={},
        actor=ORACLE,
        request_id=None,
    )
    no_verdict = DecisionEntry(
        payload={k: v for k, v in payload(2).items() if k != "verdict"},
        request={},
        actor=ORACLE,
        request_id=None,
    )
    outcomes = await asyncio.gather(
        log.append([entry(0)]),
        log.append([bad]),
        log.append([no_verdict]),
        log.append([entry(3)]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], DecisionEntryInvalid)
    assert "decision_id" in str(outcomes[1])
    assert isinstance(outcomes[2], DecisionEntryInvalid)
    assert "verdict" in str(outcomes[2])
    assert [type(o) for o in (outcomes[0], outcomes[3])] == [list, list]
    assert len(await rows(connection)) == 2
    assert await log.append([]) == []


async def test_unknown_instrument_is_findable_by_the_isin_asked(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    unknown = {**payload(5, verdict="unknown"), "instrument": None, "issuer": None}
    await decision_log(app).append(
        [
            DecisionEntry(
                payload=unknown,
                request={"policy": "rpf", "instrument": "XS0000000009"},
                actor=Actor(name="cli:ops", key_id=None),
                request_id=None,
            ),
            DecisionEntry(
                payload=unknown,
                request={"policy": "rpf", "instrument": "not an isin at all"},
                actor=Actor(name="cli:ops", key_id=None),
                request_id=None,
            ),
        ]
    )
    stored = await rows(connection)
    assert [(row.isin, row.issuer_id, row.verdict) for row in stored] == [
        ("XS0000000009", None, "unknown"),
        (None, None, "unknown"),
    ]


async def test_a_cancelled_caller_does_not_disturb_the_writer(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    log = decision_log(app)
    doomed = asyncio.ensure_future(log.append([entry(1)]))
    await asyncio.sleep(0)  # queued, the writer not yet run
    doomed.cancel()  # the client went away before the writer took it
    with pytest.raises(asyncio.CancelledError):
        await doomed
    decisions = await log.append([entry(2)])
    assert len(decisions) == 1
    assert [row.isin for row in await rows(connection)] == ["NL0000000020"]


# -- real commits ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_stop_flushes_what_is_queued_and_refuses_more(dialect: str, tmp_path: Path) -> None:
    async with migrated_database(dialect, tmp_path) as (_, database):
        log = DecisionLog.on_sessions(database.sessionmaker)
        await log.start()
        pending = [asyncio.ensure_future(log.append([entry(n)])) for n in range(50)]
        await asyncio.sleep(0)  # they are queued
        await log.stop()
        results = await asyncio.gather(*pending)
        assert len({r[0]["decision_id"] for r in results}) == 50
        assert await stored_seqs(database) == list(range(1, 51))
        with pytest.raises(DatabaseUnavailable):
            await log.append([entry(99)])


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sqlite_reader_does_not_block_the_writer(dialect: str, tmp_path: Path) -> None:
    """A request holding a read-only transaction while it awaits the log (the check path)."""
    async with migrated_database(dialect, tmp_path) as (_, database), running_log(database) as log:
        async with database.sessionmaker() as session:
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            await session.execute(select(func.count()).select_from(Decision))  # reading
            decisions = await asyncio.wait_for(log.append([entry(1)]), timeout=5)
        assert len(decisions) == 1
        assert await stored_seqs(database) == [1]


async def alternating_callers(
    first: DecisionLog, second: DecisionLog
) -> list[list[dict[str, Any]]]:
    """400 concurrent calls of two decisions each, alternately on the two logs."""

    async def client(log: DecisionLog, n: int) -> list[dict[str, Any]]:
        await asyncio.sleep((n % 7) / 1000)
        return await log.append([entry(n), entry(n + 10_000)])

    return await asyncio.gather(*(client(first if n % 2 else second, n) for n in range(400)))


async def test_two_processes_extend_one_chain(tmp_path: Path) -> None:
    """Two service processes (two Databases, two logs) appending at once to one Postgres."""
    async with migrated_database("postgresql", tmp_path) as (url, first_db):
        second_db = Database.from_settings(Settings(database_url=url))
        commits = {"first": 0, "second": 0}

        def counter(name: str) -> Any:
            def on_commit(_conn: Any) -> None:
                commits[name] += 1

            return on_commit

        event.listen(first_db.engine.sync_engine, "commit", counter("first"))
        event.listen(second_db.engine.sync_engine, "commit", counter("second"))
        try:
            async with running_log(first_db) as first, running_log(second_db) as second:
                results = await alternating_callers(first, second)
            assert sum(len(r) for r in results) == 800
            assert await stored_seqs(first_db) == list(range(1, 801))
            async with first_db.sessionmaker() as session:
                verification = await service.verify(session, None, None)
            assert verification.ok, verification
            assert verification.checked == 800
            assert first.committed_batches > 0
            assert second.committed_batches > 0
            # every transaction counted by the engines is one of the logs' batches
            assert commits == {
                "first": first.committed_batches,
                "second": second.committed_batches,
            }
            assert first.committed_batches + second.committed_batches < 400
        finally:
            await second_db.dispose()


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[TcpProxy, Database, Database]]:
    """A migrated Postgres database reached through a proxy (switchable), and directly."""
    async with migrated_database("postgresql", tmp_path) as (url, direct):
        target = make_url(POSTGRES_ADMIN_URL)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
        await proxy.start()
        proxied_url = make_url(url).set(host="127.0.0.1", port=proxy.port)
        database = Database.from_settings(
            Settings(
                database_url=proxied_url.render_as_string(hide_password=False),
                database_connect_timeout=1.0,
            )
        )
        try:
            yield proxy, database, direct
        finally:
            await database.dispose()
            await proxy.stop()


@pytest.mark.parametrize("dedicated", [False, True], ids=["sessions", "own-connection"])
async def test_database_outage_fails_callers_and_the_chain_continues_after(
    proxied: tuple[TcpProxy, Database, Database], dedicated: bool
) -> None:
    proxy, database, direct = proxied
    async with running_log(database, dedicated=dedicated) as log:
        first = await log.append([entry(1), entry(2)])

        await proxy.stop()  # the database goes away, with a connection in the pool
        outcomes = await asyncio.gather(
            *(log.append([entry(n)]) for n in range(10, 20)), return_exceptions=True
        )
        assert all(isinstance(o, DatabaseUnavailable) for o in outcomes), outcomes
        assert log.failed_batches >= 1

        await proxy.start()  # back on the same port; the same writer recovers by itself
        after = await log.append([entry(3)])

    assert await stored_seqs(direct) == [1, 2, 3]  # nothing of the failed calls was logged
    async with direct.sessionmaker() as session:
        verification = await service.verify(session, None, None)
        rows_ = (await session.execute(select(Decision).order_by(Decision.seq))).scalars().all()
    assert verification.ok
    assert verification.checked == 3
    assert [str(r.decision_id) for r in rows_] == [
        first[0]["decision_id"],
        first[1]["decision_id"],
        after[0]["decision_id"],
    ]
    assert rows_[2].prev_hash == rows_[1].hash


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_index_serves_decisions_by_instrument_newest_first(
    dialect: str, tmp_path: Path
) -> None:
    """WHERE isin = ? AND seq < cursor ORDER BY seq DESC: an index range scan, no sort."""
    async with migrated_database(dialect, tmp_path) as (_, database):
        async with running_log(database) as log:
            await log.append([entry(n % 20) for n in range(400)])
        query = (
            "SELECT seq, payload FROM decisions WHERE isin = 'NL0000000070' AND seq < 300 "
            "ORDER BY seq DESC LIMIT 50"
        )
        async with database.engine.connect() as conn:
            if dialect == "postgresql":
                await conn.execute(text("ANALYZE decisions"))
                # A tiny table: make the planner show the plan it would use at 10M rows.
                await conn.execute(text("SET enable_seqscan = off"))
                await conn.execute(text("SET enable_bitmapscan = off"))
                plan = "\n".join(r[0] for r in await conn.execute(text(f"EXPLAIN {query}")))
                assert uses_index(plan, "ix_decisions_isin_decisions_seq"), plan
                assert "Sort" not in plan, plan
            else:
                plan = "\n".join(
                    str(r[-1]) for r in await conn.execute(text(f"EXPLAIN QUERY PLAN {query}"))
                )
                assert "ix_decisions_isin_decisions_seq" in plan, plan
                assert "TEMP B-TREE" not in plan, plan
            found = (await conn.execute(text(query))).all()
        assert [r.seq for r in found] == list(range(288, 0, -20))[:50]


async def test_own_connection_stores_of_two_processes_extend_one_chain(tmp_path: Path) -> None:
    """The service's Postgres store: the sequencer in the database reads the head under the
    chain lock, so two processes' writers extend one chain without reading each other's head,
    re-rendering or failing; the lock's waits are counted
    (mayhold_decision_log_chain_wait_seconds)."""
    async with migrated_database("postgresql", tmp_path) as (url, first_db):
        second_db = Database.from_settings(Settings(database_url=url))
        try:
            async with (
                running_log(first_db, dedicated=True) as first,
                running_log(second_db, dedicated=True) as second,
            ):
                waits = REGISTRY.get_sample_value("mayhold_decision_log_chain_wait_seconds_count")
                await first.append([entry(1)])
                await second.append([entry(2), entry(3)])  # the chain moves on to 3
                (late,) = await first.append([entry(4)])  # first's last write was seq 1
                waits_now = REGISTRY.get_sample_value(
                    "mayhold_decision_log_chain_wait_seconds_count"
                )
                assert waits is not None
                assert waits_now == waits + 3
                results = await alternating_callers(first, second)
            assert sum(len(r) for r in results) == 800
            assert await stored_seqs(first_db) == list(range(1, 805))
            async with first_db.sessionmaker() as session:
                verification = await service.verify(session, None, None)
                fourth = await session.get(Decision, 4)
            assert verification.ok, verification
            assert verification.checked == 804
            assert fourth is not None
            assert str(fourth.decision_id) == late["decision_id"]
            assert first.committed_batches + second.committed_batches < 403
        finally:
            await second_db.dispose()


async def test_the_sequencer_s_lock_is_the_chain_lock(tmp_path: Path) -> None:
    """The database's sequencer takes the same advisory lock as the session and COPY paths:
    otherwise they could fork the chain between them."""
    async with (
        migrated_database("postgresql", tmp_path) as (_, database),
        database.engine.connect() as conn,
    ):
        definition = (
            await conn.execute(
                text(
                    "SELECT pg_get_functiondef(p.oid) FROM pg_proc p "
                    "WHERE p.proname = 'mayhold_append_decisions'"
                )
            )
        ).scalar_one()
    assert f"pg_advisory_xact_lock({CHAIN_LOCK_KEY})" in definition


def tricky_entry(n: int) -> DecisionEntry:
    """Texts JSON escapes or UTF-8 encodes in several bytes, where the database's hashing and
    Python's must agree byte for byte."""
    body = payload(n)
    body["issuer"]["name"] = 'Ærø "Ltd" \\ back\\slash\ttab \u2028 \U0001f600 \u00e9'
    return DecisionEntry(
        payload=body,
        request={"policy": "rpf", "instrument": isin_for(n), "note": 'naïve "quoted" \n'},
        actor=Actor(name='desk "Zürich" \\ 東京', key_id=None),
        request_id=f"req-\u00e9-{n}",
    )


@pytest.mark.parametrize(
    ("head_time", "expected"),
    [
        ("2100-01-01T00:00:00+00:00", "2100-01-01T00:00:00Z"),  # a whole second: no fraction
        ("2100-01-01T00:00:00.000500+00:00", "2100-01-01T00:00:00.000500Z"),
    ],
)
async def test_the_sequencer_chains_and_times_exactly_as_python_does(
    tmp_path: Path, head_time: str, expected: str
) -> None:
    """A head decided in the future: the sequencer's decided_at is the head's (never earlier),
    rendered as app.kit.canonical.rfc3339 renders it; the hashes it computes are the recipe's
    (verify recomputes them in Python), for texts with escapes and multi-byte characters; the
    payload returned is the one stored, byte for byte."""
    async with migrated_database("postgresql", tmp_path) as (_, database):
        async with running_log(database) as on_sessions:
            (first,) = await on_sessions.append([tricky_entry(0)])
        # Move the head into the future (as a clock step back would leave it).
        future = parse_rfc3339(head_time)
        async with database.engine.begin() as conn:
            row = (await conn.execute(select(Decision.__table__))).one()
            await conn.execute(text("ALTER TABLE decisions DISABLE TRIGGER USER"))
            await conn.execute(text("DELETE FROM decisions"))
            await conn.execute(text("ALTER TABLE decisions ENABLE TRIGGER USER"))
            moved = first | {"decided_at": rfc3339(future)}
            stored = canonical_json(moved)
            values = row._asdict() | {"decided_at": future, "payload": stored}
            values["hash"] = chain_hash(
                GENESIS,
                seq=1,
                decision_id=str(row.decision_id),
                requested_by=row.requested_by,
                requested_by_key_id=None,
                request_id=row.request_id,
                request=row.request,
                payload=stored,
            )
            await conn.execute(insert(Decision).values(**values))
        async with running_log(database, dedicated=True) as log:
            decided = await log.append([tricky_entry(n) for n in range(1, 4)])
            large = await log.append([tricky_entry(n) for n in range(4, 4 + COPY_FROM)])
        assert {d["decided_at"] for d in decided} == {expected}
        assert {d["decided_at"] for d in large} == {expected}
        async with database.engine.connect() as conn:
            stored_rows = (
                await conn.execute(select(Decision.__table__).order_by(Decision.seq))
            ).all()
        assert [r.payload for r in stored_rows[1:]] == [
            canonical_json(d) for d in [*decided, *large]
        ]
        assert {r.decided_at for r in stored_rows} == {future}
        async with database.sessionmaker() as session:
            verification = await service.verify(session, None, None)
        assert verification.ok, verification
        assert verification.checked == 4 + COPY_FROM


async def test_session_and_sequencer_writers_share_one_chain(tmp_path: Path) -> None:
    """Writers on sessions (and the COPY path of large batches) take the sequencer's lock:
    all three appending at once on one Postgres database keep one chain."""
    async with migrated_database("postgresql", tmp_path) as (url, first_db):
        second_db = Database.from_settings(Settings(database_url=url))
        try:
            async with (
                running_log(first_db, dedicated=True) as sequencer,
                running_log(second_db) as on_sessions,
            ):
                large = [
                    sequencer.append([entry(n) for n in range(COPY_FROM + k)]) for k in range(3)
                ]
                results = await asyncio.gather(alternating_callers(sequencer, on_sessions), *large)
            small = results[0]
            total = sum(len(r) for r in small) + sum(COPY_FROM + k for k in range(3))
            assert await stored_seqs(first_db) == list(range(1, total + 1))
            async with first_db.sessionmaker() as session:
                verification = await service.verify(session, None, None)
            assert verification.ok, verification
            assert verification.checked == total
        finally:
            await second_db.dispose()


async def test_stop_gives_up_on_a_database_that_never_answers_own_connection() -> None:
    async def never_connects() -> Any:
        await asyncio.Event().wait()

    log = DecisionLog(PostgresChainStore(never_connects), stop_timeout=0.2)
    await log.start()
    in_flight = asyncio.ensure_future(log.append([entry(1)]))
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    await log.stop()
    assert asyncio.get_running_loop().time() - started < 2
    with pytest.raises(DatabaseUnavailable):
        await in_flight


class _HangingSession:
    """A session whose database never answers (a hung server, a lock never granted)."""

    async def connection(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


async def test_stop_gives_up_on_a_hung_database_and_fails_the_callers() -> None:
    log = DecisionLog.on_sessions(cast(Any, _HangingSession), stop_timeout=0.2)
    await log.start()
    in_flight = asyncio.ensure_future(log.append([entry(1)]))
    await asyncio.sleep(0.05)  # taken by the writer, which now waits for the database
    queued = asyncio.ensure_future(log.append([entry(2)]))
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await log.stop()
    assert asyncio.get_running_loop().time() - started < 2
    for call in (in_flight, queued):
        with pytest.raises(DatabaseUnavailable):
            await call
    assert log.committed_batches == 0
