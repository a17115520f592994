"""Engines, sessions and the one-transaction-per-request rule.

The request's session is opened by ``get_db_session`` and committed there, once, after the
endpoint returns and *before* the response is sent (``scope="function"``): a client never sees a
result that is not durable. Services only ``flush``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# The engine half lives in app.kit.engine (no FastAPI there, for the command line); re-exported.
from app.kit.engine import READ_ONLY_OPTION as READ_ONLY_OPTION
from app.kit.engine import Database as Database
from app.kit.engine import create_engine as create_engine


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def read_only_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """Sessions for reading only, outside the request's own (authentication on a cache miss,
    a check that is not answered from the compiled index)."""
    return read_only_sessions_of(get_database(request))


def read_only_sessions_of(database: Database) -> async_sessionmaker[AsyncSession]:
    """``read_only_sessions`` of a database (the fast path has no ``Request``)."""
    return database.read_only_sessionmaker or database.sessionmaker


async def read_only_transaction(request: Request) -> None:
    """Route dependency: this route only reads, so its transaction never takes a write lock.

    Declare it in the route's (or router's) ``dependencies``, which FastAPI resolves before the
    endpoint's own: ``get_db_session`` then begins the request's transaction DEFERRED on SQLite
    (``READ_ONLY_OPTION``). Under WAL such a reader neither waits for nor blocks a writer: a
    long read (verifying the decision log) does not stall writes, and a request awaiting the
    decision log's writer does not hold the lock that writer needs. No effect on Postgres.
    """
    request.state.read_only_transaction = True


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    database = get_database(request)
    sessionmaker = database.sessionmaker
    if getattr(request.state, "read_only_transaction", False):
        sessionmaker = database.read_only_sessionmaker or sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


DbSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
