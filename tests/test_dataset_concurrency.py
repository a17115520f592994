"""Two loads at once: neither interleaves with the other, neither deadlocks.

Real commits on a database of its own (not the rolled-back test transaction), two sessions
running concurrently through the service, exactly as two requests would.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.auth.schemas import Actor
from app.datasets import service
from app.datasets.schemas import DatasetKind
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.models import IssuerRecord
from tests.support.databases import DIALECTS, scratch_database


def issuers_file(prefix: str, count: int) -> bytes:
    rows = "".join(f"{prefix}{i},{prefix} Company {i},company,NL\n" for i in range(count))
    return ("issuer_id,name,kind,country\n" + rows).encode()


async def load(database: Database, content: bytes, name: str) -> tuple[int, bool]:
    async def chunks() -> AsyncIterator[bytes]:
        yield content

    upload = await service.spool(chunks(), name)
    async with database.sessionmaker() as session, session.begin():
        dataset, created = await service.load_dataset(
            session,
            Actor(name=name, key_id=None),
            DatasetKind.issuers,
            upload,
            provider=None,
            as_of=None,
        )
        return dataset.id, created


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_concurrent_loads_serialize(dialect: str, tmp_path: Path) -> None:
    async with scratch_database(dialect, tmp_path) as url:
        await upgrade_to_head_async(Settings(database_url=url))
        database = Database.from_settings(Settings(database_url=url))
        try:
            results = await asyncio.wait_for(
                asyncio.gather(
                    load(database, issuers_file("A", 3000), "loader-a"),
                    load(database, issuers_file("B", 3000), "loader-b"),
                    load(database, issuers_file("A", 3000), "loader-a-again"),
                ),
                timeout=120,
            )
            ids = sorted({dataset_id for dataset_id, _ in results})
            assert len(ids) == 2  # the repeated file is the same dataset, not a third
            assert sorted(created for _, created in results) == [False, True, True]
            async with database.sessionmaker() as session:
                for dataset_id in ids:
                    issuer_ids = (
                        (
                            await session.execute(
                                select(IssuerRecord.issuer_id).where(
                                    IssuerRecord.dataset_id == dataset_id
                                )
                            )
                        )
                        .scalars()
                        .all()
                    )
                    # each dataset holds exactly its own file's rows, nothing of the other
                    assert len(issuer_ids) == 3000
                    assert len({issuer_id[0] for issuer_id in issuer_ids}) == 1
        finally:
            await database.dispose()
