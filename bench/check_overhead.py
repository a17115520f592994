"""Benchmark: the fixed cost of one logged ``GET /v1/check``, this checkout against another.

Loads `mayhold demo`'s policies and a generated universe (--companies) into a fresh Postgres
database once, then serves it from each checkout in turn (uvicorn, one worker; ``--base`` is a
checkout of the commit to compare with, e.g. ``git worktree add --detach /tmp/base main``;
``--this`` one or more others, default this one), in rounds (base, this, base, this...: the
machines are shared and noisy, so each figure is read against the others' from the same run).
Per server and round, with wrk (``apt-get install wrk``):
  1. GET /healthz of the same server, saturated (16 connections): the baseline throughput;
  2. GET /v1/check (one ISIN, decision logged), saturated: throughput as a ratio of 1, and the
     server process's CPU time per request in both (steadier than throughput when other work
     shares the cores; Postgres' own CPU is not in it);
  3. p50/p99 of single checks paced at half that throughput (8 connections).
Only one server runs at a time (they share the database and its decision log).

Usage: .venv/bin/python bench/check_overhead.py --base /tmp/base [--this DIR]... [--rounds 2]
       [--seconds 8]
Targets (issue 15): check/healthz >= 0.8; p99 at half load < 3 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.checks import WrkRun, prepare, wrk
from bench.support import cpu_seconds, serve_checkout
from tests.support.databases import scratch_database

HERE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measured:
    healthz: WrkRun
    check: WrkRun
    half: WrkRun
    # The server process's CPU per request (microseconds) while saturated: on a shared
    # machine this moves far less than throughput does (Postgres' own CPU is not in it).
    healthz_cpu_us: float
    check_cpu_us: float


def saturated(
    pid: int, base: str, key: str, paths: list[str], seconds: float
) -> tuple[WrkRun, float]:
    before = cpu_seconds(pid)
    run = wrk(base, key, paths, seconds, 16)
    assert run, "wrk is needed: apt-get install wrk"
    return run, (cpu_seconds(pid) - before) / (run.rps * seconds) * 1e6


def measure(root: Path, url: str, key: str, checks: list[str], seconds: float) -> Measured:
    process, base = serve_checkout(root, url)
    try:
        # Warm up: the first checks build the compiled index in the background.
        response = httpx.get(
            f"{base}{checks[0]}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        time.sleep(1)
        wrk(base, key, checks, 2, 16)
        healthz, healthz_cpu = saturated(process.pid, base, key, ["/healthz"], seconds)
        check, check_cpu = saturated(process.pid, base, key, checks, seconds)
        half = wrk(base, key, checks, seconds, 8, rate=check.rps / 2)
        assert half
    finally:
        process.terminate()
        process.wait(timeout=20)
    return Measured(healthz, check, half, healthz_cpu, check_cpu)


async def main(
    base_root: Path, others: list[Path], rounds: int, seconds: float, companies: int
) -> None:
    variants = {"base": base_root.resolve()}
    for number, root in enumerate(others or [HERE], start=1):
        variants["this" if not others else f"this{number}"] = root.resolve()
    results: dict[str, list[Measured]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database("postgresql", Path(tmp)) as url:
            key, isins = await prepare(url, companies)
            checks = [f"/v1/check?policy=rpf&instrument={i}" for i in isins[:2000]]
            for _ in range(rounds):
                for name, root in variants.items():
                    results[name].append(
                        await asyncio.to_thread(measure, root, url, key, checks, seconds)
                    )
    print(f"instruments in the universe: {len(isins):,}; wrk, 16 connections, {seconds:.0f} s each")
    for name, root in variants.items():
        print(f"{name} ({root}):")
        for m in results[name]:
            print(
                f"  /healthz {m.healthz.rps:6.0f} req/s, /v1/check {m.check.rps:6.0f} req/s = "
                f"{m.check.rps / m.healthz.rps:.2f}; server CPU/request {m.healthz_cpu_us:.0f} "
                f"and {m.check_cpu_us:.0f} us = {m.healthz_cpu_us / m.check_cpu_us:.2f}; "
                f"at half load ({m.half.rps:.0f} req/s) p50 {m.half.p50_ms:.2f} ms, "
                f"p99 {m.half.p99_ms:.2f} ms"
            )

    def median(name: str, value: Callable[[Measured], float]) -> float:
        return statistics.median(value(m) for m in results[name])

    for label, value, unit in (
        ("check/healthz throughput", lambda m: m.check.rps / m.healthz.rps, ""),
        ("healthz/check server CPU", lambda m: m.healthz_cpu_us / m.check_cpu_us, ""),
        ("check server CPU", lambda m: m.check_cpu_us, " us"),
        ("p99 at half load", lambda m: m.half.p99_ms, " ms"),
    ):
        figures = ", ".join(f"{name} {median(name, value):.2f}{unit}" for name in variants)
        print(f"median {label}: {figures}")
    print("targets (issue 15): check/healthz >= 0.8; p99 at half load < 3 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="checkout to compare with")
    parser.add_argument(
        "--this",
        type=Path,
        action="append",
        help="a checkout measured against the base (repeatable; default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--companies", type=int, default=8000, help="generated universe size")
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.base, arguments.this, arguments.rounds, arguments.seconds, arguments.companies
        )
    )
