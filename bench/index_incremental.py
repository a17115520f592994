"""Benchmark: the compiled index brought up to date after a load, incrementally vs in full.

Loads a generated universe (`app.demo.generate`: N companies, ~1.2 instruments each plus
``--extra-bonds`` more, sovereigns, vendor data, funds) into a fresh Postgres database through
the real loaders and compiles policy rpf. Then a load touching ``--touched`` issuers goes
through the real loader (``--kind facts``: a vendor's norms.status for each; ``--kind
issuers``: each issuer record re-published, a tenth of them re-parented) and the index is
brought up to date twice, in the same run:

* incremental: from the previous compilation (``VerdictIndex._build``: what the load touched
  and its dependents re-read and re-evaluated);
* full: a fresh index compiling the whole universe at the same data version (the baseline:
  what every load cost before, with checks on the database path meanwhile).

Both are checked equal. Then the same again end to end with the index running (its watcher
polling every ``--poll`` s): seconds from the load's commit until a check at the current time
is answered from a compilation at the new data version (poll delay + build).

Usage: .venv/bin/python bench/index_incremental.py [--companies 20000] [--extra-bonds 4]
       [--touched 1000] [--kind facts|issuers] [--poll 0.1]
(--companies 100000 --extra-bonds 4: 100,180 issuers, about 522,000 instruments)
Target (issue 15): a load touching 1,000 issuers in a 500k-instrument universe: up to date in
under 1 s, no full rebuild.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from app.datasets.schemas import DatasetKind
from app.demo import ISSUER_COLUMNS, load_rows
from app.kit.db import Database
from app.kit.time import utcnow
from app.models import IssuerRecord
from app.screening.index import IndexKey, VerdictIndex, read_watermark
from bench.support import demo_postgres, rss_mb

POLICY: IndexKey = ("rpf", "client")


async def _load(database: Database, kind: str, companies: int, touched: int, seed: int) -> None:
    """A load touching ``touched`` companies, chosen at random (through the real loader)."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(companies), touched))
    async with database.sessionmaker() as session, session.begin():
        if kind == "facts":
            rows = [
                {
                    "issuer_ref": f"CO{n:05d}",
                    "metric": "norms.status",
                    "value": rng.choice(["compliant", "watchlist", "non_compliant"]),
                }
                for n in chosen
            ]
            await load_rows(
                session,
                DatasetKind.facts,
                rows,
                ["issuer_ref", "metric", "value", "as_of"],
                f"facts-{seed}.csv",
                provider="robeco",
                as_of=utcnow().date(),
            )
            return
        ids = [f"CO{n:05d}" for n in chosen]
        records = {
            r.issuer_id: r
            for r in (
                await session.execute(
                    IssuerRecord.__table__.select().where(IssuerRecord.issuer_id.in_(ids))
                )
            ).all()
        }
        rows = []
        for n, issuer_id in zip(chosen, ids, strict=True):
            record = records[issuer_id]
            row = {c: getattr(record, c) or "" for c in ISSUER_COLUMNS}
            row["name"] = f"{record.name} (seed {seed})"
            if n % 10 == 0 and n > 0:  # re-parented under the previous company
                row["parent_issuer_id"] = f"CO{n - 1:05d}"
                row["parent_control_pct"] = "60"
            rows.append({k: str(v) for k, v in row.items()})
        await load_rows(session, DatasetKind.issuers, rows, ISSUER_COLUMNS, f"i-{seed}.csv")


async def _build(index: VerdictIndex, database: Database) -> float:
    async with database.sessionmaker() as session:
        index._watermark = await read_watermark(session)
    started = time.perf_counter()
    await index._build(POLICY)
    return time.perf_counter() - started


async def main(companies: int, extra_bonds: int, touched: int, kind: str, poll: float) -> None:
    async with demo_postgres(companies, extra_bonds) as (_, database):
        index = VerdictIndex(database.sessionmaker)
        first = await _build(index, database)
        started = time.perf_counter()
        await asyncio.gather(*index._preparing)  # the reverse maps, built beside
        prepared = time.perf_counter() - started
        compiled = index._compiled[POLICY]
        print(
            f"first compile (full): {first:.2f} s, {len(compiled.templates):,} instruments, "
            f"{len(compiled.snapshot.issuers):,} issuers; then its reverse maps for the "
            f"incremental builds (checks answered meanwhile): {prepared:.2f} s"
        )
        started = time.perf_counter()
        await _load(database, kind, companies, touched, seed=1)
        print(f"load of {touched:,} issuers ({kind}): {time.perf_counter() - started:.2f} s")

        incremental = await _build(index, database)
        assert index.incremental_builds == 1, "not built incrementally (see the log)"
        baseline = VerdictIndex(database.sessionmaker)
        full = await _build(baseline, database)
        assert baseline.builds == 1
        assert baseline.incremental_builds == 0
        same = index._compiled[POLICY].templates == baseline._compiled[POLICY].templates
        assert same, "the incremental compilation differs from the full rebuild"
        del baseline
        print(
            f"up to date after the load: incremental {incremental:.3f} s, full rebuild "
            f"{full:.2f} s (the baseline, same run) = {full / incremental:.1f}x faster; "
            f"templates equal: {same}"
        )

        # End to end: the index running, its watcher polling.
        running = VerdictIndex(database.sessionmaker, poll_seconds=poll)
        running._compiled = dict(index._compiled)
        running._dependents = dict(index._dependents)
        await running.start()
        try:
            await asyncio.sleep(poll * 3)
            assert running.lookup(POLICY[0], utcnow(), POLICY[1]) is not None
            await _load(database, kind, companies, touched, seed=2)
            loaded = time.perf_counter()
            async with database.sessionmaker() as session:
                version = (await read_watermark(session))[0]
            while True:
                found = running.lookup(POLICY[0], utcnow(), POLICY[1])
                if found is not None and found.data_version == version:
                    break
                await asyncio.sleep(0.005)
            waited = time.perf_counter() - loaded
        finally:
            await running.stop()
        print(
            f"end to end (watcher polling every {poll} s): checks answered from the index at "
            f"the new data version {waited:.3f} s after the load's commit; builds: "
            f"{running.builds} ({running.incremental_builds} incremental); peak RSS "
            f"{rss_mb():.0f} MB (target: < 1 s)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=20_000)
    parser.add_argument("--extra-bonds", type=int, default=4)
    parser.add_argument("--touched", type=int, default=1_000)
    parser.add_argument("--kind", choices=("facts", "issuers"), default="facts")
    parser.add_argument("--poll", type=float, default=0.1)
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.companies,
            arguments.extra_bonds,
            arguments.touched,
            arguments.kind,
            arguments.poll,
        )
    )
