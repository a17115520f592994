"""Broken and hostile files (issue 11, "Files"): every one a 422 naming its row and column, or
a clear file error; never a 500, never a traceback, nothing written."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.scopes import Scope
from app.datasets.adapters import ADAPTERS
from app.datasets.adapters.base import LoadContext, stage_limits
from app.datasets.adapters.issuers import IssuersAdapter
from app.datasets.adapters.list_entries import ListEntriesAdapter
from app.datasets.csvfile import MAX_RECORD_CHARS
from app.datasets.parsing import open_csv
from app.kit.db import Database
from app.kit.errors import InvalidInput
from app.kit.files import STALE_AFTER_SECONDS
from app.kit.settings import Settings
from app.main import create_app
from tests.conftest import MakeKey, bearer
from tests.support.checks import open_desk
from tests.support.databases import DIALECTS, scratch_database
from tests.support.datasets import datasets, load, load_ok, load_universe
from tests.support.problems import assert_problem
from tests.support.processes import free_port, mayhold

NAME_CHARS = stage_limits(IssuersAdapter)["name"]
ID_CHARS = stage_limits(IssuersAdapter)["msci_issuer_id"]
REASON_CHARS = stage_limits(ListEntriesAdapter)["reason"]


def first_error(response: httpx.Response) -> dict[str, Any]:
    problem = assert_problem(response, 422)
    assert "Nothing was loaded" in problem["detail"], problem
    error: dict[str, Any] = problem["errors"][0]
    return error


# ------------------------------------------------------- values the database cannot hold


def test_every_staged_text_column_of_every_kind_has_a_known_length() -> None:
    for adapter in ADAPTERS.values():
        limits = stage_limits(adapter)
        assert set(limits) == {n for n, kind in adapter.stage_columns if kind is str}
        assert all(0 < limit <= 1000 for limit in limits.values()), (adapter, limits)


LONG = "N" * (NAME_CHARS + 1)
LONG_ID = "M" * (ID_CHARS + 1)
AS_OF = {"as_of": "2025-06-30"}

UNSTORABLE = [
    pytest.param(
        "issuers",
        f"issuer_id,name,kind,country\nX1,{LONG},company,NL\n",
        {},
        "name",
        id="issuer-name-too-long",
    ),
    pytest.param(
        "issuers",
        f"issuer_id,name,kind,country,msci_issuer_id\nX1,X One,company,NL,{LONG_ID}\n",
        {},
        "msci_issuer_id",
        id="msci-issuer-id-too-long",
    ),
    pytest.param(
        "issuers",
        "issuer_id,name,kind,country\nX1,X\x00One,company,NL\n",
        {},
        "name",
        id="nul-in-a-name",
    ),
    pytest.param(
        "issuers",
        f"issuer_id,name,kind,country,sustainalytics_entity_id\nX1,X,company,NL,{LONG_ID}\n",
        {},
        "sustainalytics_entity_id",
        id="sustainalytics-id-too-long",
    ),
    pytest.param(
        "instruments",
        f"isin,issuer_id,asset_class,name\nXS0009876540,PMI,equity,{LONG}\n",
        {},
        "name",
        id="instrument-name-too-long",
    ),
    pytest.param(
        "facts",
        f"issuer_ref,metric,value\n{LONG_ID},revenue_pct.tobacco,5\n",
        {"provider": "iss", **AS_OF},
        "issuer_ref",
        id="fact-issuer-ref-too-long",
    ),
    pytest.param(
        "facts",
        "issuer_ref,metric,value\nPM\x00I,revenue_pct.tobacco,5\n",
        {"provider": "iss", **AS_OF},
        "issuer_ref",
        id="nul-in-a-fact-reference",
    ),
    pytest.param(
        "msci-esg",
        "ISSUERID,ISSUER_NAME,ISSUER_ISIN,ISSUER_CNTRY_DOMICILE,TOB_MAX_REV_PCT\n"
        f"{LONG_ID},Philip Morris,,US,40\n",
        AS_OF,
        "ISSUERID",
        id="msci-issuerid-too-long",
    ),
    pytest.param(
        "arms-embargoes",
        f"country,authority,regime\nRU,EU,{LONG}\n",
        AS_OF,
        "regime",
        id="embargo-regime-too-long",
    ),
    pytest.param(
        "arms-embargoes",
        "country,authority,regime\nRU,EU,Council\x00Decision\n",
        AS_OF,
        "regime",
        id="nul-in-an-embargo-regime",
    ),
    pytest.param(
        "list-entries",
        f"policy,issuer_ref,list,reason,decided_on\nrpf,PMI,exclusion,{'R' * (REASON_CHARS + 1)},"
        "2024-01-02\n",
        {},
        "reason",
        id="list-reason-too-long",
    ),
    pytest.param(
        "list-entries",
        f"policy,issuer_ref,list,reason,decided_on,reference\nrpf,PMI,watch,Why,2024-01-02,{LONG}\n",
        {},
        "reference",
        id="list-reference-too-long",
    ),
    pytest.param(
        "ituc",
        "country,rating\nN\x00rway,2\n",
        AS_OF,
        "country",
        id="nul-in-a-country",
    ),
    pytest.param(
        "ti-cpi",
        f"Country,ISO3,CPI score 2022\n{LONG},,50\n",
        AS_OF,
        "Country",
        id="cpi-country-name-too-long",
    ),
    pytest.param(
        "freedom-house",
        "Country/Territory,C/T,Edition,Status,PR rating,CL rating\n"
        f"{'Norway' * 100_000},c,2024,F,1,1\n",
        AS_OF,
        "Country/Territory",
        id="fiw-megabyte-country-name",
    ),
]


@pytest.mark.parametrize(("kind", "body", "params", "column"), UNSTORABLE)
async def test_a_value_no_column_can_hold_is_a_row_error(
    client: httpx.AsyncClient,
    steward: str,
    kind: str,
    body: str,
    params: dict[str, str],
    column: str,
) -> None:
    await load_universe(client, steward)
    before = await datasets(client, steward)
    response = await load(client, steward, kind, body, **params)
    error = first_error(response)
    assert (error["row"], error["column"]) == (2, column), error
    # A row error echoes the value it is about, but never a megabyte of it.
    assert len(response.content) < 5_000
    assert await datasets(client, steward) == before


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_ingest_reports_an_unstorable_value_as_a_row_error_not_a_traceback(
    dialect: str, tmp_path: Path
) -> None:
    bad = tmp_path / "issuers.csv"
    bad.write_text(
        f"issuer_id,name,kind,country,msci_issuer_id\nX1,X One,company,NL,{LONG_ID}\n"
        f"X2,{LONG},company,NL,\n"
    )
    async with scratch_database(dialect, tmp_path) as url:
        assert mayhold(url, "migrate").returncode == 0
        rejected = mayhold(url, "ingest", "--kind", "issuers", str(bad))
    assert rejected.returncode == 1, rejected.stderr
    assert "row 2, msci_issuer_id:" in rejected.stderr
    assert "row 3, name:" in rejected.stderr
    assert "Traceback" not in rejected.stderr
    assert "INSERT" not in rejected.stderr


# --------------------------------------------------------------------- line ends and layout


async def test_bare_carriage_returns_end_lines_as_excel_for_mac_writes_them(
    client: httpx.AsyncClient, steward: str
) -> None:
    body = 'issuer_id,name,kind,country\rX1,X One,company,NL\rX2,"Two\rLines",company,FR\r'
    loaded = await load_ok(client, steward, "issuers", body)
    assert loaded["rows"] == 2
    two = (await client.get("/v1/issuers/X2", headers=bearer(steward))).json()
    assert two["name"] == "Two\rLines"
    # Row numbers count those lines too.
    bad = "issuer_id,name,kind,country\rX1,X One,company,NL\rX2,X Two,company,Atlantis\r"
    error = first_error(await load(client, steward, "issuers", bad))
    assert (error["row"], error["column"]) == (3, "country")


async def test_a_column_named_twice_is_refused_naming_it(
    client: httpx.AsyncClient, steward: str
) -> None:
    body = "issuer_id,name,kind,country,name\nX1,First,company,NL,Second\n"
    error = first_error(await load(client, steward, "issuers", body))
    assert (error["row"], error["column"]) == (1, "name"), error
    assert "twice" in error["msg"]
    # Spelled differently but the same column once normalized (or through an alias).
    body = "Target,authority,regime,country\nRussia,EU,Council Decision,RU\n"
    error = first_error(await load(client, steward, "arms-embargoes", body, **AS_OF))
    assert (error["row"], error["column"]) == (1, "country"), error
    assert await datasets(client, steward) == []


async def test_a_record_over_several_lines_is_reported_at_the_line_it_starts(
    client: httpx.AsyncClient, steward: str
) -> None:
    body = (
        "issuer_id,name,kind,country\n"
        'X1,"One\nTwo\nThree",company,NL\n'  # lines 2-4
        'X2,"Four\nFive",company,Atlantis\n'  # lines 5-6
    )
    error = first_error(await load(client, steward, "issuers", body))
    assert (error["row"], error["column"]) == (5, "country"), error


async def test_a_long_file_name_is_kept_cut_to_its_column(
    client: httpx.AsyncClient, steward: str
) -> None:
    name = "vendor-export-" + "x" * 400 + ".csv"
    response = await client.post(
        "/v1/datasets",
        params={"kind": "issuers"},
        content=b"issuer_id,name,kind,country\nX1,X One,company,NL\n",
        headers={**bearer(steward), "Content-Type": "text/csv", "X-Filename": name},
    )
    assert response.status_code == 201, response.text
    kept = response.json()["source_name"]
    assert len(kept) == 300
    assert name.startswith(kept[:-1])


# ----------------------------------------------------------------- memory, whatever the shape


def _peak_reading(path: Path, adapter: type[Any]) -> tuple[InvalidInput | None, int]:
    """Read a file as a load does (header, then every row); the error and peak memory."""
    ctx = LoadContext(provider="internal", as_of=None)
    tracemalloc.start()
    error = None
    try:
        csvfile = open_csv(str(path), adapter(), ctx)
        try:
            for _ in csvfile.rows():
                pass
        finally:
            csvfile.close()
    except InvalidInput as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


@pytest.mark.parametrize(
    ("shape", "row"),
    [
        pytest.param(b"X1,Long Line," + b"x" * (60 << 20) + b"\n", 2, id="one-60MB-line"),
        pytest.param(
            b'X1,"Open quote,company,NL\n' + b"X,Y,company,NL\n" * 4_000_000,
            2,
            id="a-quote-left-open-for-60MB",
        ),
        pytest.param(b"X1," + b"a," * (30 << 20) + b"\n", 2, id="30M-cells-on-one-line"),
    ],
)
def test_a_file_of_any_shape_is_read_in_bounded_memory(
    tmp_path: Path, shape: bytes, row: int
) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"issuer_id,name,kind,country\n" + shape)
    error, peak = _peak_reading(path, IssuersAdapter)
    assert error is not None
    assert error.errors[0].row == row, error.errors
    assert "longer than" in error.errors[0].msg
    # A record is at most MAX_RECORD_CHARS (4M) characters, held at most a few times over.
    assert peak < 8 * MAX_RECORD_CHARS, peak


async def test_a_file_without_line_breaks_is_a_file_error_over_http(
    client: httpx.AsyncClient, steward: str
) -> None:
    body = b"issuer_id,name,kind,country\n" + b"X1,Y," * (1 << 20)
    problem = assert_problem(await load(client, steward, "issuers", body), 422)
    assert problem["errors"][0]["row"] == 2
    assert "longer than" in problem["errors"][0]["msg"]
    assert len(problem["detail"]) < 1_000


# ---------------------------------------------------------------------------- identifiers

OTC_DERIVATIVE = "EZ1MT2VWVH68"  # ISO 6166 prefix EZ: ANNA DSB's OTC derivatives


async def test_an_otc_derivative_isin_loads_and_is_checked_alone_and_in_a_batch(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    desk = await open_desk(client, make_key)
    await load_ok(
        client,
        desk.steward,
        "instruments",
        f"isin,issuer_id,asset_class\n{OTC_DERIVATIVE},PMI,derivative\n",
    )
    single = await desk.check(OTC_DERIVATIVE.lower())
    assert single["instrument"]["isin"] == OTC_DERIVATIVE
    assert single["issuer"]["issuer_id"] == "PMI"
    batch = await client.post(
        "/v1/checks",
        json={"policy": "rpf", "instruments": [OTC_DERIVATIVE, "US7181721090"]},
        headers=bearer(desk.trader),
    )
    assert batch.status_code == 200, batch.text
    decisions = batch.json()["decisions"]
    assert [d["instrument"]["isin"] for d in decisions] == [OTC_DERIVATIVE, "US7181721090"]
    assert decisions[0]["issuer"]["issuer_id"] == "PMI"


# -------------------------------------------------------------------------------- uploads

LIMIT = 1 << 20


@pytest.fixture
async def small_limit(
    migrated_url: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """A client of an app accepting files up to 1 MiB, spooling into a directory of the test."""
    spools = tmp_path / "uploads"
    settings = Settings(
        database_url=migrated_url, index_enabled=False, max_upload_bytes=LIMIT, upload_dir=spools
    )
    app = create_app(settings, Database(engine=engine, sessionmaker=sessionmaker))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client, spools


def issuers_file(count: int) -> bytes:
    rows = "".join(f"X{i},Company {i},company,NL\n" for i in range(count))
    return ("issuer_id,name,kind,country\n" + rows).encode()


async def test_a_file_over_the_size_limit_is_a_413_and_leaves_nothing_on_disk(
    small_limit: tuple[httpx.AsyncClient, Path], make_key: MakeKey
) -> None:
    client, spools = small_limit
    key = await make_key(Scope.data_write)
    big = issuers_file(200_000)  # ~6 MB
    assert len(big) > 5 * LIMIT

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    for body in (big, streamed()):
        response = await client.post(
            "/v1/datasets",
            params={"kind": "issuers"},
            content=body,
            headers={**bearer(key), "Content-Type": "text/csv"},
        )
        problem = assert_problem(response, 413)
        assert "MAYHOLD_MAX_UPLOAD_BYTES" in problem["detail"]
        assert list(spools.glob("*")) == []
    multipart = await client.post(
        "/v1/datasets",
        params={"kind": "issuers"},
        files={"file": ("big.csv", big, "text/csv")},
        headers=bearer(key),
    )
    assert_problem(multipart, 413)
    assert list(spools.glob("*")) == []

    # Within the limit: loaded, or rejected, and nothing left behind either way.
    assert (await load(client, key, "issuers", issuers_file(1000))).status_code == 201
    assert_problem(await load(client, key, "issuers", b"issuer_id,name\nX,Y\n"), 422)
    assert list(spools.glob("*")) == []
    listed = await client.get("/v1/datasets", headers=bearer(key))
    assert [d["rows"] for d in listed.json()] == [1000]


async def _serving(url: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port := free_port())],
        env={**os.environ, "MAYHOLD_DATABASE_URL": url, "MAYHOLD_LOG_LEVEL": "INFO", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base) as client:
        while True:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return process, base
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            await asyncio.sleep(0.1)


async def _start_upload(base: str, key: str, declared: int, sent: int) -> socket.socket:
    """A client sending ``sent`` bytes of a body it says is ``declared`` bytes long."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/datasets?kind=issuers HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"issuer_id,name,kind,country\n")
    chunk = b"X1,Company,company,NL\n" * 3000
    done = 0
    while done < sent:
        sock.sendall(chunk)
        done += len(chunk)
    return sock


