"""Benchmark: compiling the verdict index for a large universe.

Loads a generated universe (`app.demo.generate`, N companies, ~1.2 instruments each, plus
sovereigns and vendor data) into a fresh Postgres database through the real loaders, then
times one compilation of policy rpf (full snapshot read + evaluation of every instrument +
decision templates) and reports peak memory. Baseline of the same run: the snapshot read
alone, i.e. what the compile costs beyond reading the data once.

Also prints the compiled index's peak RSS per 100,000 instruments (over the process before the
read). ``--memory``: instead, where the index's memory goes, measured with tracemalloc (slow:
use a modest size, e.g. --companies 20000 for ~100,000 instruments): the snapshot (its read),
then the decision templates compiled on it (what they add), each per 100,000 instruments, and
the largest allocation sites of each.

Usage: .venv/bin/python bench/index_compile.py [--companies 100000] [--extra-bonds 4] [--memory]
(100,000 companies with 4 extra bonds each: 100,180 issuers, about 522,000 instruments)
Target (issue 5): 100,000 issuers / 500,000 instruments compiled in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc

from app.kit.db import Database
from app.kit.memory import building_long_lived
from app.kit.time import utcnow
from app.screening.applied import applied_at
from app.screening.index import VerdictIndex, read_watermark
from app.screening.repository import ScreeningRepository
from app.screening.snapshot import Snapshot
from app.screening.templates import compile_templates
from bench.support import demo_postgres, rss_mb

MB = 1024 * 1024


def _sites(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, count: int = 8) -> None:
    """The allocation sites (file:line) that grew most from ``before`` to ``after``."""
    for stat in after.compare_to(before, "lineno")[:count]:
        frame = stat.traceback[0]
        name = frame.filename.split("/site-packages/")[-1].split("/wt-batch/")[-1]
        print(
            f"    {stat.size_diff / MB:8.1f} MB  {stat.count_diff:>10,} blocks  "
            f"{name}:{frame.lineno}"
        )


async def memory(database: Database) -> None:
    """Where the compiled index's memory goes: snapshot and templates, by tracemalloc."""
    async with database.sessionmaker() as session:
        mark = await read_watermark(session)
        now = utcnow()
        applied = await applied_at(session, "rpf", now)
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.take_snapshot()
        with building_long_lived():  # as the index builds it
            snapshot: Snapshot = await ScreeningRepository(session).full_snapshot(
                mark[0], applied.list_keys
            )
        gc.collect()
    read = tracemalloc.take_snapshot()
    snapshot_bytes = tracemalloc.get_traced_memory()[0]
    with building_long_lived():
        templates = compile_templates(applied, snapshot, now)
    gc.collect()
    compiled = tracemalloc.take_snapshot()
    total_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    count = len(snapshot.instruments)
    per = 100_000 / count
    templates_bytes = total_bytes - snapshot_bytes
    print(
        f"{count:,} instruments, {len(snapshot.issuers):,} issuers, "
        f"{sum(len(p) for m in snapshot.issuer_facts.values() for p in m.values()):,} issuer "
        "fact points "
        f"(traced by tracemalloc; Python objects only, no allocator overhead)"
    )
    print(
        f"snapshot:  {snapshot_bytes / MB:7.1f} MB = {snapshot_bytes * per / MB:6.1f} MB per "
        f"100k instruments ({snapshot_bytes / count:,.0f} bytes per instrument)"
    )
    _sites(read, start)
    print(
        f"templates: {templates_bytes / MB:7.1f} MB = {templates_bytes * per / MB:6.1f} MB per "
        f"100k instruments ({templates_bytes / count:,.0f} bytes per instrument)"
    )
    _sites(compiled, read)
    print(
        f"index (both): {total_bytes / MB:.1f} MB = {total_bytes * per / MB:.1f} MB per 100k "
        f"instruments; templates {templates_bytes / total_bytes:.0%} of it"
    )
    del templates


async def main(companies: int, extra_bonds: int, measure_memory: bool) -> None:
    async with demo_postgres(companies, extra_bonds) as (_, database):
        if measure_memory:
            await memory(database)
            return
        async with database.sessionmaker() as session:
            mark = await read_watermark(session)
            applied = await applied_at(session, "rpf", utcnow())
            before = rss_mb()
            started = time.perf_counter()
            with building_long_lived():  # as the index builds it
                snapshot = await ScreeningRepository(session).full_snapshot(
                    mark[0], applied.list_keys
                )
            read = time.perf_counter() - started
        print(
            f"snapshot read alone: {read:.2f} s, {len(snapshot.issuers):,} issuers, "
            f"{len(snapshot.instruments):,} instruments (RSS {before:.0f} -> {rss_mb():.0f} MB)"
        )
        del snapshot
        index = VerdictIndex(database.sessionmaker)
        index._watermark = mark
        started = time.perf_counter()
        await index._build(("rpf", "client"))
        total = time.perf_counter() - started
        assert index.builds == 1, "the build failed (see the log)"
        count = len(index._compiled[("rpf", "client")].templates)
        peak = rss_mb()
        print(
            f"index compile (read + evaluate + templates): {total:.2f} s "
            f"= {total / read:.1f}x the read alone; peak RSS {peak:.0f} MB, "
            f"{(peak - before) * 100_000 / count:.0f} MB per 100k instruments over the "
            f"{before:.0f} MB before the read (target: 100k issuers / 500k instruments < 10 s)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--extra-bonds", type=int, default=4)
    parser.add_argument(
        "--memory", action="store_true", help="where the memory goes (tracemalloc; slow)"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.companies, arguments.extra_bonds, arguments.memory))
