"""Benchmark: the decision log's group commit, 1 caller vs many concurrent callers, same run.

Each `append` is one decision (a single check); every call returns only after its decision is
committed. With one caller each decision pays a whole transaction; with many, the writer
commits whatever queued while the previous commit ran. Also times one 10,000-decision call (a
batch check) and reports the mean batch size.

Usage:
    .venv/bin/python bench/decision_log.py [--dialect postgresql|sqlite] [--seconds 5]
        [--callers 200]
    (MAYHOLD_TEST_POSTGRES_URL picks the server; default postgres@127.0.0.1:5432)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from app.decisions import service
from app.decisions.log import DecisionLog
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from tests.support.databases import scratch_database
from tests.support.decisions import entry


async def run_callers(log: DecisionLog, callers: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    batches_before = log.committed_batches
    deadline = time.perf_counter() + seconds

    async def caller(n: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await log.append([entry(n * 1_000_000 + i)])
            latencies.append(time.perf_counter() - started)
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(callers)))
    elapsed = time.perf_counter() - started
    batches = log.committed_batches - batches_before
    latencies.sort()
    return {
        "appends": len(latencies),
        "per_second": len(latencies) / elapsed,
        "batches": batches,
        "mean_batch": len(latencies) / max(batches, 1),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "mean_ms": 1000 * statistics.fmean(latencies),
    }


def show(label: str, figures: dict[str, float]) -> None:
    print(
        f"{label:<22} {figures['appends']:>8.0f} appends  {figures['per_second']:>9.0f}/s  "
        f"{figures['batches']:>6.0f} commits (mean {figures['mean_batch']:>6.1f}/commit)  "
        f"latency p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"
    )


async def measure(log: DecisionLog, label: str, seconds: float, callers: int) -> float:
    await run_callers(log, 10, 0.5)  # warm the pool and the caches
    print(f"-- {label}")
    one = await run_callers(log, 1, seconds)
    show("1 caller", one)
    many = await run_callers(log, callers, seconds)
    show(f"{callers} concurrent callers", many)
    print(
        f"group commit: {many['per_second'] / one['per_second']:.1f}x the throughput of one caller"
    )
    big = [entry(n) for n in range(10_000)]
    started = time.perf_counter()
    await log.append(big)
    print(
        f"one call of 10,000 decisions: {1000 * (time.perf_counter() - started):.0f} "
        "ms (validate, render, chain, insert, commit)"
    )
    return one["per_second"]


async def main(dialect: str, seconds: float, callers: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with scratch_database(dialect, Path(directory)) as url:
            settings = Settings(database_url=url)
            await upgrade_to_head_async(settings)
            database = Database.from_settings(settings)
            print(f"decision log on {dialect}, {seconds:.0f} s per run, one decision per call")
            try:
                # The sessions store (SQLite's, and the baseline on Postgres), then the
                # service's store on Postgres: a connection of its own, one INSERT per batch.
                modes = [False, True] if dialect == "postgresql" else [False]
                rates = []
                for dedicated in modes:
                    log = DecisionLog.for_database(
                        database, settings, dedicated_connection=dedicated
                    )
                    await log.start()
                    try:
                        label = "dedicated connection" if dedicated else "sessions (lock, head)"
                        rates.append(await measure(log, label, seconds, callers))
                    finally:
                        await log.stop()
                if len(rates) == 2:
                    print(
                        f"one caller: dedicated store {rates[1] / rates[0]:.1f}x the sessions store"
                    )
                async with database.sessionmaker() as session:
                    started = time.perf_counter()
                    verification = await service.verify(session, None, None)
                    elapsed = time.perf_counter() - started
                print(
                    f"verify: {verification.checked} decisions in {elapsed:.2f} s "
                    f"({verification.checked / elapsed:.0f}/s), ok={verification.ok}"
                )
            finally:
                await database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialect", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--callers", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.dialect, args.seconds, args.callers))
