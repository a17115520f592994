"""Decisions for auditors over HTTP: a stored decision as returned, and the chain's verification
(clean, tampered, deleted), and the append-only triggers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.decisions import service
from app.decisions.chain import chain_hash
from app.decisions.log import DecisionLog
from app.decisions.repository import DecisionRepository
from app.kit.canonical import parse_rfc3339, rfc3339
from app.kit.db import Database
from app.kit.errors import Conflict, NotFound
from app.kit.settings import Settings
from app.main import create_app
from tests.conftest import MakeKey, bearer
from tests.support.databases import DIALECTS
from tests.support.decisions import ORACLE, entry, migrated_database
from tests.support.problems import assert_problem


def decision_log(app: FastAPI) -> DecisionLog:
    log: DecisionLog = app.state.decision_log
    return log


@pytest.fixture
async def auditor(make_key: MakeKey) -> dict[str, str]:
    return bearer(await make_key(Scope.decisions_read, name="auditor"))


async def test_get_returns_the_decision_exactly_as_returned_with_its_audit_record(
    app: FastAPI, client: httpx.AsyncClient, auditor: dict[str, str]
) -> None:
    first, second = await decision_log(app).append([entry(1), entry(2, verdict="watch")])

    response = await client.get(f"/v1/decisions/{second['decision_id']}", headers=auditor)
    assert response.status_code == 200, response.text
    body = response.json()
    audit = body.pop("audit")
    assert body == second  # the payload, exactly
    assert list(body) == sorted(body)  # rendered from the stored canonical text
    assert audit["requested_by"] == ORACLE.name
    assert audit["requested_by_key_id"] == str(ORACLE.key_id)
    assert audit["request_id"] == "req-1"
    assert audit["request"] == {"policy": "rpf", "instrument": "NL0000000020", "as_of": None}

    first_audit = (
        await client.get(f"/v1/decisions/{first['decision_id']}", headers=auditor)
    ).json()["audit"]
    assert audit["seq"] == first_audit["seq"] + 1
    assert audit["prev_hash"] == first_audit["hash"]
    assert len(audit["hash"]) == 64


async def test_get_unknown_malformed_and_unauthorized(
    client: httpx.AsyncClient, auditor: dict[str, str], make_key: MakeKey
) -> None:
    missing = uuid.uuid4()
    body = assert_problem(await client.get(f"/v1/decisions/{missing}", headers=auditor), 404)
    assert str(missing) in str(body["detail"])
    assert_problem(await client.get("/v1/decisions/not-a-uuid", headers=auditor), 422)
    assert_problem(await client.get(f"/v1/decisions/{missing}"), 401)
    checker = bearer(await make_key(Scope.check, name="oms"))
    body = assert_problem(await client.get(f"/v1/decisions/{missing}", headers=checker), 403)
    assert "decisions:read" in str(body["detail"])
    assert_problem(await client.get("/v1/decisions/verify", headers=checker), 403)


async def test_verify_a_clean_log_and_a_time_range(
    app: FastAPI, client: httpx.AsyncClient, auditor: dict[str, str]
) -> None:
    empty = await client.get("/v1/decisions/verify", headers=auditor)
    assert empty.json() == {
        "checked": 0,
        "ok": True,
        "first_bad_id": None,
        "first_bad_seq": None,
        "problem": None,
        "from_seq": None,
        "to_seq": None,
        "last_hash": None,
        "checkpoint_seq": None,
        "checkpoints": [],
        "first_bad_checkpoint_seq": None,
        "checkpoint_problem": None,
        "signatures_required": False,
    }
    log = decision_log(app)
    batches = []
    for n in range(3):  # three commits, three decided_at values
        batches.append(await log.append([entry(n * 10 + i) for i in range(4)]))
        await asyncio.sleep(0.002)

    whole = (await client.get("/v1/decisions/verify", headers=auditor)).json()
    assert whole["ok"] is True
    assert whole["checked"] == 12
    assert whole["first_bad_id"] is None

    second_at = batches[1][0]["decided_at"]
    third_at = batches[2][0]["decided_at"]
    middle = await client.get(
        "/v1/decisions/verify", params={"from": second_at, "to": third_at}, headers=auditor
    )
    assert middle.status_code == 200, middle.text
    body = middle.json()
    # only the second batch, linked to the decision before it
    assert (body["ok"], body["checked"], body["from_seq"], body["to_seq"]) == (True, 4, 5, 8)
    last = await client.get("/v1/decisions/verify", params={"from": third_at}, headers=auditor)
    assert (last.json()["checked"], last.json()["last_hash"]) == (4, whole["last_hash"])
    later = rfc3339(parse_rfc3339(third_at) + dt.timedelta(seconds=1))
    assert (
        await client.get("/v1/decisions/verify", params={"from": later}, headers=auditor)
    ).json()["checked"] == 0


async def test_verify_refuses_bad_ranges(
    client: httpx.AsyncClient, auditor: dict[str, str]
) -> None:
    url = "/v1/decisions/verify"
    params = {"from": "2026-11-22T10:00:00Z", "to": "2026-11-22T09:00:00Z"}
    assert_problem(await client.get(url, params=params, headers=auditor), 422)
    naive = {"from": "2026-11-22T10:00:00"}  # which zone? never guessed
    assert_problem(await client.get(url, params=naive, headers=auditor), 422)
    typo = {"form": "2026-11-22T10:00:00Z"}
    body = assert_problem(await client.get(url, params=typo, headers=auditor), 422)
    assert "form" in str(body["errors"])


async def test_update_delete_and_truncate_are_refused(
    app: FastAPI, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    await decision_log(app).append([entry(1)])
    statements = [
        "UPDATE decisions SET verdict = 'allowed', may_hold = true",
        "UPDATE decisions SET payload = payload || ' '",
        "DELETE FROM decisions",
    ]
    if connection.dialect.name == "postgresql":
        statements.append("TRUNCATE decisions")
    for statement in statements:
        with pytest.raises(DBAPIError) as refused:
            async with connection.begin_nested():
                await connection.execute(text(statement))
        assert "append-only" in str(refused.value), statement
    verdicts = (await connection.execute(text("SELECT verdict FROM decisions"))).scalars().all()
    assert verdicts == ["excluded"]


async def test_reading_routes_do_not_take_sqlite_write_lock(tmp_path: Path) -> None:
    """/v1/decisions/* begin DEFERRED: a long verify never stalls the decision writer."""
    async with migrated_database("sqlite", tmp_path) as (url, database):
        async with database.sessionmaker() as session, session.begin():
            issued = await auth_service.create_key(
                session, name="auditor", scopes=frozenset({Scope.decisions_read})
            )
        begins: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("BEGIN"):
                begins.append(statement)

        event.listen(database.engine.sync_engine, "before_cursor_execute", record)
        # (no index watcher, no key cache: this test counts the BEGINs of the routes alone)
        app = create_app(
            Settings(database_url=url, index_enabled=False, auth_cache_seconds=0), database
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client,
        ):
            await decision_log(app).append([entry(1)])  # the writer: BEGIN IMMEDIATE
            response = await client.get("/v1/decisions/verify", headers=bearer(issued.key))
            assert response.json()["ok"] is True
            await client.get("/v1/whoami", headers=bearer(issued.key))
        # the writer; verify's authentication (a read-only session of its own, no key cache
        # here), verify itself; whoami's authentication: no request transaction takes the lock
        assert begins == ["BEGIN IMMEDIATE", "BEGIN", "BEGIN", "BEGIN"]


# -- tampering, in a database of the test's own ------------------------------------------------


@pytest.fixture(params=DIALECTS)
async def chain(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Database, list[dict[str, Any]], httpx.AsyncClient]]:
    """Ten committed decisions in a database of its own, and an auditor's client on it."""
    async with migrated_database(request.param, tmp_path) as (url, database):
        async with database.sessionmaker() as session, session.begin():
            issued = await auth_service.create_key(
                session, name="auditor", scopes=frozenset({Scope.decisions_read})
            )
        app = create_app(Settings(database_url=url), database)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://t",
                headers=bearer(issued.key),
            ) as client,
        ):
            decisions = []
            for n in range(5):
                decisions += await decision_log(app).append([entry(2 * n), entry(2 * n + 1)])
            yield database, decisions, client


async def tamper(database: Database, statement: str, **params: Any) -> None:
    """Change the log behind the triggers' back, as an attacker with DDL rights would."""
    async with database.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE decisions DISABLE TRIGGER USER"))
            await conn.execute(text(statement), params)
            await conn.execute(text("ALTER TABLE decisions ENABLE TRIGGER USER"))
            return
        triggers = (
            await conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'decisions'"
                )
            )
        ).all()
        assert len(triggers) == 2
        for name, _ in triggers:
            await conn.execute(text(f"DROP TRIGGER {name}"))
        await conn.execute(text(statement), params)
        for _, sql in triggers:
            await conn.execute(text(sql))


async def verify(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/decisions/verify", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_verify_names_an_altered_payload(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    database, decisions, client = chain
    assert (await verify(client))["ok"] is True
    victim = decisions[3]["decision_id"]
    await tamper(
        database,
        "UPDATE decisions SET payload = replace(payload, '\"excluded\"', '\"allowed\"') "
        "WHERE seq = 4",
    )
    body = await verify(client)
    assert (body["ok"], body["first_bad_id"], body["first_bad_seq"]) == (False, victim, 4)
    assert body["checked"] == 4
    assert "altered" in body["problem"]
    # the client sees the forged payload, the auditor sees it is forged
    forged = (await client.get(f"/v1/decisions/{victim}")).json()
    assert forged["verdict"] == "allowed"
    # a range after the forged decision is still sound
    after = await verify(client, **{"from": decisions[4]["decided_at"]})
    assert (after["ok"], after["checked"], after["from_seq"]) == (True, 6, 5)


async def test_verify_names_a_query_column_changed_behind_the_payload(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    database, decisions, client = chain
    await tamper(database, "UPDATE decisions SET verdict = 'allowed' WHERE seq = 7")
    body = await verify(client)
    assert (body["ok"], body["first_bad_id"]) == (False, decisions[6]["decision_id"])
    assert "verdict" in body["problem"]


async def test_verify_names_the_decision_after_a_deleted_one(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    database, decisions, client = chain
    await tamper(database, "DELETE FROM decisions WHERE seq = 5")
    body = await verify(client)
    assert (body["ok"], body["first_bad_id"]) == (False, decisions[5]["decision_id"])
    assert "missing" in body["problem"]
    # a range starting right after the hole cannot link to its predecessor
    body = await verify(client, **{"from": decisions[5]["decided_at"]})
    assert (body["ok"], body["first_bad_id"]) == (False, decisions[5]["decision_id"])


async def test_verify_names_the_next_decision_when_a_forger_rehashes(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    """A forger who alters a decision and recomputes its hash still breaks the next link."""
    database, decisions, client = chain
    async with database.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM decisions WHERE seq = 2"))).one()
    forged = row.payload.replace('"excluded"', '"allowed"')
    assert forged != row.payload
    rehashed = chain_hash(
        row.prev_hash,
        seq=2,
        decision_id=str(uuid.UUID(str(row.decision_id))),
        requested_by=row.requested_by,
        requested_by_key_id=str(uuid.UUID(str(row.requested_by_key_id))),
        request_id=row.request_id,
        request=row.request,
        payload=forged,
    )
    await tamper(
        database,
        "UPDATE decisions SET payload = :payload, hash = :hash, verdict = 'allowed' WHERE seq = 2",
        payload=forged,
        hash=rehashed,
    )
    body = await verify(client)
    assert (body["ok"], body["first_bad_id"], body["first_bad_seq"]) == (
        False,
        decisions[2]["decision_id"],
        3,
    )
    assert "prev_hash" in body["problem"]


# -- checkpoints: archiving the oldest decisions without breaking verify -------------------------


async def checkpoint(database: Database, through_seq: int) -> None:
    async with database.sessionmaker() as session, session.begin():
        await service.record_checkpoint(
            session, through_seq, ORACLE, archive="s3://archive/decisions-0001.csv.zst"
        )


async def test_verify_links_the_first_live_decision_to_the_archived_ones_checkpoint(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    database, decisions, client = chain
    whole = await verify(client)
    await checkpoint(database, 4)
    # the partition holding decisions 1-4 is detached and archived: they leave the live table
    await tamper(database, "DELETE FROM decisions WHERE seq <= 4")

    body = await verify(client)
    assert (body["ok"], body["checked"], body["from_seq"], body["checkpoint_seq"]) == (
        True,
        6,
        5,
        4,
    )
    assert body["last_hash"] == whole["last_hash"]
    ranged = await verify(client, **{"from": decisions[4]["decided_at"]})
    assert (ranged["ok"], ranged["checkpoint_seq"]) == (True, 4)

    await checkpoint(database, 8)  # verified from the first checkpoint on
    with pytest.raises(Conflict, match="only move forward"):
        await checkpoint(database, 6)
    with pytest.raises(NotFound):
        await checkpoint(database, 11)

    # a hole that no checkpoint vouches for is still found
    await tamper(database, "DELETE FROM decisions WHERE seq = 9")
    body = await verify(client)
    assert (body["ok"], body["first_bad_seq"]) == (False, 10)


async def test_a_checkpoint_is_refused_over_a_broken_chain(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    database, decisions, _ = chain
    await tamper(database, "UPDATE decisions SET payload = payload || ' ' WHERE seq = 3")
    with pytest.raises(Conflict) as refused:
        await checkpoint(database, 5)
    assert f"decision 3 ({decisions[2]['decision_id']})" in refused.value.detail
    async with database.sessionmaker() as session:
        assert await DecisionRepository(session).latest_checkpoint() is None


async def test_a_chain_rewritten_through_a_checkpoint_is_named_there(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    """A forger who re-hashes every decision after the one they alter still cannot reproduce
    the recorded checkpoint (here: a checkpoint whose hash the live row does not have)."""
    database, decisions, client = chain
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO decision_checkpoints (seq, hash, decided_at, recorded_at, "
                "recorded_by) VALUES (7, :hash, :at, :at, 'ops')"
            ),
            {"hash": "f" * 64, "at": parse_rfc3339(decisions[6]["decided_at"])},
        )
    body = await verify(client)
    assert (body["ok"], body["first_bad_id"]) == (False, decisions[6]["decision_id"])
    assert "checkpoint" in body["problem"]


async def test_checkpoints_are_append_only(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    database, _, _ = chain
    await checkpoint(database, 2)
    statements = [
        "UPDATE decision_checkpoints SET hash = 'x'",
        "DELETE FROM decision_checkpoints",
    ]
    if database.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE decision_checkpoints")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.execute(text(statement))


async def test_checkpoint_from_the_command_line(
    chain: tuple[Database, list[dict[str, Any]], httpx.AsyncClient],
) -> None:
    database, _, client = chain
    url = database.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "MAYHOLD_DATABASE_URL": url, "MAYHOLD_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "app.cli", "decisions", "checkpoint", "--through-seq"]
    done = await asyncio.to_thread(
        subprocess.run, [*command, "6"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("checkpoint seq=6 hash=")
    again = await asyncio.to_thread(
        subprocess.run, [*command, "6"], env=env, capture_output=True, text=True, check=False
    )
    assert (again.returncode, "only move forward" in again.stderr) == (1, True)
    await tamper(database, "DELETE FROM decisions WHERE seq <= 6")
    assert (await verify(client))["checkpoint_seq"] == 6
