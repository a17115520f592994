"""Benchmark: the post-trade compliance run of a large portfolio, over HTTP against the real
server, from the compiled index and through the database path.

Loads `mayhold demo`'s policies and a generated universe (--companies) into a fresh Postgres
database, plus a portfolio BENCH-COMPLIANCE of --holdings positions under policy pensura (the
demo's Pensura group: sponsors at 4.8 %, group at 9.5 %), serves it with uvicorn (one worker) and
measures the server time (Server-Timing) of, in the same run:
  1. baseline: POST /v1/checks {policy: pensura, instruments: the portfolio's ISINs} (one
     decision per instrument, each logged), from the compiled index;
  2. GET /v1/portfolios/{id}/compliance at the current time: from the compiled index (the run
     polls until its server time drops, i.e. the portfolio is compiled);
  3. the same with as_of = a moment after everything was loaded (a past time: the database
     path reads the portfolio, its holdings and their neighbourhood).
Each figure is the median of --repeat runs.

Usage: .venv/bin/python bench/compliance.py [--companies 9000] [--holdings 10000] [--repeat 7]
Target: a 10,000-holding compliance run under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import pstats
import statistics
import time

import httpx

from app.kit.canonical import rfc3339
from app.kit.db import Database
from app.kit.logging import configure_logging
from app.kit.time import utcnow
from app.screening import service
from bench.support import (
    admin_key,
    demo_postgres,
    instruments,
    load_portfolio,
    pensura_holdings,
    served,
    server_ms,
)

PORTFOLIO = "BENCH-COMPLIANCE"


async def times(
    client: httpx.AsyncClient, repeat: int, *args: object, **kwargs: object
) -> list[float]:
    found = []
    for _ in range(repeat):
        response = await client.request(*args, **kwargs)  # type: ignore[arg-type]
        found.append(server_ms(response))
    return found


async def profile_database_path(database: Database, at: dt.datetime) -> None:
    """The database path in this process under cProfile: where its time goes."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    async with database.sessionmaker() as session:
        scene = await service._compliance_scene(session, PORTFOLIO, at, current=False)
        scene_done = time.perf_counter()
    service.compliance_payload(scene)
    profiler.disable()
    total = time.perf_counter() - started
    print(
        f"in-process database path under cProfile: {total * 1000:.0f} ms, of which the scene "
        f"(reads, limit state) {(scene_done - started) * 1000:.0f} ms"
    )
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())


async def main(companies: int, holdings: int, repeat: int, profile: bool) -> None:
    async with demo_postgres(companies) as (url, database):
        universe = await instruments(database)
        held = pensura_holdings(universe, holdings)
        started = time.perf_counter()
        await load_portfolio(database, PORTFOLIO, "pensura", "client", held)
        print(f"loaded {len(held):,} holdings in {time.perf_counter() - started:.1f} s")
        after_loads = utcnow() + dt.timedelta(seconds=1)
        key = await admin_key(database)
        path = f"/v1/portfolios/{PORTFOLIO}/compliance"
        async with served(url, key) as client:
            await asyncio.sleep(max(0.0, (after_loads - utcnow()).total_seconds()) + 1)
            # Warm: current-time runs until one is answered from memory (the first ones start
            # the builds of pensura's verdicts and of the portfolio, then take the DB path).
            started = time.perf_counter()
            first = server_ms(await client.get(path))
            while True:
                latest = server_ms(await client.get(path))
                if latest < first / 3:
                    break
                assert time.perf_counter() - started < 300, "the portfolio was never compiled"
                await asyncio.sleep(0.2)
            warmed = time.perf_counter() - started
            batch = {"policy": "pensura", "instruments": list(held)}
            baseline = await times(client, repeat, "POST", "/v1/checks", json=batch)
            indexed = await times(client, repeat, "GET", path)
            past = {"as_of": rfc3339(after_loads)}
            database_path = await times(client, repeat, "GET", path, params=past)
            run = (await client.get(path)).json()
            again = (await client.get(path, params=past)).json()
        if profile:
            await profile_database_path(database, after_loads)
    volatile = ("decision_id", "decided_at", "as_of")
    same = {k: v for k, v in run.items() if k not in volatile} == {
        k: v for k, v in again.items() if k not in volatile
    }
    base = statistics.median(baseline)
    print(
        f"portfolio {PORTFOLIO}: {len(held):,} holdings under pensura; universe "
        f"{len(universe):,} instruments; index warm after {warmed:.1f} s (first run {first:.0f} "
        f"ms); run verdict {run['verdict']}, limits "
        f"{[(u['limit_id'], u['pct']) for u in run['limits']]}; both paths agree: {same}"
    )
    print(
        f"baseline POST /v1/checks x{len(held):,} (policy pensura)   server time median "
        f"{base:.0f} ms (min {min(baseline):.0f})"
    )
    for label, values in (
        ("compiled index (now)", indexed),
        ("database path (as_of)", database_path),
    ):
        median = statistics.median(values)
        print(
            f"GET compliance, {label:<22} server time median {median:.0f} ms (min "
            f"{min(values):.0f}) = {median / base:.2f} of baseline (target < 1000 ms)"
        )


if __name__ == "__main__":
    configure_logging("WARNING", "console")  # before any logger is used (structlog caches them)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=9000, help="generated universe size")
    parser.add_argument("--holdings", type=int, default=10_000, help="positions in the portfolio")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile the database path")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.companies, arguments.holdings, arguments.repeat, arguments.profile))
