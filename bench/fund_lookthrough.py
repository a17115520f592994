"""Benchmark: compiling the verdict index with fund look-through (issue 13, "Speed").

Loads a generated universe (``bench.support.demo_postgres``) and times one compilation of
policy rpf (full snapshot read + evaluation of every instrument + decision templates): the
baseline. Then loads F funds (asset class ``fund``) and their compositions of C constituents
each (F x C ``fund-holdings`` rows, each constituent an equity or bond of the universe drawn at
random, equal weights summing to 100) through the real loader, and times the same compilation
again. Prints both and their ratio, and the time of one check of a fund and of a plain
instrument answered from the compiled index.

Usage: .venv/bin/python bench/fund_lookthrough.py [--companies 20000] [--funds 2000]
       [--constituents 500] [--allowed-only]
Target (issue 13): 2,000 funds x 500 constituents (1M rows) compile in under 2x the time of
the same universe without funds; a fund check costs no more than a plain check.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import random
import time
from collections.abc import AsyncIterator
from decimal import Decimal

from sqlalchemy import select
from stdnum.isin import calc_check_digit

from app.datasets import service as datasets
from app.datasets.schemas import DatasetKind
from app.demo import LOADER
from app.kit.db import Database
from app.kit.time import utcnow
from app.models import InstrumentRecord
from app.screening.index import VerdictIndex, read_watermark
from bench.support import demo_postgres, rss_mb


async def _load(database: Database, kind: DatasetKind, content: bytes, name: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield content

    upload = await datasets.spool(chunks(), f"bench:{name}")
    try:
        async with database.sessionmaker() as session, session.begin():
            await datasets.load_dataset(session, LOADER, kind, upload, provider=None, as_of=None)
    finally:
        upload.discard()


def _csv(rows: list[list[str]], header: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


async def _compile(database: Database) -> tuple[float, VerdictIndex]:
    async with database.sessionmaker() as session:
        mark = await read_watermark(session)
    index = VerdictIndex(database.sessionmaker)
    index._watermark = mark
    started = time.perf_counter()
    await index._build(("rpf", "client"))
    elapsed = time.perf_counter() - started
    assert index.builds == 1, "the build failed (see the log)"
    return elapsed, index


def _lookup_cost(index: VerdictIndex, isin: str, times: int = 20_000) -> float:
    """Microseconds per answer from the compiled index (lookup + template)."""
    now = utcnow()
    started = time.perf_counter()
    for _ in range(times):
        compiled = index.lookup("rpf", now)
        assert compiled is not None
        template = compiled.templates[isin]
    assert template is not None
    return (time.perf_counter() - started) / times * 1e6


async def main(companies: int, funds: int, constituents: int, allowed_only: bool) -> None:
    async with demo_postgres(companies) as (_, database):
        baseline, plain = await _compile(database)
        print(f"compile without funds: {baseline:.2f} s (RSS {rss_mb():.0f} MB)")
        verdicts = {
            isin: template["verdict"]
            for isin, template in plain._compiled[("rpf", "client")].templates.items()
        }

        async with database.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(InstrumentRecord.isin, InstrumentRecord.issuer_id).where(
                        InstrumentRecord.asset_class.in_(("equity", "corporate_bond"))
                    )
                )
            ).all()
        universe = sorted(
            isin for isin, _ in rows if not allowed_only or verdicts.get(isin) == "allowed"
        )
        flagged = sum(verdicts.get(i) != "allowed" for i in universe) / len(universe)
        print(f"constituents drawn from {len(universe):,} instruments, {flagged:.0%} not allowed")
        manager = rows[0][1]
        rng = random.Random(13)
        fund_isins = [f"XS9{n:08d}" for n in range(funds)]
        fund_isins = [i + calc_check_digit(i) for i in fund_isins]
        weight = str(Decimal(100) / constituents)
        holdings = [
            [fund, isin, weight]
            for fund in fund_isins
            for isin in rng.sample(universe, min(constituents, len(universe)))
        ]
        started = time.perf_counter()
        await _load(
            database,
            DatasetKind.instruments,
            _csv([[f, manager, "fund"] for f in fund_isins], ["isin", "issuer_id", "asset_class"]),
            "funds.csv",
        )
        await _load(
            database,
            DatasetKind.fund_holdings,
            _csv(holdings, ["fund_isin", "holding_ref", "weight_pct"]),
            "fund-holdings.csv",
        )
        print(
            f"loaded {funds:,} funds x {constituents} constituents ({len(holdings):,} rows) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        with_funds, index = await _compile(database)
        print(
            f"compile with funds: {with_funds:.2f} s = {with_funds / baseline:.2f}x without "
            f"(target < 2x); peak RSS {rss_mb():.0f} MB"
        )
        # The watcher is not running: lookups are current for this watermark.
        _lookup_cost(index, universe[0])  # warm up
        fund_us = _lookup_cost(index, fund_isins[0])
        plain_us = _lookup_cost(index, universe[0])
        print(f"check from the index: fund {fund_us:.2f} us, plain instrument {plain_us:.2f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=20_000)
    parser.add_argument("--funds", type=int, default=2_000)
    parser.add_argument("--constituents", type=int, default=500)
    parser.add_argument(
        "--allowed-only",
        action="store_true",
        help="draw constituents from the instruments allowed without funds (clean funds: the "
        "cost of looking through, without that of rendering the reasons of excluded holdings)",
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.companies, arguments.funds, arguments.constituents, arguments.allowed_only)
    )