async def _until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_aborted_upload_and_a_killed_load_leave_no_file_behind(
    dialect: str, tmp_path: Path
) -> None:
    spools = tmp_path / "uploads"
    env = {"MAYHOLD_UPLOAD_DIR": str(spools)}
    async with scratch_database(dialect, tmp_path) as url:
        assert mayhold(url, "migrate").returncode == 0
        created = mayhold(url, "keys", "create", "--name", "steward", "--scopes", "data:write")
        key = created.stdout.strip().splitlines()[-1]
        process, base = await _serving(url, env)
        try:
            # The client goes away after 50 MB of a 100 MB file.
            sock = await _start_upload(base, key, declared=100 << 20, sent=50 << 20)
            await _until(lambda: len(list(spools.glob("upload-*"))) == 1)
            sock.close()
            await _until(lambda: list(spools.glob("*")) == [])
            async with httpx.AsyncClient(base_url=base) as client:
                assert (await client.get("/healthz")).status_code == 200

            # The server is killed (SIGKILL: no clean-up of its own) in the middle of one.
            sock = await _start_upload(base, key, declared=100 << 20, sent=20 << 20)
            await _until(lambda: len(list(spools.glob("upload-*"))) == 1)
            process.kill()
            process.wait(timeout=20)
            sock.close()
            assert len(list(spools.glob("upload-*"))) == 1  # left behind
            await asyncio.sleep(STALE_AFTER_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=20)
        # The next start removes it.
        process, base = await _serving(url, env)
        try:
            assert list(spools.glob("*")) == []
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=20)
        assert "removed stale uploads" in stderr


@pytest.mark.slow
def test_a_long_load_reports_its_progress_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "issuers.csv"
    path.write_bytes(issuers_file(60_000))  # three batches
    url = f"sqlite+aiosqlite:///{tmp_path / 'progress.db'}"
    env = {
        **os.environ,
        "MAYHOLD_DATABASE_URL": url,
        "MAYHOLD_LOG_LEVEL": "INFO",
        "MAYHOLD_LOAD_PROGRESS_SECONDS": "0",
    }
    assert mayhold(url, "migrate").returncode == 0
    loaded = subprocess.run(
        [sys.executable, "-m", "app.cli", "ingest", "--kind", "issuers", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    progress = [
        json.loads(line) for line in loaded.stderr.splitlines() if '"dataset loading"' in line
    ]
    # One line per batch staged (rows read so far: the next batch may be parsed already).
    rows = [p["rows"] for p in progress]
    assert len(rows) >= 2, progress
    assert rows == sorted(rows), progress
    assert rows[-1] <= 60_000, progress
    assert all(p["kind"] == "issuers" and "seconds" in p for p in progress)
