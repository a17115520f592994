"""Replicas: several server processes on one Postgres database extend one decision chain.

Postgres only: SQLite is one writer by design (one file, one process serving it), so replicas
are a Postgres deployment. Each process's decision-log writer appends through the database's
sequencer (app.decisions.stores): the chain lock, the head and the hashing are in Postgres.
Afterwards the chain must verify and every decision a client received must be in the log, also
when one of the processes was SIGKILLed mid-traffic.
"""

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.kit.db import Database
from app.kit.settings import Settings
from tests.support.databases import scratch_database
from tests.support.processes import answering, serve
from tests.test_durability import ISINS, prepare


async def auditor_key(url: str) -> str:
    database = Database.from_settings(Settings(database_url=url))
    try:
        async with database.sessionmaker() as session, session.begin():
            issued = await auth_service.create_key(
                session, name="auditor", scopes=frozenset({Scope.decisions_read})
            )
    finally:
        await database.dispose()
    return issued.key


async def ready(client: httpx.AsyncClient) -> None:
    await answering(client, "/readyz", seconds=60)


class Traders:
    """Client tasks checking against one server until stopped; every decision id received with
    a 200, the statuses and problem types of the others, and how many requests the server
    dropped (a killed process)."""

    def __init__(self, client: httpx.AsyncClient, count: int) -> None:
        self.received: list[str] = []
        self.dropped = 0
        self.statuses: dict[int, int] = {}
        self.problems: set[str] = set()
        self._client = client
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._trade(n)) for n in range(count)]

    async def _trade(self, n: int) -> None:
        i = n
        while not self._stop.is_set():
            try:
                response = await self._client.get(
                    "/v1/check", params={"policy": "rpf", "instrument": ISINS[i % len(ISINS)]}
                )
            except httpx.TransportError:
                self.dropped += 1  # the process died under this request: allowed
                await asyncio.sleep(0.01)
                continue
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            if response.status_code != 200:
                self.problems.add(response.json().get("type", "").rsplit("/", 1)[-1])
            else:
                self.received.append(response.json()["decision_id"])
            i += 1

    async def until(self, received: int, *, at_least: float, at_most: float = 60) -> None:
        """Trade for ``at_least`` seconds and until ``received`` decisions came back (a busy
        machine answers slowly at first: every worker compiles its index), at most
        ``at_most`` seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(int(at_most * 10)):
            elapsed = loop.time() - started
            if elapsed >= at_most or (elapsed >= at_least and len(self.received) >= received):
                return
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def assert_answered(self) -> None:
        """Every check answered 200: the writers wait for each other in the database's
        sequencer, and none ever gives up on the chain."""
        assert set(self.statuses) == {200}, (self.statuses, self.problems)


async def assert_logged(url: str, port: int, received: list[str]) -> dict[str, Any]:
    """The chain verifies and every received decision is in it (through a live server)."""
    key = await auditor_key(url)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as client:
        verification = (await client.get("/v1/decisions/verify")).json()
        assert verification["ok"] is True, verification
        assert verification["checked"] >= len(received)
        missing = [
            decision_id
            for decision_id in received
            if (await client.get(f"/v1/decisions/{decision_id}")).status_code != 200
        ]
    assert not missing, f"{len(missing)} of {len(received)} received decisions are not logged"
    result: dict[str, Any] = verification
    return result


def client_for(port: int, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
async def test_workers_extend_one_chain_under_concurrent_checks(
    tmp_path: Path, workers: int
) -> None:
    async with scratch_database("postgresql", tmp_path) as url:
        key = await prepare(url)
        server, port = serve(url, workers=workers)
        try:
            async with client_for(port, key) as client:
                await ready(client)
                traders = Traders(client, count=4 * workers)
                await traders.until(200, at_least=3)
                await traders.stop()
            traders.assert_answered()
            assert traders.dropped == 0
            assert len(traders.received) > 50, "too few decisions to mean anything"
            assert len(set(traders.received)) == len(traders.received)
            await assert_logged(url, port, traders.received)
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.mark.slow
async def test_no_received_decision_is_lost_when_one_of_two_servers_is_killed(
    tmp_path: Path,
) -> None:
    async with scratch_database("postgresql", tmp_path) as url:
        key = await prepare(url)
        # Migrated already: both start straight away and race only on the chain.
        doomed, doomed_port = serve(url)
        survivor, survivor_port = serve(url)
        try:
            async with (
                client_for(doomed_port, key) as to_doomed,
                client_for(survivor_port, key) as to_survivor,
            ):
                await asyncio.gather(ready(to_doomed), ready(to_survivor))
                on_doomed = Traders(to_doomed, count=6)
                on_survivor = Traders(to_survivor, count=6)
                await on_doomed.until(50, at_least=2)
                await on_survivor.until(50, at_least=0)
                os.kill(doomed.pid, signal.SIGKILL)  # no shutdown, no flush
                doomed.wait(timeout=10)
                before = len(on_survivor.received)
                await on_survivor.until(before + 50, at_least=1.5)  # it goes on alone
                await on_doomed.stop()
                await on_survivor.stop()
            assert on_doomed.dropped > 0, "the kill should have cut some requests"
            assert len(on_doomed.received) > 20
            assert len(on_survivor.received) > before + 20, "the survivor stalled"
            assert on_survivor.dropped == 0
            on_survivor.assert_answered()
            received = on_doomed.received + on_survivor.received
            assert len(set(received)) == len(received)
            await assert_logged(url, survivor_port, received)
        finally:
            for process in (doomed, survivor):
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)
