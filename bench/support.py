"""What the benchmarks share: a scratch Postgres database holding a generated demo universe."""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.demo import load_demo
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from tests.support.databases import scratch_database


def rss_mb() -> float:
    """Peak resident memory of this process so far (a high-water mark), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@asynccontextmanager
async def demo_postgres(
    companies: int, extra_bonds: int = 0
) -> AsyncIterator[tuple[str, Database]]:
    """A fresh, migrated Postgres database with ``companies`` demo companies (each with
    ``extra_bonds`` more bonds) loaded through the real loaders and the shipped policies
    approved; dropped afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database("postgresql", Path(tmp)) as url:
            settings = Settings(database_url=url, log_level="WARNING")
            await upgrade_to_head_async(settings)
            database = Database.from_settings(settings)
            try:
                started = time.perf_counter()
                async with database.sessionmaker() as session, session.begin():
                    await load_demo(session, companies, extra_bonds=extra_bonds)
                print(f"loaded {companies:,} companies in {time.perf_counter() - started:.1f} s")
                yield url, database
            finally:
                await database.dispose()
