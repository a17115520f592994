"""Benchmark: replicas sharing one Postgres database and one decision chain (issue 15).

Loads `mayhold demo`'s policies and a generated universe (--companies) into a fresh Postgres
database once, then for N = 1, 2, 4 serves it with `mayhold serve --workers N` (N processes on
one port, each with its own decision-log writer appending to the one chain) and drives logged
``GET /v1/check`` (random ISINs) for --seconds with wrk if installed (`apt-get install wrk`),
else the Python client. Per N it prints:
  - /healthz req/s of the same server (wrk only): the HTTP ceiling of N processes on this
    machine's cores, no database, to read the checks' scaling against;
  - checks/s in all, and as a ratio to N = 1;
  - the decisions the log gained (counted in the database) per second: the same figure seen
    from the chain;
  - responses that were not 200, p50 and p99;
  - the chain lock: batches appended and the time they waited for the lock, i.e. for other
    processes' appends (``mayhold_decision_log_chain_wait_seconds`` of every worker, read from
    /metrics scrapes told apart by the histogram's ``_created``): mean wait per batch, and the
    share of the run's wall time the writers spent waiting, summed over workers;
  - ``GET /v1/decisions/verify`` of the whole chain afterwards (must be ok).

Usage: .venv/bin/python -m bench.replicas [--seconds 10] [--connections 32] [--companies 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time

import httpx
from sqlalchemy import func, select

from app.kit.db import Database
from app.models import Decision
from bench.checks import saturate, wrk
from bench.support import admin_key, demo_postgres, instruments
from tests.support.processes import answering, serve

_SAMPLE = re.compile(r"^(mayhold_decision_log_chain_wait_seconds_(?:count|sum|created)) (\S+)$")
_WAIT = "mayhold_decision_log_chain_wait_seconds"


async def waits_per_process(base: str, key: str, workers: int) -> dict[float, tuple[float, float]]:
    """Each worker's chain-lock waits (batches, seconds), keyed by the histogram's creation time
    (``_created``: when the worker imported the app, to the microsecond): concurrent scrapes on
    fresh connections until every worker has answered (or 30 rounds)."""
    seen: dict[float, tuple[float, float]] = {}

    async def scrape() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(
                f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}
            )
        response.raise_for_status()
        values: dict[str, str] = {}
        for line in response.text.splitlines():
            if match := _SAMPLE.match(line):
                values[match[1]] = match[2]
        seen[float(values[f"{_WAIT}_created"])] = (
            float(values[f"{_WAIT}_count"]),
            float(values[f"{_WAIT}_sum"]),
        )

    for _ in range(30):
        await asyncio.gather(*(scrape() for _ in range(4 * workers)))
        if len(seen) >= workers:
            break
    return seen


async def logged(database: Database) -> int:
    async with database.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Decision))).scalar_one())


async def run(
    url: str,
    database: Database,
    key: str,
    paths: list[str],
    workers: int,
    seconds: float,
    connections: int,
) -> dict[str, float]:
    server, port = serve(url, workers=workers)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            await answering(client, "/readyz", seconds=60)
            # Warm up every worker (each compiles its own index), then measure.
            if await asyncio.to_thread(wrk, base, key, paths, 3, connections) is None:
                await saturate(client, paths, 3, connections)
            # The same server's HTTP ceiling without the log (or any database): what N processes
            # gain on this machine's cores whatever the chain does.
            healthz = await asyncio.to_thread(wrk, base, key, ["/healthz"], seconds, connections)
            before = await waits_per_process(base, key, workers)
            rows_before = await logged(database)
            started = time.perf_counter()
            measured = await asyncio.to_thread(
                wrk, base, key, paths, seconds, connections, allow_errors=True
            )
            if measured is not None:
                rps, tool = measured.rps, "wrk"
                failed, latency = (
                    measured.non_2xx,
                    f"p50 {measured.p50_ms:.0f} ms, p99 {measured.p99_ms:.0f} ms",
                )
            else:
                rps, _ = await saturate(client, paths, seconds, connections)
                tool, failed, latency = "python", 0, ""
            elapsed = time.perf_counter() - started
            rows = await logged(database) - rows_before
            after = await waits_per_process(base, key, workers)
            verification = (await client.get("/v1/decisions/verify")).json()
    finally:
        server.terminate()
        server.wait(timeout=60)
    batches = sum(after[p][0] - before.get(p, (0.0, 0.0))[0] for p in after)
    waited = sum(after[p][1] - before.get(p, (0.0, 0.0))[1] for p in after)
    print(
        f"workers {workers}: /healthz {healthz.rps if healthz else float('nan'):6.0f} req/s; "
        f"{rps:7.0f} checks/s ({tool}, {connections} connections, "
        f"{seconds:.0f} s; not 200: {failed}; {latency}); "
        f"log +{rows:,} decisions = {rows / elapsed:7.0f}/s in {batches:,.0f} batches; "
        f"chain lock waits {1000 * waited / max(batches, 1):.2f} ms per batch, "
        f"{waited / elapsed:.2f} of the wall time (workers seen {len(after)}/{workers}); "
        f"verify ok={verification['ok']} "
        f"checked={verification['checked']:,}"
    )
    assert verification["ok"] is True, verification
    return {
        "rps": rps,
        "healthz": healthz.rps if healthz else float("nan"),
        "batches": batches,
        "waited": waited,
        "rows": rows,
        "failed": failed,
    }


async def main(seconds: float, connections: int, companies: int, counts: list[int]) -> None:
    async with demo_postgres(companies) as (url, database):
        key = await admin_key(database)
        isins = [isin for isin, _ in await instruments(database)]
        random.Random(7).shuffle(isins)
        paths = [f"/v1/check?policy=rpf&instrument={isin}" for isin in isins[:2000]]
        results = {n: await run(url, database, key, paths, n, seconds, connections) for n in counts}
    first = results[counts[0]]
    print(
        "as a ratio to the first N, checks/s (/healthz req/s): "
        + ", ".join(
            f"N={n}: {r['rps'] / first['rps']:.2f} ({r['healthz'] / first['healthz']:.2f})"
            for n, r in results.items()
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--companies", type=int, default=3000, help="generated universe size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.connections, args.companies, args.workers))
