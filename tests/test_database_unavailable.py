"""Database outages map to 503 ``database-unavailable`` with ``Retry-After``, never a 500
(issue 11, "Database restarting"); the one classification is ``database_unavailable``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.problems import database_unavailable
from app.kit.settings import Settings
from app.main import create_app
from tests.conftest import bearer
from tests.support.databases import POSTGRES_ADMIN_URL, scratch_database
from tests.support.problems import assert_problem


def _client(url: str) -> tuple[httpx.AsyncClient, Database]:
    settings = Settings(database_url=url, database_connect_timeout=1.0, index_enabled=False)
    database = Database.from_settings(settings)
    app = create_app(settings, database)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"), database


def _assert_unavailable(response: httpx.Response) -> None:
    body = assert_problem(response, 503)
    assert body["type"] == "urn:mayhold:problem:database-unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert "retry" in str(body["detail"])


async def test_an_unreachable_postgres_is_503_with_retry_after() -> None:
    url = make_url(POSTGRES_ADMIN_URL).set(host="127.0.0.1", port=1)
    client, database = _client(url.render_as_string(hide_password=False))
    async with client:
        key = bearer("mh_000000000000_secret")
        _assert_unavailable(await client.get("/v1/whoami", headers=key))
        _assert_unavailable(await client.get("/v1/check?policy=rpf&instrument=X", headers=key))
    await database.dispose()


async def test_terminated_connections_never_give_a_500(tmp_path: Path) -> None:
    """pg_terminate_backend (a restart, a failover) under the app's pooled connections."""
    async with scratch_database("postgresql", tmp_path) as url:
        await upgrade_to_head_async(Settings(database_url=url))
        client, database = _client(url)
        async with database.sessionmaker() as session, session.begin():
            issued = await auth_service.create_key(
                session, name="auditor", scopes=frozenset({Scope.decisions_read})
            )
        admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = make_url(url).database
        async with client:
            for _ in range(3):
                first = await client.get("/v1/decisions/verify", headers=bearer(issued.key))
                assert first.status_code == 200, first.text
                async with admin.connect() as conn:
                    terminated = await conn.scalar(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    )
                assert terminated
                after = await client.get("/v1/decisions/verify", headers=bearer(issued.key))
                # The pool notices the dead connections (pre-ping) and reconnects; were the
                # database still down, the answer would be the 503, never a 500.
                assert after.status_code in {200, 503}, after.text
                if after.status_code == 503:
                    _assert_unavailable(after)
        await admin.dispose()
        await database.dispose()


def _wrapped(orig: BaseException, kind: type[DBAPIError] = DBAPIError) -> DBAPIError:
    return kind("SELECT 1", None, orig)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        _wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")),
        _wrapped(asyncpg.exceptions.CannotConnectNowError("starting up")),
        _wrapped(asyncpg.exceptions.TooManyConnectionsError("too many clients")),
        _wrapped(asyncpg.exceptions.CrashShutdownError("crash")),
        _wrapped(sqlite3.OperationalError("database is locked"), OperationalError),
        PoolTimeout("QueuePool limit of size 10 overflow 0 reached"),
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        OSError(101, "Network is unreachable"),
    ],
    ids=repr,
)
def test_every_not_available_now_error_is_unavailable(error: BaseException) -> None:
    assert database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key"), IntegrityError),
        _wrapped(asyncpg.exceptions.UndefinedTableError("no such table"), ProgrammingError),
        _wrapped(asyncpg.exceptions.DataError("value out of range")),
        FileNotFoundError(2, "No such file or directory"),
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_bugs_are_not_outages(error: BaseException) -> None:
    assert not database_unavailable(error)
