"""Benchmark: loading 1,000,000-row `instruments` and `facts` files into Postgres.

Measures rows/second of the real load path (stream -> validate every row -> COPY to staging ->
SQL checks -> publish, in one transaction), and, as the baseline of the same run on the same
machine, Postgres' own `COPY ... FROM STDIN (FORMAT csv)` of the same file into a bare table
(no validation at all). Also reports peak memory for a 100k-row and a 1M-row file: flat memory
means the file is streamed, not held.

Usage:
    .venv/bin/python bench/load_datasets.py [--rows 1000000] [--issuers 100000]
    (MAYHOLD_TEST_POSTGRES_URL picks the server; default postgres@127.0.0.1:5432)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
from stdnum import isin as stdnum_isin

from app.auth.schemas import Actor
from app.datasets import service
from app.datasets.schemas import DatasetKind
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from tests.support.databases import scratch_database

METRICS: tuple[tuple[str, Callable[[int], str]], ...] = (
    ("revenue_pct.tobacco", lambda i: f"{(i * 7) % 1000 / 10}"),
    ("revenue_pct.thermal_coal_extraction", lambda i: f"{(i * 13) % 1000 / 10}"),
    ("controversial_weapons.involved", lambda i: "true" if i % 97 == 0 else "false"),
    ("norms.status", lambda i: ("compliant", "watchlist", "non_compliant")[i % 3]),
)


def isin_for(n: int) -> str:
    body = f"XS{n:09d}"
    return body + stdnum_isin.calc_check_digit(body)


def write_files(directory: Path, issuers: int, rows: int) -> dict[str, Path]:
    paths = {
        "issuers": directory / "issuers.csv",
        "instruments": directory / f"instruments_{rows}.csv",
        "facts": directory / f"facts_{rows}.csv",
    }
    with paths["issuers"].open("w") as f:
        f.write("issuer_id,name,kind,country,lei,parent_issuer_id,parent_control_pct\n")
        for i in range(issuers):
            parent = f"I{i - 1:07d},60" if i % 10 else ","
            f.write(f"I{i:07d},Issuer {i} N.V.,company,NL,,{parent}\n")
    with paths["instruments"].open("w") as f:
        f.write("isin,issuer_id,asset_class,name\n")
        for n in range(rows):
            f.write(f"{isin_for(n)},I{n % issuers:07d},equity,Share {n}\n")
    with paths["facts"].open("w") as f:
        f.write("issuer_ref,metric,value,as_of\n")
        for n in range(rows):
            issuer = n % issuers
            metric, value = METRICS[(n // issuers) % len(METRICS)]
            year = 2000 + n // (issuers * len(METRICS))
            f.write(f"I{issuer:07d},{metric},{value(n)},{year}-06-30\n")
    return paths


async def timed_load(
    database: Database, kind: DatasetKind, path: Path, provider: str | None
) -> tuple[float, int]:
    upload = service.spool_path(str(path))
    started = time.perf_counter()
    async with database.sessionmaker() as session, session.begin():
        dataset, _ = await service.load_dataset(
            session,
            Actor(name="bench", key_id=None),
            kind,
            upload,
            provider=provider,
            as_of=None,
        )
        rows = dataset.rows
    upload.discard()
    return time.perf_counter() - started, rows


async def copy_baseline(url: str, path: Path, columns: str) -> float:
    """Postgres parsing the same CSV itself: the fastest any load could go."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f"CREATE TEMP TABLE baseline ({columns})")
        started = time.perf_counter()
        with path.open("rb") as source:
            await conn.copy_to_table("baseline", source=source, format="csv", header=True)
        return time.perf_counter() - started
    finally:
        await conn.close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(rows: int, issuers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"generating files: {issuers:,} issuers, {rows:,} instruments, {rows:,} facts")
        (directory / "small").mkdir()
        small = write_files(directory / "small", issuers, max(rows // 10, 1))
        large = write_files(directory, issuers, rows)
        print(f"  facts file: {large['facts'].stat().st_size / 1e6:.0f} MB")
        async with scratch_database("postgresql", directory) as url:
            await upgrade_to_head_async(Settings(database_url=url))
            database = Database.from_settings(Settings(database_url=url))
            try:
                seconds, count = await timed_load(
                    database, DatasetKind.issuers, small["issuers"], None
                )
                print(
                    f"issuers   {count:>9,} rows  {seconds:6.2f} s  {count / seconds:>9,.0f} rows/s"
                )
                results = []
                for label, files in (("100k-class", small), ("1M-class", large)):
                    for kind, provider in (
                        (DatasetKind.instruments, None),
                        (DatasetKind.facts, "msci"),
                    ):
                        before = peak_rss_mb()
                        seconds, count = await timed_load(
                            database, kind, files[kind.value], provider
                        )
                        results.append((label, kind.value, count, seconds, peak_rss_mb()))
                        print(
                            f"{kind.value:<9} {count:>9,} rows  {seconds:6.2f} s  "
                            f"{count / seconds:>9,.0f} rows/s  peak RSS {peak_rss_mb():.0f} MB "
                            f"(before {before:.0f} MB)"
                        )
                copy_instruments = await copy_baseline(
                    url,
                    large["instruments"],
                    "isin text, issuer_id text, asset_class text, name text",
                )
                copy_facts = await copy_baseline(
                    url, large["facts"], "issuer_ref text, metric text, value text, as_of date"
                )
            finally:
                await database.dispose()
        print("\nbaseline (same run): Postgres COPY FROM STDIN of the same CSV, no validation")
        for (_, kind_name, count, seconds, _), baseline in zip(
            results[2:], (copy_instruments, copy_facts), strict=True
        ):
            ours, theirs = count / seconds, count / baseline
            print(
                f"{kind_name:<9} mayhold {ours:>9,.0f} rows/s   COPY {theirs:>9,.0f} rows/s   "
                f"ratio {ours / theirs:.3f} of COPY"
            )
        print(f"\ncores: {os.cpu_count()}  target: >= 50,000 rows/s per kind")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--issuers", type=int, default=100_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.issuers))
