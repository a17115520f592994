"""Engines and session factories, without the web framework.

``app.kit.db`` adds the request side (the one-transaction-per-request dependency). This half is
what the command line and the migrations need: ``mayhold ingest`` does not import FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app.kit.settings import Settings

# Execution option marking a connection's work as read-only (see the SQLite begin hook).
READ_ONLY_OPTION = "mayhold_read_only"


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN, so SAVEPOINTs behave as on Postgres.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A transaction that may write takes the write lock up front (IMMEDIATE): two writers
        # queue instead of failing on a read-to-write lock upgrade. Read-only work begins
        # DEFERRED and, under WAL, never waits for a writer.
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            # No transaction at all (e.g. a migration's autocommit block, where a PRAGMA such
            # as foreign_keys takes effect only outside a transaction).
            return
        read_only = options.get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_engine(
    url: str, *, settings: Settings | None = None, pooled: bool = True
) -> AsyncEngine:
    settings = settings or Settings(database_url=url)
    backend = make_url(url).get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "postgresql":
        kwargs["connect_args"] = {"timeout": settings.database_connect_timeout}
        if pooled:
            kwargs.update(
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_pool_size,
                pool_pre_ping=True,
            )
    if not pooled:
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    if backend == "sqlite":
        _install_sqlite_pragmas(engine)
    return engine


@dataclass
class Database:
    """The engine and the session factories of one running app (tests swap the factories)."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Sessions for read-only requests: ``READ_ONLY_OPTION`` set on their connections, which
    # they take only when they first touch the database (a check answered from the compiled
    # index never does). Default: ``sessionmaker``.
    read_only_sessionmaker: async_sessionmaker[AsyncSession] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_engine(settings.database_url, settings=settings)
        return cls(
            engine=engine,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
            read_only_sessionmaker=async_sessionmaker(
                engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
            ),
        )

    async def dispose(self) -> None:
        await self.engine.dispose()
