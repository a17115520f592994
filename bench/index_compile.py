"""Benchmark: compiling the verdict index for a large universe.

Loads a generated universe (`app.demo.generate`, N companies, ~1.2 instruments each, plus
sovereigns and vendor data) into a fresh Postgres database through the real loaders, then
times one compilation of policy rpf (full snapshot read + evaluation of every instrument +
decision templates) and reports peak memory. Baseline of the same run: the snapshot read
alone, i.e. what the compile costs beyond reading the data once.

Usage: .venv/bin/python bench/index_compile.py [--companies 100000] [--extra-bonds 4]
(100,000 companies with 4 extra bonds each: 100,180 issuers, about 522,000 instruments)
Target (issue 5): 100,000 issuers / 500,000 instruments compiled in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from app.kit.memory import building_long_lived
from app.kit.time import utcnow
from app.screening.applied import applied_at
from app.screening.index import VerdictIndex, read_watermark
from app.screening.repository import ScreeningRepository
from bench.support import demo_postgres, rss_mb


async def main(companies: int, extra_bonds: int) -> None:
    async with demo_postgres(companies, extra_bonds) as (_, database):
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
        print(
            f"index compile (read + evaluate + templates): {total:.2f} s "
            f"= {total / read:.1f}x the read alone; peak RSS {rss_mb():.0f} MB "
            "(target: 100k issuers / 500k instruments < 10 s)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--extra-bonds", type=int, default=4)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.companies, arguments.extra_bonds))
