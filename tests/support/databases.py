"""Real, throwaway databases for tests: a Postgres database or a SQLite file per use."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

DIALECTS = ("postgresql", "sqlite")

# Where the test suite may create and drop databases; scripts/test.sh sets it when it had to
# start a throwaway cluster.
POSTGRES_ADMIN_URL = os.environ.get(
    "MAYHOLD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def scratch_database(dialect: str, directory: Path) -> AsyncIterator[str]:
    """Yield the URL of a new, empty database; drop it afterwards."""
    if dialect == "sqlite":
        path = directory / f"mayhold-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"mayhold_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(POSTGRES_ADMIN_URL).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
