"""Benchmark: pre-trade order checks in a portfolio, over HTTP against the real server.

Loads `mayhold demo`'s policies and a generated universe (--companies) into a fresh Postgres
database, plus a portfolio BENCH-PENSURA of --holdings positions under policy pensura (the demo's
Pensura group: sponsors at 4.8 %, group at 9.5 %, the rest spread over the universe), serves it
with uvicorn (one worker) in a subprocess, warms the compiled index (the first current-time
requests start background builds; it polls until order checks are answered from memory), and
measures in the same run:
  1. GET /v1/check?policy=pensura&instrument=ISIN (one instrument, logged): the baseline;
  2. POST /v1/checks {portfolio, orders: [one order]}: throughput as a ratio of the baseline;
  3. p50/p99 latency (round trip and Server-Timing) of order checks paced at half that rate,
     and of plain checks at the same rate (for comparison).
The load comes from the Python client in this process (it costs about as much CPU per request as
the server on a 2-core machine: read the ratio, not the absolute figures).

Usage: .venv/bin/python bench/portfolio_orders.py [--seconds 10] [--concurrency 16]
       [--companies 8000] [--holdings 5000]
Targets: an order check >= 0.8 of the plain check's throughput; p99 < 10 ms at half load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import random
import statistics
import time

import httpx

from app.demo import GROUP_BOND, SPONSOR_BOND
from app.kit.logging import configure_logging
from app.kit.settings import Settings
from app.main import create_app
from bench.support import (
    Send,
    admin_key,
    demo_postgres,
    instruments,
    load_portfolio,
    paced,
    pct,
    pensura_holdings,
    saturate,
    served,
    server_ms,
)

PORTFOLIO = "BENCH-PENSURA"


def order_sender(isins: list[str], seed: int) -> tuple[Send, Send]:
    rng = random.Random(seed)

    async def order(client: httpx.AsyncClient) -> httpx.Response:
        isin = rng.choice(isins)
        side = rng.choice(("buy", "sell"))
        body = {
            "portfolio": PORTFOLIO,
            "orders": [{"instrument": isin, "side": side, "market_value": 250_000}],
        }
        return await client.post("/v1/checks", json=body)

    async def plain(client: httpx.AsyncClient) -> httpx.Response:
        isin = rng.choice(isins)
        return await client.get("/v1/check", params={"policy": "pensura", "instrument": isin})

    return order, plain


async def warm(client: httpx.AsyncClient, isins: list[str]) -> float:
    """Ask until order checks and plain checks are answered from memory: the server time of
    ten order checks in a row under 5 ms (the database path reads the 5,000 holdings)."""
    started = time.perf_counter()
    fast = 0
    while fast < 10:
        assert time.perf_counter() - started < 300, "the index never answered"
        await client.get("/v1/check", params={"policy": "pensura", "instrument": isins[0]})
        response = await client.post(
            "/v1/checks",
            json={
                "portfolio": PORTFOLIO,
                "orders": [{"instrument": SPONSOR_BOND, "side": "buy", "market_value": 1}],
            },
        )
        fast = fast + 1 if server_ms(response) < 5 else 0
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def profile_in_process(url: str, key: str, isins: list[str], requests: int) -> None:
    """The app in this process (ASGI transport, its lifespan: the index runs), warmed, then
    ``requests`` order checks and as many plain checks under cProfile: where the order check's
    extra time goes (the top functions by own time of each)."""
    app = create_app(Settings(database_url=url, log_level="WARNING"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {key}"},
        ) as client,
    ):
        await warm(client, isins)
        order, plain = order_sender(isins, 3)
        for label, send in (("order checks", order), ("plain checks", plain)):
            for _ in range(200):
                await send(client)
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            for _ in range(requests):
                await send(client)
            profiler.disable()
            each = (time.perf_counter() - started) / requests * 1000
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
            print(f"in-process {label}: {each:.2f} ms each under cProfile\n{out.getvalue()}")


async def main(
    seconds: float, concurrency: int, companies: int, holdings: int, profile: int
) -> None:
    async with demo_postgres(companies) as (url, database):
        universe = await instruments(database)
        held = pensura_holdings(universe, holdings)
        started = time.perf_counter()
        await load_portfolio(database, PORTFOLIO, "pensura", "client", held)
        print(f"loaded {len(held):,} holdings in {time.perf_counter() - started:.1f} s")
        key = await admin_key(database)
        isins = [SPONSOR_BOND, GROUP_BOND, *[i for i, _ in universe[:2000]]]
        async with served(url, key) as client:
            warmed = await warm(client, isins)
            order, plain = order_sender(isins, 7)
            # A first pass of each, discarded (connection set-up, caches).
            await saturate(client, plain, 2, concurrency)
            await saturate(client, order, 2, concurrency)
            plain_rps, plain_lat = await saturate(client, plain, seconds, concurrency)
            order_rps, order_lat = await saturate(client, order, seconds, concurrency)
            rate = order_rps / 2
            half, half_server = await paced(client, order, rate, seconds)
            plain_half, plain_server = await paced(client, plain, rate, seconds)
            check = await client.post(
                "/v1/checks",
                json={
                    "portfolio": PORTFOLIO,
                    "orders": [
                        {"instrument": SPONSOR_BOND, "side": "buy", "market_value": 150_000},
                        {"instrument": SPONSOR_BOND, "side": "buy", "market_value": 500_000},
                    ],
                },
            )
            verdicts = [d["verdict"] for d in check.json()["decisions"]]
        if profile:
            await profile_in_process(url, key, isins, profile)
    print(
        f"portfolio {PORTFOLIO}: {len(held):,} holdings under pensura; universe "
        f"{len(universe):,} instruments; client concurrency {concurrency}; index warm after "
        f"{warmed:.1f} s; sponsor buys of 150,000 / 500,000: {verdicts}"
    )
    print(
        f"baseline GET /v1/check?policy=pensura   {plain_rps:8.0f} req/s  "
        f"(saturated p50 {pct(plain_lat, 0.5) * 1000:.1f} ms)"
    )
    print(
        f"POST /v1/checks, one order             {order_rps:8.0f} req/s  = "
        f"{order_rps / plain_rps:.2f} of baseline (target >= 0.80); saturated p50 "
        f"{pct(order_lat, 0.5) * 1000:.1f} ms"
    )
    print(
        f"orders paced at half that ({rate:.0f} req/s): round trip p50 {pct(half, 0.5):.2f} ms, "
        f"p99 {pct(half, 0.99):.2f} ms (target < 10 ms); server time p50 "
        f"{statistics.median(half_server):.2f} ms, p99 {pct(half_server, 0.99):.2f} ms"
    )
    print(
        f"plain checks paced at the same rate:        round trip p50 {pct(plain_half, 0.5):.2f} "
        f"ms, p99 {pct(plain_half, 0.99):.2f} ms; server time p50 "
        f"{statistics.median(plain_server):.2f} ms, p99 {pct(plain_server, 0.99):.2f} ms"
    )


if __name__ == "__main__":
    configure_logging("WARNING", "console")  # before any logger is used (structlog caches them)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--companies", type=int, default=8000, help="generated universe size")
    parser.add_argument("--holdings", type=int, default=5000, help="positions in the portfolio")
    parser.add_argument(
        "--profile", type=int, default=0, help="then cProfile N requests of each, in-process"
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.seconds,
            arguments.concurrency,
            arguments.companies,
            arguments.holdings,
            arguments.profile,
        )
    )
