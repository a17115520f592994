"""A generated demo universe in a database of its own, and the app running on it with its
lifespan (the compiled index and its watcher run as in production)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.demo import load_demo
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.main import create_app
from app.models import InstrumentRecord
from tests.support.databases import scratch_database


@asynccontextmanager
async def demo_database(dialect: str, directory: Path) -> AsyncIterator[tuple[str, str, list[str]]]:
    async with scratch_database(dialect, directory) as url:
        settings = Settings(database_url=url)
        await upgrade_to_head_async(settings)
        database = Database.from_settings(settings)
        async with database.sessionmaker() as session, session.begin():
            await load_demo(session)
            issued = await auth_service.create_key(
                session, name="index-test", scopes=frozenset({Scope.admin})
            )
            isins = sorted((await session.execute(select(InstrumentRecord.isin))).scalars())
        await database.dispose()
        yield url, issued.key, isins


@asynccontextmanager
async def running(url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(Settings(database_url=url, index_poll_seconds=0.1))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield app, client
