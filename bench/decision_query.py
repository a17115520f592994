"""Benchmark: auditors' listings (GET /v1/decisions) on a decision log of millions of rows.

Fills a scratch Postgres database (migrated to head) with N decisions by INSERT ... SELECT
generate_series: realistic column values (100,000 ISINs, a third as many issuers, four
policies of which one is a 2 % client mandate, mostly "allowed" verdicts, decided_at rising
along seq over 30 days) and short payloads (no reasons). The hashes do NOT chain: a query
benchmark does not need them, and verify would reject this log. For speed the table is made
UNLOGGED and its secondary indexes are built after the fill (the same definitions the
migrations create); the append-only triggers only refuse UPDATE/DELETE, so the fill passes.

Then VACUUM ANALYZE, and through the ASGI app with httpx (one client, sequential requests):
  1. GET /healthz: the baseline of the same app and client, in the same run;
  2. GET /v1/decisions?instrument=ISIN (first page, default limit), many different ISINs;
  3. the next page of those (cursor), and a few other filters (policy, verdict, time range);
with median/p95/p99 in ms and the ratio to the baseline's median. Also the EXPLAIN (ANALYZE,
BUFFERS) of the instrument query and the table's size per row. The database is dropped after.

The log is partitioned by seq range as on a live service (``--partition-rows``, default a
tenth of the fill; all partitions made before the fill).

Usage: .venv/bin/python bench/decision_query.py [--rows 10000000] [--requests 2000]
    [--partition-rows N]
    (MAYHOLD_TEST_POSTGRES_URL picks the server; default postgres@127.0.0.1:5432)
Target: a first page by instrument under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.decisions.partitions import keep_ahead_once
from app.decisions.repository import DecisionFilters, listing_query
from app.decisions.service import PAGE_DEFAULT
from app.kit.db import Database, create_engine
from app.kit.logging import configure_logging
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.main import create_app
from tests.support.databases import scratch_database

ISINS = 100_000
CHUNK = 1_000_000
# Measured on a first run of this script (heap + indexes with these short payloads), with a
# margin: what the fill may take on disk.
BYTES_PER_ROW_ESTIMATE = 1_300
DISK_BUDGET = 15 * 1024**3

# One decision n of the fill: pseudo-random but reproducible choices from hashes of n.
FILL = """
INSERT INTO decisions
SELECT g, md5('d' || g)::uuid, t, t, policy, version, sha, 1 + g / 50000, isin, issuer,
       verdict, verdict IN ('allowed', 'watch'), 'oms-desk-' || g % 8, NULL::uuid, 'req-' || g,
       json_build_object('policy', policy, 'instruments', json_build_array(isin),
                         'as_of', NULL)::text,
       json_build_object(
           'as_of', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'data_version', 1 + g / 50000,
           'decided_at', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'decision_id', md5('d' || g)::uuid,
           'instrument', json_build_object('asset_class', 'equity', 'isin', isin),
           'issuer', json_build_object('country', 'NL', 'issuer_id', issuer,
                                       'name', 'Issuer ' || issuer || ' N.V.'),
           'may_hold', verdict IN ('allowed', 'watch'),
           'policy', json_build_object('key', policy, 'sha256', sha, 'version', version),
           'reasons', json_build_array(),
           'requested_isin', isin,
           'verdict', verdict)::text,
       md5('p' || g) || md5('q' || g),
       md5('h' || g) || md5('k' || g)
FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
CROSS JOIN LATERAL (
    SELECT timestamptz '2026-10-01 00:00:00+00' + g * CAST(:spacing AS interval) AS t,
           abs(hashint8(g)::bigint) % :isins AS n,
           abs(hashint8(g * 7 + 1)::bigint) % 100 AS v,
           g % 100 AS p
) AS r
CROSS JOIN LATERAL (
    SELECT 'XS' || lpad(n::text, 9, '0') || '0' AS isin,
           'I' || lpad((n / 3)::text, 7, '0') AS issuer,
           CASE WHEN v < 80 THEN 'allowed' WHEN v < 88 THEN 'watch'
                WHEN v < 96 THEN 'excluded' ELSE 'unknown' END AS verdict,
           CASE WHEN p < 70 THEN 'rpf' WHEN p < 92 THEN 'asr'
                WHEN p < 98 THEN 'dk-pension' ELSE 'mandate-x' END AS policy,
           1 + (g % 3)::int AS version,
           repeat(md5(CASE WHEN p < 70 THEN 'rpf' ELSE 'other' END), 2) AS sha
) AS c
"""


def isin(n: int) -> str:
    return f"XS{n:09d}0"


def affordable_rows(wanted: int) -> tuple[int, str | None]:
    free = shutil.disk_usage("/var/lib/postgresql" if Path("/var/lib/postgresql").exists() else "/")
    budget = min(DISK_BUDGET, free.free - 5 * 1024**3)
    most = budget // BYTES_PER_ROW_ESTIMATE
    if wanted <= most:
        return wanted, None
    rows = max(CHUNK, most // CHUNK * CHUNK)
    return rows, (
        f"{wanted:,} rows would need ~{wanted * BYTES_PER_ROW_ESTIMATE / 1024**3:.1f} GB; "
        f"{budget / 1024**3:.1f} GB may be used: filling {rows:,}"
    )


PARTITIONS = (
    "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'decisions'::regclass"
)


async def fill(engine: AsyncEngine, rows: int) -> None:
    spacing = dt.timedelta(seconds=30 * 86400 / rows)
    async with engine.begin() as conn:
        # Postgres: the table is partitioned by seq range; its partitions hold the rows.
        for (partition,) in await conn.execute(text(PARTITIONS)):
            await conn.execute(text(f"ALTER TABLE {partition} SET UNLOGGED"))
        indexes = (
            await conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE tablename = 'decisions' AND indexname LIKE 'ix_%'"
                )
            )
        ).all()
        unique = (
            await conn.execute(
                text(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'decisions'::regclass AND contype = 'u'"
                )
            )
        ).all()
        for name, _ in unique:
            await conn.execute(text(f"ALTER TABLE decisions DROP CONSTRAINT {name}"))
        for name, _ in indexes:
            await conn.execute(text(f"DROP INDEX {name}"))
    started = time.perf_counter()
    for first in range(1, rows + 1, CHUNK):
        last = min(first + CHUNK - 1, rows)
        async with engine.begin() as conn:
            await conn.execute(
                text(FILL), {"first": first, "last": last, "spacing": spacing, "isins": ISINS}
            )
        elapsed = time.perf_counter() - started
        print(f"  filled {last:>12,} rows  {elapsed:7.1f} s  ({last / elapsed:,.0f} rows/s)")
    started = time.perf_counter()
    async with engine.begin() as conn:
        for name, definition in unique:
            await conn.execute(text(f"ALTER TABLE decisions ADD CONSTRAINT {name} {definition}"))
        for _, definition in indexes:
            # A partitioned index is listed "ON ONLY decisions" (the parent alone): built
            # on every partition here.
            await conn.execute(text(definition.replace(" ON ONLY ", " ON ", 1)))
    print(f"  indexes built again in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM (ANALYZE) decisions"))
    print(f"  VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")


async def sizes(engine: AsyncEngine, rows: int) -> None:
    async with engine.connect() as conn:
        heap, indexes = (
            await conn.execute(
                text(
                    # heap+toast, of every partition
                    "SELECT sum(pg_table_size(inhrelid)), sum(pg_indexes_size(inhrelid)) "
                    "FROM pg_inherits WHERE inhparent = 'decisions'::regclass"
                )
            )
        ).one()
        payload = (
            await conn.execute(text("SELECT avg(octet_length(payload)) FROM decisions"))
        ).scalar_one()
    print(
        f"table: heap {heap / 1024**3:.2f} GB, indexes {indexes / 1024**3:.2f} GB; per row "
        f"{heap / rows:.0f} B heap + {indexes / rows:.0f} B indexes (payload {payload:.0f} B)"
    )


def summary(label: str, latencies: list[float], baseline: float | None) -> float:
    ordered = sorted(latencies)
    median = statistics.median(ordered) * 1000
    p95 = ordered[int(len(ordered) * 0.95)] * 1000
    p99 = ordered[int(len(ordered) * 0.99)] * 1000
    ratio = f"  {median / baseline:6.1f}x baseline" if baseline else ""
    print(
        f"{label:<46} n={len(ordered):>5}  median {median:7.2f} ms  p95 {p95:7.2f} ms  "
        f"p99 {p99:7.2f} ms{ratio}"
    )
    return median


async def timed(
    requests: list[str], get: Callable[[str], Awaitable[httpx.Response]]
) -> tuple[list[float], list[Any]]:
    latencies: list[float] = []
    bodies: list[Any] = []
    for url in requests:
        started = time.perf_counter()
        response = await get(url)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return latencies, bodies


async def measure(url: str, count: int) -> None:
    settings = Settings(database_url=url, index_enabled=False)
    database = Database.from_settings(settings)
    async with database.sessionmaker() as session, session.begin():
        issued = await auth_service.create_key(
            session, name="auditor", scopes=frozenset({Scope.decisions_read})
        )
    app = create_app(settings, database)
    rng = random.Random(7)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"Authorization": f"Bearer {issued.key}"},
            ) as client,
        ):
            for _ in range(50):  # warm the pool, the key cache, the code paths
                await client.get("/healthz")
                await client.get(f"/v1/decisions?instrument={isin(rng.randrange(ISINS))}")
            healthz, _ = await timed(["/healthz"] * count, client.get)
            baseline = summary("GET /healthz (baseline)", healthz, None)
            chosen = rng.sample(range(ISINS), count)
            first, pages = await timed(
                [f"/v1/decisions?instrument={isin(n)}" for n in chosen], client.get
            )
            summary(f"instrument=ISIN, first page (limit {PAGE_DEFAULT})", first, baseline)
            returned = [len(p["decisions"]) for p in pages]
            print(f"  {statistics.fmean(returned):.1f} decisions per page on average")
            # By id: not the partition key, so one probe of each partition's decision_id index.
            ids = [p["decisions"][-1]["decision_id"] for p in pages if p["decisions"]]
            by_id, _ = await timed([f"/v1/decisions/{i}" for i in ids], client.get)
            summary("GET /v1/decisions/{id}", by_id, baseline)
            following = [
                f"/v1/decisions?instrument={isin(n)}&cursor={p['next_cursor']}"
                for n, p in zip(chosen, pages, strict=True)
                if p["next_cursor"]
            ]
            if following:
                second, _ = await timed(following, client.get)
                summary("instrument=ISIN, next page (cursor)", second, baseline)
            few = max(count // 10, 20)
            others = {
                "issuer_id=ID, first page": [
                    f"/v1/decisions?issuer_id=I{rng.randrange(ISINS // 3):07d}" for _ in range(few)
                ],
                "policy=mandate-x (2 %), first page": ["/v1/decisions?policy=mandate-x"] * few,
                "verdict=unknown, from=day 20, first page": [
                    "/v1/decisions?verdict=unknown&from=2026-10-21T00:00:00Z"
                ]
                * few,
                "instrument=ISIN&from=day 15&to=day 16": [
                    f"/v1/decisions?instrument={isin(rng.randrange(ISINS))}"
                    "&from=2026-10-16T00:00:00Z&to=2026-10-17T00:00:00Z"
                    for _ in range(few)
                ],
            }
            for label, urls in others.items():
                latencies, _ = await timed(urls, client.get)
                summary(label, latencies, baseline)
    finally:
        await database.dispose()


async def explain(engine: AsyncEngine) -> None:
    query = listing_query(DecisionFilters(isin=isin(4242)), after_seq=0, limit=PAGE_DEFAULT + 1)
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    async with engine.connect() as conn:
        plan = await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"))
        print("EXPLAIN (ANALYZE, BUFFERS) of the first page for one ISIN:")
        for (line,) in plan:
            print(f"  {line}")


async def main(wanted: int, count: int, partition_rows: int | None) -> None:
    rows, note = affordable_rows(wanted)
    # Partitions as the service keeps them (default: ten over the fill), all made up front.
    size = partition_rows or -(-rows // 10)
    with tempfile.TemporaryDirectory() as directory:
        async with scratch_database("postgresql", Path(directory)) as url:
            await upgrade_to_head_async(
                Settings(database_url=url, decision_partition_min_rows=size)
            )
            database = Database.from_settings(Settings(database_url=url))
            try:
                await keep_ahead_once(database, ahead=-(-rows // size) + 1, min_rows=size, days=0)
            finally:
                await database.dispose()
            print(f"partitions of {size:,} decisions")
            engine = create_engine(url, pooled=False)
            try:
                print(f"filling {rows:,} decisions (hashes do not chain: a query benchmark)")
                if note:
                    print(f"  note: {note}")
                await fill(engine, rows)
                await sizes(engine, rows)
                await explain(engine)
            finally:
                await engine.dispose()
            await measure(url, count)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--partition-rows", type=int, help="decisions per partition (default: rows / 10)"
    )
    args = parser.parse_args()
    configure_logging("WARNING", "json")  # no access log line per request in the figures
    asyncio.run(main(args.rows, args.requests, args.partition_rows))
