"""Benchmark: pre-trade checks over HTTP against the real server, with decision logging on.

Loads `mayhold demo`'s policies and a generated universe (--companies) into a fresh Postgres
database, serves it with uvicorn (one worker) in a subprocess, and measures in the same run:
  1. a trivial endpoint of the same app (GET /healthz): the baseline throughput;
  2. GET /v1/check (one instrument, logged): throughput as a ratio of the baseline;
  3. p50/p99 latency of single checks paced at half that throughput;
  4. POST /v1/checks with 10,000 instruments (the universe's ISINs, repeated if it has fewer):
     the round trip on loopback, an upper bound of the server time.
1-3 use wrk when installed (its figures are the server's), and the Python client too.

Usage: .venv/bin/python bench/checks.py [--seconds 10] [--concurrency 16] [--companies 8000]
Targets (issue 5): single check >= 70% of the trivial endpoint's throughput; p99 < 10 ms at
half that load; a 10,000-instrument batch under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.demo import load_demo
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.models import InstrumentRecord
from tests.support.databases import scratch_database
from tests.support.processes import serve


async def prepare(url: str, companies: int) -> tuple[str, list[str]]:
    settings = Settings(database_url=url)
    await upgrade_to_head_async(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session, session.begin():
            await load_demo(session, companies=companies)
            issued = await auth_service.create_key(
                session, name="bench", scopes=frozenset({Scope.admin})
            )
            isins = list((await session.execute(select(InstrumentRecord.isin))).scalars())
    finally:
        await database.dispose()
    return issued.key, isins


async def saturate(
    client: httpx.AsyncClient, make: list[str], seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    """Closed loop: `concurrency` clients as fast as they can. Returns (req/s, latencies)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    rng = random.Random(7)

    async def worker() -> None:
        while time.perf_counter() < deadline:
            url = rng.choice(make)
            started = time.perf_counter()
            response = await client.get(url)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def paced(
    client: httpx.AsyncClient, make: list[str], rate: float, seconds: float
) -> list[float]:
    """Open loop at a fixed rate (requests start on schedule, whatever the latency)."""
    latencies: list[float] = []
    rng = random.Random(11)
    interval = 1 / rate
    tasks = []

    async def one(url: str) -> None:
        started = time.perf_counter()
        response = await client.get(url)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200

    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(rng.choice(make))))
    await asyncio.gather(*tasks)
    return latencies


