"""Kill the server between request and response: no decision a client received may be missing.

A real server process (uvicorn) on a Postgres database of its own, checks in flight from
several clients, then SIGKILL: no shutdown, no flush. Every decision any client got back must
be in the decision log afterwards, with an intact hash chain.
"""

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.auth import service as auth_service
from app.auth.schemas import Actor
from app.auth.scopes import Scope
from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetKind
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.models import Decision
from app.policies import service as policy_service
from tests.support.databases import scratch_database
from tests.support.datasets import FIXTURES
from tests.support.policies import shipped_path
from tests.support.processes import answering, serve

ISINS = ["US7181721090", "GB0002875804", "GB00B1XZS820", "NL0000102317", "CNE1000003W8"]


async def prepare(url: str) -> str:
    settings = Settings(database_url=url)
    await upgrade_to_head_async(settings)
    database = Database.from_settings(settings)
    steward = Actor(name="steward", key_id=None)
    try:
        async with database.sessionmaker() as session, session.begin():
            for kind, name in (
                (DatasetKind.issuers, "issuers"),
                (DatasetKind.instruments, "instruments"),
            ):
                upload = datasets_service.spool_path(str(FIXTURES / f"{name}.csv"))
                await datasets_service.load_dataset(
                    session, steward, kind, upload, provider=None, as_of=None
                )
            created = await policy_service.load_policy_file(
                session, shipped_path("rpf").read_bytes(), "yaml", Actor("author", None)
            )
            await policy_service.approve(
                session, "rpf", created.version.version, Actor("committee", None)
            )
            issued = await auth_service.create_key(
                session, name="oms", scopes=frozenset({Scope.check})
            )
    finally:
        await database.dispose()
    return issued.key


@pytest.mark.slow
async def test_no_returned_decision_is_lost_when_the_server_is_killed(tmp_path: Path) -> None:
    async with scratch_database("postgresql", tmp_path) as url:
        key = await prepare(url)
        server, port = serve(url)
        received: list[str] = []
        failures = 0
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            ) as client:
                await answering(client, "/readyz")

                stop = asyncio.Event()

                async def trader(n: int) -> None:
                    nonlocal failures
                    i = n
                    while not stop.is_set():
                        try:
                            response = await client.get(
                                "/v1/check",
                                params={"policy": "rpf", "instrument": ISINS[i % len(ISINS)]},
                            )
                        except httpx.TransportError:
                            failures += 1  # the server died under this request: fine
                            await asyncio.sleep(0.01)
                            continue
                        if response.status_code == 200:
                            received.append(response.json()["decision_id"])
                        i += 1

                traders = [asyncio.create_task(trader(n)) for n in range(8)]
                await asyncio.sleep(1.5)
                os.kill(server.pid, signal.SIGKILL)  # no shutdown, no flush
                server.wait(timeout=10)
                await asyncio.sleep(0.3)
                stop.set()
                await asyncio.gather(*traders)
        finally:
            if server.poll() is None:
                server.kill()
        assert len(received) > 20, "too few decisions to mean anything"
        assert failures > 0, "the kill should have cut some requests"

        database = Database.from_settings(Settings(database_url=url))
        try:
            async with database.sessionmaker() as session:
                stored = {
                    str(d) for d in (await session.execute(select(Decision.decision_id))).scalars()
                }
        finally:
            await database.dispose()
        missing = set(received) - stored
        assert not missing, f"{len(missing)} returned decisions are not in the log"
        assert len(stored) >= len(received)  # logged-but-never-returned is allowed
