"""The incremental index: after any sequence of loads, the compilation built from the previous
one equals a full rebuild at the same data version, under every shipped policy.

A property test over a small demo universe (sovereigns, subsidiaries, state-owned companies,
derivatives, lifecycle funds, plus an index held by issuer references and a derivative on it),
real Postgres and SQLite. Hypothesis generates batches of loads (issuers re-parented, made
state-owned or sovereign, instruments moved or added, facts, country facts, list entries,
and now and then a fund composition, cycles included); each batch goes through the
real loaders (``datasets.load_dataset``: a dataset with provenance, as a data steward's
file). The database accumulates across examples: each example starts from whatever the
previous ones loaded, a state a full rebuild must agree with as much as any other.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets import service as datasets
from app.datasets.repository import SANCTIONS_LIST_KINDS
from app.datasets.schemas import RESOLUTION_KIND, DatasetKind
from app.demo import EUROPE_FUND, LOADER, WORLD_FUND, load_demo, load_rows, make_isin
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.kit.time import utcnow
from app.screening import index as index_module
from app.screening.applied import applied_at
from app.screening.index import IndexKey, VerdictIndex, _full, read_watermark
from app.screening.repository import INCREMENTAL_KINDS
from tests.support.databases import DIALECTS, scratch_database

COMPANIES = 60
POLICIES: tuple[IndexKey, ...] = (
    ("rpf", "client"),
    ("asr", "client"),
    ("dk-pension", "own"),
    ("pensura", "client"),
)
INDEX = make_isin("XS", 990_001)  # an index: a composition, no instrument
INDEX_OPTION = make_isin("XS", 990_002)  # a derivative on the index
ISSUER_COLUMNS = [
    "issuer_id",
    "name",
    "kind",
    "country",
    "parent_issuer_id",
    "parent_control_pct",
    "state_owner_country",
    "state_owner_pct",
    "msci_issuer_id",
]
TODAY = utcnow().date()
FRESH = TODAY - dt.timedelta(days=30)

companies = st.integers(0, COMPANIES - 1).map(lambda n: f"CO{n:05d}")
issuer_rows = st.builds(
    lambda issuer_id, parent, pct, owner, owner_pct, country, sovereign, msci: {
        "issuer_id": issuer_id,
        "name": f"Renamed {issuer_id}",
        "kind": "sovereign" if sovereign else "company",
        "country": country,
        "parent_issuer_id": parent if parent != issuer_id else "",
        "parent_control_pct": pct if parent and parent != issuer_id else "",
        "state_owner_country": owner,
        "state_owner_pct": owner_pct if owner else "",
        "msci_issuer_id": msci,
    },
    companies,
    st.one_of(st.just(""), companies),
    st.sampled_from(["", "30", "50.01", "100"]),
    st.sampled_from(["", "CN", "RU", "NO"]),
    st.sampled_from(["49.99", "51", "100"]),
    st.sampled_from(["NL", "RU", "CN", "US", "VE"]),
    st.sampled_from([False, False, False, False, True]),
    st.sampled_from(["", "IID000000000005", "IID000000000007", "IID-FRESH"]),
)
instrument_rows = st.builds(
    lambda number, issuer_id, cls, under: {
        "isin": make_isin("XS", number),
        "issuer_id": issuer_id,
        "asset_class": cls if not under else "derivative",
        "underlying_isin": under,
        "name": f"Instrument {number}",
    },
    # existing shares (moved to another issuer) and new numbers
    st.one_of(st.integers(0, COMPANIES - 1), st.integers(700_000, 700_020)),
    companies,
    st.sampled_from(["equity", "corporate_bond"]),
    st.sampled_from(["", "", make_isin("XS", 3), INDEX, make_isin("XS", 11)]),
)
fact_rows = st.one_of(
    st.builds(
        lambda issuer_id, value: (
            "iss",
            {"issuer_ref": issuer_id, "metric": "revenue_pct.tobacco", "value": value},
        ),
        companies,
        st.sampled_from(["0", "12", "80"]),
    ),
    st.builds(
        lambda issuer_id, value: (
            "robeco",
            {"issuer_ref": issuer_id, "metric": "norms.status", "value": value},
        ),
        companies,
        st.sampled_from(["compliant", "watchlist", "non_compliant"]),
    ),
    st.builds(
        lambda country, value: (
            "internal",
            {"issuer_ref": country, "metric": "country.sanctions.financial", "value": value},
        ),
        st.sampled_from(["NL", "CN", "NO", "US"]),
        st.sampled_from(["none", "EU;US"]),
    ),
)
list_rows = st.builds(
    lambda policy, issuer_id, kind: {
        "policy": policy,
        "issuer_ref": issuer_id,
        "list": kind,
        "reason": f"{kind} by the committee",
        "decided_on": FRESH.isoformat(),
    },
    st.sampled_from(["rpf", "asr", "dk-pension"]),
    companies,
    st.sampled_from(["exclusion", "inclusion", "dialogue", "focus"]),
)
FUND_OF_FUNDS = make_isin("XS", 990_003)
fund_rows = st.builds(
    lambda fund, refs, weight: (
        [
            {"fund_isin": fund, "holding_ref": ref, "weight_pct": weight}
            for ref in sorted(set(refs) - {fund})
        ]
        or [{"fund_isin": fund, "holding_ref": "CO00019", "weight_pct": weight}]
    ),
    st.sampled_from([INDEX, EUROPE_FUND, FUND_OF_FUNDS]),
    st.lists(
        st.sampled_from(
            [
                make_isin("XS", 1),
                make_isin("XS", 11),
                "CO00019",
                "IID000000000007",
                "IID-FRESH",
                INDEX,
                WORLD_FUND,
                FUND_OF_FUNDS,  # a cycle, with the fund of funds holding the index
            ]
        ),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["20", "19.5", "12"]),
)


list_replacements = st.builds(
    lambda policy, rows: [{**row, "policy": policy} for row in rows],
    st.sampled_from(["rpf", "asr"]),
    st.lists(list_rows, max_size=2),
)
issuer_loads = st.tuples(st.just("issuers"), st.lists(issuer_rows, min_size=1, max_size=4))
instrument_loads = st.tuples(
    st.just("instruments"), st.lists(instrument_rows, min_size=1, max_size=3)
)
OTHER_LOADS = (
    instrument_loads,
    st.tuples(st.just("facts"), st.lists(fact_rows, min_size=1, max_size=4)),
    st.tuples(st.just("list-entries"), st.lists(list_rows, min_size=1, max_size=2)),
    st.tuples(st.just("list-replace"), list_replacements.map(lambda rows: [rows])),
)
# In about half the batches.
FUND_LOADS = st.tuples(st.just("fund-holdings"), fund_rows.map(lambda rows: [rows]))


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, list[Any]]]:
    """An issuers load (the most varied kind: parents, owners, sovereigns, identifiers), each
    other kind with even odds, a fund composition too; in a random order."""
    chosen = [draw(issuer_loads)]
    chosen += [draw(other) for other in OTHER_LOADS if draw(st.booleans())]
    if draw(st.booleans()):
        chosen.append(draw(FUND_LOADS))
    shuffled: list[tuple[str, list[Any]]] = draw(st.permutations(chosen))
    return shuffled


KINDS = {"issuers", "instruments", "facts", "list-entries", "list-replace", "fund-holdings"}


def _unique(rows: list[dict[str, str]], key: str) -> list[dict[str, str]]:
    """One row per key (a file names each once): the last wins."""
    return list({row[key]: row for row in rows}.values())


async def _load(database: Database, kind: str, rows: list[Any]) -> None:
    async with database.sessionmaker() as session, session.begin():
        if kind == "issuers":
            await load_rows(
                session, DatasetKind.issuers, _unique(rows, "issuer_id"), ISSUER_COLUMNS, "i.csv"
            )
        elif kind == "instruments":
            columns = ["isin", "issuer_id", "asset_class", "underlying_isin", "name"]
            await load_rows(
                session, DatasetKind.instruments, _unique(rows, "isin"), columns, "n.csv"
            )
        elif kind == "facts":
            for provider in sorted({p for p, _ in rows}):
                chosen = [r for p, r in rows if p == provider]
                chosen = list({(r["issuer_ref"], r["metric"]): r for r in chosen}.values())
                await load_rows(
                    session,
                    DatasetKind.facts,
                    chosen,
                    ["issuer_ref", "metric", "value", "as_of"],
                    "f.csv",
                    provider=provider,
                    as_of=TODAY,
                )
        elif kind == "list-entries":
            chosen = list({(r["policy"], r["issuer_ref"], r["list"]): r for r in rows}.values())
            await load_rows(
                session,
                DatasetKind.list_entries,
                chosen,
                ["policy", "issuer_ref", "list", "reason", "decided_on"],
                "l.csv",
            )
        elif kind == "list-replace":
            (entries,) = rows
            chosen = list({(r["issuer_ref"], r["list"]): r for r in entries}.values())
            await _replace_list(session, chosen)
        else:
            (composition,) = rows
            await load_rows(
                session,
                DatasetKind.fund_holdings,
                composition,
                ["fund_isin", "holding_ref", "weight_pct"],
                "h.csv",
                as_of=TODAY,
            )


async def _replace_list(session: AsyncSession, rows: list[dict[str, str]]) -> None:
    """A list-entries load replacing a policy's list (``mode=replace``; possibly empty)."""
    columns = ["policy", "issuer_ref", "list", "reason", "decided_on"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    content = buffer.getvalue().encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield content

    upload = await datasets.spool(chunks(), "replace.csv")
    try:
        await datasets.load_dataset(
            session,
            LOADER,
            DatasetKind.list_entries,
            upload,
            provider=None,
            as_of=None,
            mode="replace",
            policy=rows[0]["policy"] if rows else "rpf",
        )
    finally:
        upload.discard()


async def _setup(database: Database) -> None:
    async with database.sessionmaker() as session, session.begin():
        await load_demo(session, COMPANIES)
    # An index held by ISIN, issuer id and MSCI id references, and an option on it.
    await _load(
        database,
        "fund-holdings",
        [
            [
                {"fund_isin": INDEX, "holding_ref": make_isin("XS", 3), "weight_pct": "40"},
                {"fund_isin": INDEX, "holding_ref": "CO00019", "weight_pct": "30"},
                {"fund_isin": INDEX, "holding_ref": "IID000000000007", "weight_pct": "30"},
            ]
        ],
    )
    await _load(
        database,
        "instruments",
        [
            {
                "isin": INDEX_OPTION,
                "issuer_id": "CO00000",
                "asset_class": "derivative",
                "underlying_isin": INDEX,
                "name": "Option on the index",
            },
            # A fund of funds: holds a lifecycle fund and the index.
            {
                "isin": FUND_OF_FUNDS,
                "issuer_id": "CO00000",
                "asset_class": "fund",
                "underlying_isin": "",
                "name": "Fund of funds",
            },
        ],
    )
    async with database.sessionmaker() as session, session.begin():
        await load_rows(
            session,
            DatasetKind.fund_holdings,
            [
                {"fund_isin": FUND_OF_FUNDS, "holding_ref": r, "weight_pct": "50"}
                for r in (WORLD_FUND, INDEX)
            ]
            + [{"fund_isin": EUROPE_FUND, "holding_ref": make_isin("XS", 1), "weight_pct": "100"}],
            ["fund_isin", "holding_ref", "weight_pct"],
            "fof.csv",
            as_of=FRESH,
        )


async def _compare(database: Database, index: VerdictIndex) -> None:
    async with database.sessionmaker() as session:
        mark = await read_watermark(session)
    index._watermark = mark
    for key in POLICIES:
        await index._build(key)
        compiled = index._compiled[key]
        assert compiled.watermark == mark, f"{key}: the build failed (see the log)"
        async with database.sessionmaker() as session:
            now = utcnow()
            applied = await applied_at(session, key[0], now, account=key[1])
            full = await _full(session, applied, mark, now)
        assert compiled.templates.keys() == full.templates.keys(), key
        for isin, template in full.templates.items():
            assert compiled.templates[isin] == template, (key, isin)
        # The snapshot too: checks of what the templates do not hold (an issuer, an unknown
        # ISIN), lists and position limits read it.
        assert compiled.snapshot == full.snapshot, key


@contextmanager
def universe(dialect: str, directory: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, Database]]:
    """A migrated database with the universe loaded, and the loop every example runs on."""
    loop = asyncio.new_event_loop()
    scratch = scratch_database(dialect, directory)
    url = loop.run_until_complete(scratch.__aenter__())
    settings_ = Settings(database_url=url, log_level="WARNING")
    database = Database.from_settings(settings_)
    try:
        loop.run_until_complete(upgrade_to_head_async(settings_))
        loop.run_until_complete(_setup(database))
        yield loop, database
    finally:
        loop.run_until_complete(database.dispose())
        loop.run_until_complete(scratch.__aexit__(None, None, None))
        loop.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_incremental_compilation_equals_a_full_rebuild(dialect: str, tmp_path: Path) -> None:
    with universe(dialect, tmp_path) as (loop, database):
        # Incremental whatever the share touched (a small universe: a country's facts touch a
        # fifth of it), unless a load cannot be bounded.
        index = VerdictIndex(database.sessionmaker, incremental_share=1.0)
        loop.run_until_complete(_compare(database, index))  # the first: full
        assert index.incremental_builds == 0
        seen: Counter[str] = Counter()

        @settings(
            max_examples=25,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            # No shrinking: the database accumulates, a replay starts from another state.
            phases=[Phase.explicit, Phase.generate],
        )
        @given(batches())
        def check(batch: list[tuple[str, list[Any]]]) -> None:
            async def run() -> None:
                for kind, rows in batch:
                    seen[kind] += 1
                    await _load(database, kind, rows)
                await _compare(database, index)

            loop.run_until_complete(run())

        check()
        print(f"loads: {dict(seen)}; builds {index.builds}, incremental {index.incremental_builds}")
        assert set(seen) == KINDS, seen  # every kind of load was tried
        # Every batch was applied incrementally (the share touched is not limited here).
        assert index.incremental_builds == index.builds - len(POLICIES), index.why_full


