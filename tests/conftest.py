"""Shared fixtures.

Every database test runs twice, on Postgres and on SQLite: ``migrated_url`` is parametrized by
dialect and builds the schema by running the Alembic migrations. Each test then runs inside one
outer transaction that is rolled back afterwards; the app's sessions join it via SAVEPOINTs, so
the request's own commit logic runs for real and nothing leaks between tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.kit.db import Database, create_engine
from app.kit.logging import configure_logging
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.main import create_app
from tests.support.databases import DIALECTS, scratch_database

configure_logging("WARNING", "json")

MakeKey = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session", params=DIALECTS)
async def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    async with scratch_database(request.param, tmp_path_factory.mktemp("db")) as url:
        await upgrade_to_head_async(Settings(database_url=url))
        yield url


@pytest.fixture(scope="session")
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield conn
        if outer.is_active:
            await outer.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    # The compiled index polls on its own sessions; here every session shares the test's one
    # connection, so it is off (tests/test_index.py runs it on a database of its own).
    return Settings(database_url=migrated_url, index_enabled=False)


@pytest.fixture
def app(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> FastAPI:
    return create_app(settings, Database(engine=engine, sessionmaker=sessionmaker))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mayhold.test"
        ) as client,
    ):
        yield client


@pytest.fixture
def make_key(sessionmaker: async_sessionmaker[AsyncSession]) -> MakeKey:
    """Create an API key inside the test's transaction; returns the plain key."""
    counter = 0

    async def make(*scopes: Scope, name: str | None = None) -> str:
        nonlocal counter
        counter += 1
        async with sessionmaker() as session:
            issued = await auth_service.create_key(
                session, name=name or f"test-key-{counter}", scopes=frozenset(scopes)
            )
            await session.commit()
        return issued.key

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
async def steward(make_key: MakeKey) -> str:
    """A data steward's key (scope data:write)."""
    return await make_key(Scope.data_write, name="data-steward")
