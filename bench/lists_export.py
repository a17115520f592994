"""Benchmark: exporting a large instrument-level list (CSV), against Postgres' own COPY.

Loads a generated universe (`app.demo.generate`: N companies, ~1.22 instruments each, plus
sovereigns and vendor data) into a fresh Postgres database through the real loaders, then, for
policy rpf at the current time (the database path: no compiled index):
  1. plan + read: the list token, the full snapshot and LEIs (what any list costs first);
  2. compute: every instrument's verdict and the list's rows, nothing rendered;
  3. stream: the same rows rendered as the endpoint streams them (CSV chunks), already computed;
  4. end to end: read + compute + stream, as `GET /v1/lists/rpf` and `mayhold lists export` do;
  5. baseline: the list's rows put in a table, then `COPY (SELECT ... ORDER BY isin) TO STDOUT
     (FORMAT csv, HEADER)`, the fastest Postgres itself can write those rows.
Reports rows/second, the stream/COPY ratio (target >= 0.6) and peak memory (RSS) per phase.
``--compare DIR``: another checkout's ``app/lists/formats.py`` renders the same computed rows
too (3 again), in the same run: its rate, and whether the bytes are identical.

Usage: .venv/bin/python bench/lists_export.py [--companies 100000] [--extra-bonds 4]
       [--compare DIR]
(100,000 companies with 4 more bonds each: about 522,000 instruments)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import asyncpg
from sqlalchemy.engine import make_url

from app.kit.db import Database
from app.kit.logging import configure_logging
from app.lists import formats, service
from app.lists.repository import ListRepository
from app.lists.service import ListExport, ListRow
from bench.support import demo_postgres, rss_mb

REPEAT = 5
FORMATS = Path("app/lists/formats.py")
TABLE = """
CREATE TABLE bench_list_rows (
    issuer_id text, name text, country text, lei text, verdict text, rule_ids text,
    since date, isin text PRIMARY KEY, asset_class text
)
"""


@dataclass(frozen=True)
class Computed(ListExport):
    """The same export, its rows already computed: times the rendering alone."""

    computed: tuple[ListRow, ...] = ()

    def rows(self) -> Iterator[ListRow]:
        return iter(self.computed)


async def render(export: ListExport, keep: bool, module: ModuleType = formats) -> tuple[int, bytes]:
    """Render as the endpoint streams, into a sink that counts (or keeps, for COPY's input);
    ``module``: the ``app.lists.formats`` that renders (another checkout's, for --compare)."""
    size = 0
    parts: list[bytes] = []
    async for chunk in module.render("csv", export):
        size += len(chunk)
        if keep:
            parts.append(chunk)
    return size, b"".join(parts)


def formats_of(root: Path) -> ModuleType:
    """``app/lists/formats.py`` of another checkout, imported beside this one's (it renders
    this checkout's rows)."""
    spec = importlib.util.spec_from_file_location("compared_formats", root / FORMATS)
    assert spec is not None, root
    assert spec.loader is not None, root
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def main(companies: int, extra_bonds: int, compare: Path | None) -> None:
    async with demo_postgres(companies, extra_bonds) as (url, database):
        await run(database, url, None if compare is None else formats_of(compare))


async def best_render(computed: ListExport, module: ModuleType) -> tuple[float, bytes]:
    """The best of REPEAT renderings (a list of some 10^4 rows renders in well under a
    second): seconds, and the bytes."""
    best = float("inf")
    body = b""
    for _ in range(REPEAT):
        started = time.perf_counter()
        _, body = await render(computed, keep=True, module=module)
        best = min(best, time.perf_counter() - started)
    return best, body


async def run(database: Database, url: str, compared: ModuleType | None = None) -> None:
    base_rss = rss_mb()
    async with database.sessionmaker() as session:
        started = time.perf_counter()
        plan = await service.plan_list(session, "rpf", "instrument", None, None)
        export = await service.load_list(session, plan)
        read = time.perf_counter() - started
        started = time.perf_counter()
        await ListRepository(session).issuer_leis(plan.current.token.data_version)
        leis = time.perf_counter() - started
    instruments = len(export.current.snapshot.instruments)
    read_rss = rss_mb()
    print(
        f"1. plan + snapshot read: {read:.2f} s for {instruments:,} instruments, "
        f"{len(export.current.snapshot.issuers):,} issuers (peak RSS {base_rss:.0f} -> "
        f"{read_rss:.0f} MB; of the read, LEIs {leis:.2f} s)"
    )

    # First, so that the peak RSS it reports is that of streaming alone (RSS is a high-water mark).
    started = time.perf_counter()
    size, _ = await render(export, keep=False)
    total = time.perf_counter() - started
    print(
        f"2. end to end (compute + stream, as GET /v1/lists/rpf sends it): {total:.2f} s "
        f"(+ {read:.2f} s read), {size / 1e6:.1f} MB; peak RSS {rss_mb():.0f} MB "
        f"(+{rss_mb() - read_rss:.0f} MB over the snapshot)"
    )

    started = time.perf_counter()
    rows = tuple(export.rows())
    compute = time.perf_counter() - started
    print(
        f"3. compute verdicts and rows alone: {compute:.2f} s, {instruments / compute:,.0f} "
        f"instruments/s, {len(rows):,} rows listed"
    )

    computed = Computed(export.plan, export.current, None, rows)
    stream, body = await best_render(computed, formats)
    assert len(body) == size, "the precomputed rows render differently"
    stream_rate = len(rows) / stream
    print(
        f"4. stream alone (render computed rows as CSV, best of {REPEAT}): {stream:.3f} s, "
        f"{stream_rate:,.0f} rows/s"
    )
    other_rate = None
    if compared is not None:
        other, other_body = await best_render(computed, compared)
        other_rate = len(rows) / other
        print(
            f"4'. the same by the compared checkout's formats.py: {other:.3f} s, "
            f"{other_rate:,.0f} rows/s; this one {other / stream:.2f}x as fast; "
            + ("identical bytes" if other_body == body else "DIFFERENT BYTES")
        )
    end_to_end_rate = len(rows) / (total + read)

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(TABLE)
        await connection.copy_to_table(
            "bench_list_rows", source=io.BytesIO(body), format="csv", header=True
        )
        await connection.execute("VACUUM ANALYZE bench_list_rows")
        copied = 0

        async def sink(data: bytes) -> None:
            nonlocal copied
            copied += len(data)

        baseline = float("inf")
        for _ in range(REPEAT):
            copied = 0
            started = time.perf_counter()
            await connection.copy_from_query(
                "SELECT issuer_id, name, country, lei, verdict, rule_ids, since, isin, "
                "asset_class FROM bench_list_rows ORDER BY isin",
                output=sink,
                format="csv",
                header=True,
            )
            baseline = min(baseline, time.perf_counter() - started)
        count = await connection.fetchval("SELECT count(*) FROM bench_list_rows")
    finally:
        await connection.close()
    assert count == len(rows)
    copy_rate = count / baseline
    print(
        f"5. Postgres COPY (SELECT ... ORDER BY isin) TO STDOUT (FORMAT csv), best of {REPEAT}: "
        f"{baseline:.3f} s, "
        f"{copy_rate:,.0f} rows/s, {copied / 1e6:.1f} MB"
    )
    print(
        f"stream alone / COPY: {stream_rate / copy_rate:.2f} (target >= 0.6); "
        f"end to end (read + compute + stream) / COPY: {end_to_end_rate / copy_rate:.3f}"
    )
    if other_rate is not None:
        print(f"compared checkout's stream alone / COPY: {other_rate / copy_rate:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--extra-bonds", type=int, default=4)
    parser.add_argument(
        "--compare",
        type=Path,
        help="another checkout (e.g. `git archive HEAD | tar -x -C /tmp/base`): its "
        "app/lists/formats.py renders the same computed rows too, in the same run",
    )
    configure_logging("WARNING", "console")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.companies, arguments.extra_bonds, arguments.compare))
