"""Broken and hostile files (issue 11, "Files"): every one a 422 naming its row and column, or
a clear file error; never a 500, never a traceback, nothing written."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from app.datasets.adapters import ADAPTERS
from app.datasets.adapters.base import LoadContext, stage_limits
from app.datasets.adapters.issuers import IssuersAdapter
from app.datasets.adapters.list_entries import ListEntriesAdapter
from app.datasets.csvfile import MAX_RECORD_CHARS
from app.datasets.parsing import open_csv
from app.kit.errors import InvalidInput
from tests.conftest import MakeKey, bearer
from tests.support.checks import open_desk
from tests.support.databases import DIALECTS, scratch_database
from tests.support.datasets import load, load_ok, load_universe
from tests.support.problems import assert_problem
from tests.support.processes import mayhold

NAME_CHARS = stage_limits(IssuersAdapter)["name"]
ID_CHARS = stage_limits(IssuersAdapter)["msci_issuer_id"]
REASON_CHARS = stage_limits(ListEntriesAdapter)["reason"]


@pytest.fixture
async def steward(make_key: MakeKey) -> str:
    return await make_key(Scope.data_write, name="data-steward")


async def datasets(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/datasets", headers=bearer(key))
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


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
