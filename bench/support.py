"""What the benchmarks share: a scratch Postgres database holding a generated demo universe."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy import select

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.datasets.schemas import DatasetKind
from app.demo import (
    PENSURA_GROUP_OTHERS,
    PENSURA_SPONSORS,
    PENSURA_TOTAL,
    load_demo,
    load_rows,
)
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.models import InstrumentRecord
from tests.support.databases import scratch_database
from tests.support.processes import answering, free_port, serve


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


async def admin_key(database: Database, name: str = "bench") -> str:
    async with database.sessionmaker() as session, session.begin():
        issued = await auth_service.create_key(session, name=name, scopes=frozenset({Scope.admin}))
    return issued.key


async def instruments(database: Database) -> list[tuple[str, str]]:
    """Every (isin, issuer_id) of the universe, by ISIN."""
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(InstrumentRecord.isin, InstrumentRecord.issuer_id).order_by(
                InstrumentRecord.isin
            )
        )
        return sorted({(isin, issuer) for isin, issuer in rows})


async def load_portfolio(
    database: Database,
    portfolio_id: str,
    policy: str,
    account: str,
    holdings: dict[str, int],
) -> None:
    """A portfolio and its position report (market values in EUR), through the real loaders."""
    async with database.sessionmaker() as session, session.begin():
        await load_rows(
            session,
            DatasetKind.portfolios,
            [
                {
                    "portfolio_id": portfolio_id,
                    "name": f"benchmark {portfolio_id}",
                    "policy": policy,
                    "account": account,
                    "base_currency": "EUR",
                }
            ],
            ["portfolio_id", "name", "policy", "account", "base_currency"],
            f"{portfolio_id}-portfolio.csv",
        )
    async with database.sessionmaker() as session, session.begin():
        await load_rows(
            session,
            DatasetKind.holdings,
            [
                {
                    "portfolio_id": portfolio_id,
                    "isin": isin,
                    "quantity": str(max(1, value // 100)),
                    "market_value": str(value),
                }
                for isin, value in holdings.items()
            ],
            ["portfolio_id", "isin", "quantity", "market_value"],
            f"{portfolio_id}-holdings.csv",
        )


def pensura_holdings(universe: list[tuple[str, str]], count: int) -> dict[str, int]:
    """``count`` holdings of 100,000,000 EUR in all: the demo's Pensura group bonds at 4.8%
    (sponsors) and 9.5% (group), the rest spread over other instruments of the universe."""
    held = {**PENSURA_SPONSORS, **PENSURA_GROUP_OTHERS}
    others = [isin for isin, _ in universe if isin not in held][: count - len(held)]
    assert len(others) == count - len(held), f"the universe has fewer than {count} instruments"
    rest = PENSURA_TOTAL - sum(held.values())
    share = rest // len(others)
    for isin in others:
        held[isin] = share
    held[others[-1]] += rest - share * len(others)
    return held


@asynccontextmanager
async def served(url: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """`mayhold serve` (uvicorn, one worker) on the database; a client once it answers."""
    process, port = serve(url)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=64),
            timeout=120,
        ) as client:
            await answering(client, process=process, seconds=60)
            yield client
    finally:
        process.terminate()
        process.wait(timeout=20)


def server_ms(response: httpx.Response) -> float:
    """The server's time for a response (its Server-Timing header), in ms."""
    assert response.status_code == 200, response.text[:500]
    duration = re.fullmatch(r"app;dur=([\d.]+)", response.headers["server-timing"])
    assert duration is not None, response.headers["server-timing"]
    return float(duration.group(1))


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def saturate(
    client: httpx.AsyncClient, send: Send, seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    """Closed loop: ``concurrency`` callers as fast as they can. (req/s, latencies in s)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await send(client)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:500]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def paced(
    client: httpx.AsyncClient, send: Send, rate: float, seconds: float
) -> tuple[list[float], list[float]]:
    """Open loop at a fixed rate (requests start on schedule whatever the latency): the round
    trips and the server times (Server-Timing), in ms."""
    latencies: list[float] = []
    server: list[float] = []
    interval = 1 / rate

    async def one() -> None:
        started = time.perf_counter()
        response = await send(client)
        latencies.append((time.perf_counter() - started) * 1000)
        server.append(server_ms(response))

    tasks = []
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    return latencies, server


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_checkout(root: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    """`mayhold serve` from the checkout at ``root`` (its code first on the path), one worker,
    on a free port, once it answers ``/healthz``; the process and its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "MAYHOLD_DATABASE_URL": url,
        "MAYHOLD_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"the server from {root} did not start")
