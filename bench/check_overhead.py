"""Benchmark: the fixed cost of one logged ``GET /v1/check``, this checkout against another.

Loads `mayhold demo`'s policies and a generated universe (--companies) into a fresh Postgres
database once, then serves it from each checkout in turn (uvicorn, one worker; ``--base`` is a
checkout of the commit to compare with, e.g. ``git worktree add /tmp/base main``), in rounds
(base, this, base, this...: the machines are shared and noisy, so each figure is read against
the other's from the same run). Per server and round, with wrk (``apt-get install wrk``):
  1. GET /healthz of the same server: the baseline throughput;
  2. GET /v1/check (one ISIN, decision logged): throughput as a ratio of 1;
  3. p50/p99 of single checks paced at half that throughput (8 connections).
Only one server runs at a time (they share the database and its decision log).

Usage: .venv/bin/python bench/check_overhead.py --base /tmp/base [--rounds 2] [--seconds 8]
Targets (issue 15): check/healthz >= 0.8; p99 at half load < 3 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.checks import WrkRun, prepare, wrk
from tests.support.databases import scratch_database
from tests.support.processes import free_port

HERE = Path(__file__).resolve().parents[1]


def start(root: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    """`mayhold serve` from the checkout at ``root`` (its code first on the path)."""
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


def measure(
    root: Path, url: str, key: str, checks: list[str], seconds: float
) -> tuple[WrkRun, WrkRun, WrkRun]:
    process, base = start(root, url)
    try:
        # Warm up: the first checks build the compiled index in the background.
        response = httpx.get(
            f"{base}{checks[0]}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        time.sleep(1)
        wrk(base, key, checks, 2, 16)
        healthz = wrk(base, key, ["/healthz"], seconds, 16)
        check = wrk(base, key, checks, seconds, 16)
        assert healthz and check, "wrk is needed: apt-get install wrk"
        half = wrk(base, key, checks, seconds, 8, rate=check.rps / 2)
        assert half
    finally:
        process.terminate()
        process.wait(timeout=20)
    return healthz, check, half


async def main(base_root: Path, rounds: int, seconds: float, companies: int) -> None:
    variants = {"base": base_root.resolve(), "this": HERE}
    results: dict[str, list[tuple[WrkRun, WrkRun, WrkRun]]] = {name: [] for name in variants}
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
        for healthz, check, half in results[name]:
            print(
                f"  /healthz {healthz.rps:7.0f} req/s; /v1/check {check.rps:7.0f} req/s = "
                f"{check.rps / healthz.rps:.2f}; at half load ({half.rps:.0f} req/s) "
                f"p50 {half.p50_ms:.2f} ms, p99 {half.p99_ms:.2f} ms"
            )
    ratios = {n: [c.rps / h.rps for h, c, _ in r] for n, r in results.items()}
    p99s = {n: [half.p99_ms for _, _, half in r] for n, r in results.items()}
    print(
        f"check/healthz median: base {statistics.median(ratios['base']):.2f}, "
        f"this {statistics.median(ratios['this']):.2f} (target >= 0.8); p99 at half load "
        f"median: base {statistics.median(p99s['base']):.2f} ms, "
        f"this {statistics.median(p99s['this']):.2f} ms (target < 3 ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="checkout to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--companies", type=int, default=8000, help="generated universe size")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.base, arguments.rounds, arguments.seconds, arguments.companies))