@pytest.mark.parametrize("dialect", DIALECTS)
def test_what_cannot_be_bounded_takes_a_full_rebuild(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with universe(dialect, tmp_path) as (loop, database):
        index = VerdictIndex(database.sessionmaker)
        key = POLICIES[0]

        async def load_then_build(
            kind: DatasetKind, rows: list[dict[str, str]], **options: str
        ) -> str | None:
            """Why the build after the load was full; None: it was incremental."""
            builds, incremental = index.builds, index.incremental_builds
            async with database.sessionmaker() as session, session.begin():
                await load_rows(session, kind, rows, list(rows[0]), "x.csv", as_of=TODAY, **options)
            async with database.sessionmaker() as session:
                index._watermark = await read_watermark(session)
            await index._build(key)
            assert index.builds == builds + 1
            return None if index.incremental_builds > incremental else index.why_full[key]

        async def run() -> None:
            await _compare(database, index)
            assert index.why_full[key] == "no compilation yet"
            embargo = {"country": "CN", "authority": "EU", "regime": "arms", "since": "2020-01-01"}
            why = await load_then_build(DatasetKind.arms_embargoes, [embargo])
            assert why is not None
            assert why.startswith("arms-embargoes load")
            holdings = [{"fund_isin": INDEX, "holding_ref": "CO00019", "weight_pct": "100"}]
            why = await load_then_build(DatasetKind.fund_holdings, holdings)
            assert why is None  # a composition: incremental
            # More than the share allowed touched (here: an issuer and its few instruments).
            index._incremental_share = 0.001
            fact = {"issuer_ref": "CO00005", "metric": "norms.status", "value": "compliant"}
            why = await load_then_build(DatasetKind.facts, [fact], provider="robeco")
            assert why is not None
            assert why.endswith("instruments affected"), why
            index._incremental_share = 1.0
            # One issuer's facts: incremental.
            fact = {"issuer_ref": "CO00003", "metric": "norms.status", "value": "watchlist"}
            async with database.sessionmaker() as session, session.begin():
                await load_rows(
                    session,
                    DatasetKind.facts,
                    [fact],
                    list(fact),
                    "f.csv",
                    provider="robeco",
                    as_of=TODAY,
                )
            incremental = index.incremental_builds
            await _compare(database, index)  # (the other policies: from before the embargo)
            assert index.incremental_builds == incremental + 1

            # An incremental build that fails (a bug, a lost connection): the full one instead.
            async def broken(*_: object) -> None:
                raise RuntimeError("broken")

            monkeypatch.setattr(index_module, "_incremental", broken)
            fact = {"issuer_ref": "CO00005", "metric": "norms.status", "value": "watchlist"}
            why = await load_then_build(DatasetKind.facts, [fact], provider="robeco")
            assert why == "the incremental build failed: RuntimeError('broken')"
            assert index._compiled[key].watermark == index._watermark

        loop.run_until_complete(run())


def test_every_dataset_kind_is_either_bounded_or_rebuilt_in_full() -> None:
    """Fail closed: a kind the incremental build does not bound makes it rebuild in full, and
    each kind there is has been placed on one side (a new kind must be placed too)."""
    full = {"arms-embargoes", *SANCTIONS_LIST_KINDS}
    assert not INCREMENTAL_KINDS & full
    assert INCREMENTAL_KINDS | full == {*(kind.value for kind in DatasetKind), RESOLUTION_KIND}
