"""Benchmark: one 10,000-instrument ``POST /v1/checks`` from the compiled index, checkout
against checkout.

Loads `mayhold demo`'s policies and a generated universe (--companies) into a fresh Postgres
database once, then serves it from each checkout in turn (uvicorn, one worker, decision logging
on; ``--base`` is a checkout of the commit to compare with, e.g. ``git archive HEAD | tar -x -C
/tmp/base``; ``--this`` one or more others, default this one), in rounds (base, this, base,
this...: the machine is shared and noisy, so each figure is read against the others' from the
same run). Per server and round, once its compiled index of rpf is current (``/metrics``):
``--batches`` batches of the universe's ISINs (repeated up to --size), one at a time; the
server time of each (its ``Server-Timing`` header) and the server process's CPU time for it
(Postgres' own CPU, the decision log's COPY, is not in that figure, but its wait is in the
server time). Only one server runs at a time (they share the database and its decision log).

``--phases N``: instead, N batches in this process (the app on httpx's ASGI transport, the
same database), this checkout only, the server time split by step of the endpoint (each
wrapped in a timer): where it goes. ``--py-spy OUT``: the last server's stacks while it answers
its batches (py-spy on PATH; collapsed stacks), for the detail.

Usage: .venv/bin/python -m bench.batch_check [--base DIR] [--this DIR]... [--rounds 2]
       [--batches 7] [--companies 8000] [--size 10000] [--phases N] [--py-spy OUT]
Target (issue 15): a 10,000-instrument batch in under 120 ms of server time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.checks import prepare
from bench.support import cpu_seconds, serve_checkout, server_ms
from tests.support.databases import scratch_database

HERE = Path(__file__).resolve().parents[1]


def index_current(metrics: str) -> bool:
    """Whether /metrics says the compiled index of rpf is current."""
    return any(
        line.startswith("mayhold_index_current{")
        and 'policy="rpf"' in line
        and line.endswith(" 1.0")
        for line in metrics.splitlines()
    )


@dataclass(frozen=True)
class Measured:
    server_ms: list[float]  # Server-Timing of each batch
    cpu_ms: list[float]  # the server process's CPU time during each batch


def measure(
    root: Path, url: str, key: str, batch: list[str], batches: int, py_spy: Path | None = None
) -> Measured:
    process, base = serve_checkout(root, url)
    body = {"policy": "rpf", "instruments": batch}
    try:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as client:
            # The first check starts the compilation in the background; wait until it is used.
            for _ in range(600):
                assert client.get(f"/v1/check?policy=rpf&instrument={batch[0]}").status_code == 200
                if index_current(client.get("/metrics").text):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("the compiled index never became current")
            for _ in range(2):  # warm: first batches allocate what later ones reuse
                assert client.post("/v1/checks", json=body).status_code == 200
            times, cpu = [], []
            spy = None
            if py_spy is not None:  # collapsed stacks of the server while it answers batches
                spy = subprocess.Popen(
                    [
                        *("py-spy", "record", "--pid", str(process.pid), "--rate", "250"),
                        *("--format", "raw", "--output", str(py_spy)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1)
            for _ in range(batches):
                before = cpu_seconds(process.pid)
                response = client.post("/v1/checks", json=body)
                cpu.append((cpu_seconds(process.pid) - before) * 1000)
                times.append(server_ms(response))
                assert len(response.json()["decisions"]) == len(batch)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
    finally:
        process.terminate()
        process.wait(timeout=20)
    return Measured(times, cpu)


def _timed(owner: Any, name: str, spent: dict[str, list[float]], label: str) -> None:
    """Wrap ``owner.name`` (a function or coroutine function) to add its time to ``spent``."""
    function = getattr(owner, name)
    if inspect.iscoroutinefunction(function):

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                spent.setdefault(label, []).append((time.perf_counter() - started) * 1000)

        setattr(owner, name, timed_async)
    else:

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent.setdefault(label, []).append((time.perf_counter() - started) * 1000)

        setattr(owner, name, timed)


async def phases(url: str, key: str, batch: list[str], count: int) -> None:
    """``count`` batches in this process (the app on the ASGI transport), the server time split
    by phase: each step of the endpoint wrapped in a timer (a few calls per batch, no profiler).
    """
    import fastapi.routing

    from app.decisions import log as decisions_log
    from app.decisions.log import DecisionLog
    from app.kit.settings import Settings
    from app.main import create_app
    from app.screening import endpoints, service

    spent: dict[str, list[float]] = {}
    _timed(service, "_identified", spent, "identify (known ISINs)")
    _timed(service.Scene, "decisions", spent, "decisions from templates")
    _timed(service, "_entries", spent, "log entries built")
    _timed(DecisionLog, "append", spent, "decision log append (awaited)")
    # Within the append (app.decisions, the lead's): each entry validated and its request
    # rendered in the caller's task; the writer's transaction; its rows rendered and hashed.
    prepare = decisions_log._prepare
    prepared: list[float] = []

    def timed_prepare(entry: Any) -> Any:
        started = time.perf_counter()
        try:
            return prepare(entry)
        finally:
            prepared.append(time.perf_counter() - started)

    decisions_log._prepare = timed_prepare
    _timed(DecisionLog, "_commit", spent, "  of which the writer's transaction")
    _timed(decisions_log._Batch, "__init__", spent, "    of which the batch rendered (ids, texts)")
    rows = decisions_log._Batch.rows

    def timed_rows(self: Any, head: Any, decided_at: Any) -> Any:
        produced = rows(self, head, decided_at)
        total = 0.0
        while True:
            started = time.perf_counter()
            try:
                row = next(produced)
            except StopIteration:
                break
            finally:
                total += time.perf_counter() - started
            yield row
        spent.setdefault("    of which rows chained (hashed)", []).append(total * 1000)

    setattr(decisions_log._Batch, "rows", timed_rows)  # noqa: B010
    _timed(service, "count_checks", spent, "metrics")
    _timed(endpoints, "_json", spent, "response rendered (orjson)")
    _timed(fastapi.routing, "solve_dependencies", spent, "body validated, dependencies")
    collecting: list[float] = []

    def collector(phase: str, info: dict[str, Any]) -> None:
        # The cyclic garbage collector's pauses (a batch allocates some 100,000 objects).
        if phase == "start":
            collecting.append(time.perf_counter())
        else:
            elapsed = (time.perf_counter() - collecting.pop()) * 1000
            spent.setdefault("garbage collection", []).append(elapsed)
            spent.setdefault(f"gc generation {info['generation']}", []).append(elapsed)

    gc.callbacks.append(collector)
    app = create_app(Settings(database_url=url, log_level="WARNING"))
    body = {"policy": "rpf", "instruments": batch}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        ) as client,
    ):
        for _ in range(600):
            await client.get(f"/v1/check?policy=rpf&instrument={batch[0]}")
            if index_current((await client.get("/metrics")).text):
                break
            await asyncio.sleep(0.1)
        for _ in range(2):
            await client.post("/v1/checks", json=body)
        spent.clear()
        times = []
        for _ in range(count):
            prepared.clear()
            response = await client.post("/v1/checks", json=body)
            times.append(server_ms(response))
            spent.setdefault("  of which entries prepared (caller)", []).append(
                sum(prepared) * 1000
            )
    server = statistics.median(times)
    print(f"in process (ASGI transport), {count} batches: server time median {server:.0f} ms")
    accounted = 0.0
    collections = spent.pop("garbage collection", [])
    generations = {g: spent.pop(f"gc generation {g}", []) for g in range(3)}
    order = [
        "body validated, dependencies",
        "identify (known ISINs)",
        "decisions from templates",
        "log entries built",
        "decision log append (awaited)",
        "  of which entries prepared (caller)",
        "  of which the writer's transaction",
        "    of which rows rendered and hashed",
        "metrics",
        "response rendered (orjson)",
    ]
    for label, values in sorted(spent.items(), key=lambda item: order.index(item[0])):
        value = statistics.median(values[-count:])
        if not label.startswith(" "):
            accounted += value
        print(f"  {label:34} {value:6.1f} ms  {value / server:5.1%}")
    rest = server - accounted
    print(f"  {'the rest (body read, parse, ...)':34} {rest:6.1f} ms  {rest / server:5.1%}")
    print(
        f"  (garbage collection, within the above: {len(collections) / count:.0f} collections, "
        f"{sum(collections) / count:.1f} ms per batch; by generation: "
        + ", ".join(
            f"{g}: {len(v) / count:.0f} taking {sum(v) / count:.1f} ms"
            for g, v in generations.items()
        )
        + ")"
    )


async def main(
    base_root: Path | None,
    others: list[Path],
    rounds: int,
    batches: int,
    companies: int,
    size: int,
    profile_count: int,
    py_spy: Path | None,
) -> None:
    variants: dict[str, Path] = {}
    if base_root is not None:
        variants["base"] = base_root.resolve()
    for number, root in enumerate(others or [HERE], start=1):
        variants["this" if not others else f"this{number}"] = root.resolve()
    results: dict[str, list[Measured]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database("postgresql", Path(tmp)) as url:
            key, isins = await prepare(url, companies)
            batch = (sorted(isins) * (size // len(isins) + 1))[:size]
            if profile_count:
                await phases(url, key, batch, profile_count)
                return
            for number in range(rounds):
                for name, root in variants.items():
                    # py-spy: the last checkout measured, in the last round
                    spy = py_spy if number == rounds - 1 and name == list(variants)[-1] else None
                    results[name].append(
                        await asyncio.to_thread(measure, root, url, key, batch, batches, spy)
                    )
    print(f"instruments in the universe: {len(isins):,}; batches of {size:,}")
    medians: dict[str, tuple[float, float]] = {}
    for name, root in variants.items():
        print(f"{name} ({root}):")
        for m in results[name]:
            print(
                f"  server time median {statistics.median(m.server_ms):.0f} ms "
                f"(min {min(m.server_ms):.0f}, max {max(m.server_ms):.0f}); server CPU median "
                f"{statistics.median(m.cpu_ms):.0f} ms"
            )
        medians[name] = (
            statistics.median(t for m in results[name] for t in m.server_ms),
            statistics.median(c for m in results[name] for c in m.cpu_ms),
        )
    first = next(iter(medians.values()))
    for name, (server, cpu) in medians.items():
        print(
            f"{name}: median server time {server:.0f} ms ({server / first[0]:.2f} of "
            f"{next(iter(medians))}), server CPU {cpu:.0f} ms ({cpu / first[1]:.2f})"
        )
    print("target (issue 15): < 120 ms server time")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, help="checkout to compare with")
    parser.add_argument(
        "--this",
        type=Path,
        action="append",
        help="a checkout measured against the base (repeatable; default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--companies", type=int, default=8000, help="generated universe size")
    parser.add_argument("--size", type=int, default=10_000, help="instruments per batch")
    parser.add_argument("--phases", type=int, default=0, help="time N batches in-process, by phase")
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="record the last server's stacks (py-spy on PATH) during its last round's batches "
        "into this file (collapsed stacks)",
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.base,
            arguments.this or [],
            arguments.rounds,
            arguments.batches,
            arguments.companies,
            arguments.size,
            arguments.phases,
            arguments.py_spy,
        )
    )