@dataclass(frozen=True)
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0  # responses that were not 2xx (counted only with allow_errors)
    requests: int = 0


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    base: str,
    key: str,
    paths: list[str],
    seconds: float,
    connections: int,
    *,
    rate: float | None = None,
    allow_errors: bool = False,
) -> WrkRun | None:
    """Throughput and latency measured by wrk (a native load generator), if installed.

    The Python client costs about as much CPU per request as the server on this 2-core
    machine; wrk does not, so its figures are the server's. (`apt-get install wrk`.)
    ``rate``: pace the load at about that many requests/s in all (each connection waits
    connections/rate between requests) instead of saturating the server.
    """
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        quoted = ",".join(f'"{p}"' for p in paths)
        script.write(
            f"local paths = {{{quoted}}}\n"
            "request = function()\n"
            "  return wrk.format('GET', paths[math.random(#paths)],"
            f" {{['Authorization'] = 'Bearer {key}'}})\n"
            "end\n"
        )
        if rate is not None:
            script.write(f"delay = function() return {1000 * connections / rate:.3f} end\n")
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    result = subprocess.run(
        [*command, "-s", script.name, base],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(script.name).unlink()
    out = result.stdout
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    assert allow_errors or errors is None, out
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    if not (rps and p50 and p99):
        return None
    return WrkRun(
        float(rps.group(1)),
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        int(errors.group(1)) if errors else 0,
        int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def batch_times(
    client: httpx.AsyncClient, isins: list[str], size: int
) -> tuple[list[float], list[float]]:
    """Round trips and server times (the Server-Timing header) of five batches, in seconds."""
    batch = (isins * (size // len(isins) + 1))[:size]
    timings, server = [], []
    for _ in range(5):
        started = time.perf_counter()
        response = await client.post("/v1/checks", json={"policy": "rpf", "instruments": batch})
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        assert len(response.json()["decisions"]) == size
        duration = re.fullmatch(r"app;dur=([\d.]+)", response.headers["server-timing"])
        assert duration is not None, response.headers["server-timing"]
        server.append(float(duration.group(1)) / 1000)
    return timings, server


async def main(seconds: float, concurrency: int, companies: int, batch_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database("postgresql", Path(tmp)) as url:
            key, isins = await prepare(url, companies)
            server, port = serve(url)
            try:
                limits = httpx.Limits(max_connections=concurrency * 2)
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {key}"},
                    limits=limits,
                    timeout=60,
                ) as client:
                    for _ in range(300):
                        try:
                            if (await client.get("/healthz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            await asyncio.sleep(0.1)
                    checks = [f"/v1/check?policy=rpf&instrument={i}" for i in isins[:2000]]
                    # Warm up: the first checks build the compiled index in the background.
                    await saturate(client, checks, 3, concurrency)
                    base = f"http://127.0.0.1:{port}"
                    wrk_base = wrk(base, key, ["/healthz"], seconds, concurrency)
                    wrk_check = wrk(base, key, checks, seconds, concurrency)
                    wrk_half = (
                        wrk(base, key, checks, seconds, 8, rate=wrk_check.rps / 2)
                        if wrk_check
                        else None
                    )
                    base_rps, _ = await saturate(client, ["/healthz"], seconds, concurrency)
                    check_rps, check_lat = await saturate(client, checks, seconds, concurrency)
                    half = await paced(client, checks, check_rps / 2, seconds)
                    timings, server_times = await batch_times(client, isins, batch_size)
            finally:
                server.terminate()
                server.wait(timeout=20)
    print(f"instruments in the universe: {len(isins):,}; client concurrency {concurrency}")
    if wrk_base and wrk_check and wrk_half:
        print(
            f"wrk: GET /healthz {wrk_base.rps:8.0f} req/s; GET /v1/check (logged) "
            f"{wrk_check.rps:8.0f} req/s = {wrk_check.rps / wrk_base.rps:.2f} of baseline "
            "(target >= 0.70)"
        )
        print(
            f"wrk: GET /v1/check paced at half that ({wrk_half.rps:.0f} req/s, 8 connections): "
            f"p50 {wrk_half.p50_ms:.2f} ms, p99 {wrk_half.p99_ms:.2f} ms (target < 10 ms)"
        )
    print("python client (its own CPU cost is in these figures; wrk's above are the server's):")
    print(f"baseline GET /healthz          {base_rps:8.0f} req/s")
    print(
        f"GET /v1/check (logged)         {check_rps:8.0f} req/s  = {check_rps / base_rps:.2f} "
        f"of baseline; saturated p50 {pct(check_lat, 0.5):.1f} ms"
    )
    print(
        f"at half load ({check_rps / 2:.0f} req/s)      p50 {pct(half, 0.5):.1f} ms  "
        f"p99 {pct(half, 0.99):.1f} ms"
    )
    print(
        f"POST /v1/checks x{batch_size:,}      server time (Server-Timing) median "
        f"{statistics.median(server_times) * 1000:.0f} ms, best {min(server_times) * 1000:.0f} ms "
        f"(target < 300 ms); round trip on loopback median {statistics.median(timings) * 1000:.0f}"
        " ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--companies", type=int, default=8000, help="generated universe size")
    parser.add_argument("--batch", type=int, default=10_000, help="instruments per batch")
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.seconds, arguments.concurrency, arguments.companies, arguments.batch)
    )
