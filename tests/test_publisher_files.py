"""Publisher files as distributed: SIPRI's archive as published, Freedom House and TI workbooks
(.xlsx) read by the same adapters as their CSV form, header variants across editions, and every
real file in shared/data/real loading under its kind (contract, "More published formats")."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.datasets.adapters import ADAPTERS
from app.datasets.adapters.base import LoadContext
from app.datasets.csvfile import MAX_SHEET_ROWS, cell_text
from app.datasets.parsing import open_csv
from app.datasets.schemas import DatasetKind
from app.kit.errors import InvalidInput, PayloadTooLarge
from app.models import ArmsEmbargo, Fact
from tests.conftest import bearer
from tests.support.datasets import REAL_DATA, load, load_ok, load_universe, real_file
from tests.support.problems import assert_problem

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ------------------------------------------------------------------------------- helpers


def _number(text: str) -> object:
    """A CSV cell as a spreadsheet stores it: numbers as numbers, the rest as text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text if text else None


def workbook_from_csv(path: Path, sheet: str, title: str | None = None) -> bytes:
    """An xlsx workbook holding a CSV file as its publisher's workbook would: an index sheet
    first (no data), then the data sheet, optionally with a title row above the header."""
    book = openpyxl.Workbook()
    index = book.active
    assert index is not None
    index.title = "Index"
    index.append(["About this workbook"])
    index.append(["See the data sheet"])
    data = book.create_sheet(sheet)
    if title is not None:
        data.append([title])
    with path.open(encoding="utf-8-sig", newline="") as source:
        for number, row in enumerate(csv.reader(source)):
            data.append(row if number == 0 else [_number(c) for c in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def load_xlsx(
    client: httpx.AsyncClient, key: str, kind: str, body: bytes, **params: str
) -> httpx.Response:
    return await client.post(
        "/v1/datasets",
        params={"kind": kind, **params},
        content=body,
        headers={**bearer(key), "Content-Type": XLSX_TYPE, "X-Filename": "publisher.xlsx"},
    )


async def facts_of(connection: AsyncConnection, dataset_id: int) -> list[tuple[Any, ...]]:
    result = await connection.execute(
        select(Fact.metric, Fact.country, Fact.value, Fact.as_of, Fact.source_row)
        .where(Fact.dataset_id == dataset_id)
        .order_by(Fact.source_row, Fact.metric)
    )
    return [tuple(row) for row in result.all()]


async def embargoes_of(connection: AsyncConnection, dataset_id: int) -> list[Any]:
    e = ArmsEmbargo
    result = await connection.execute(
        select(e.country, e.authority, e.regime, e.since, e.until, e.source_row).where(
            e.dataset_id == dataset_id
        )
    )
    return list(result.all())


# ---------------------------------------------------------------------- SIPRI as published


async def test_sipri_archive_as_published_reads_authority_from_the_document(
    client: httpx.AsyncClient, steward: str, connection: AsyncConnection
) -> None:
    raw = await load_ok(
        client,
        steward,
        "arms-embargoes",
        real_file("arms_embargoes/sipri_arms_embargoes_archive.csv"),
        as_of="2021-05-05",
    )
    skipped = raw["summary"]["skipped"]
    # OSCE (Azerbaijan) and Arab League (Syria) statements; five rows whose document is "-"
    assert skipped["imposed by neither UN, EU nor US"] == 2
    assert skipped["establishing document not given"] == 5
    assert skipped["target is not a state"] == 3  # Taliban, ISIL/Al-Qaeda (UN), Al-Qaeda (EU)
    assert skipped["ended embargo on a state that no longer exists"] == 3  # Yugoslavia x3
    assert raw["rows"] == 79 - sum(skipped.values()) == 66
    assert "Azerbaijan" in raw["summary"]["skipped_examples"]["imposed by neither UN, EU nor US"]

    rows = {
        (r.country, r.authority, r.regime): r for r in await embargoes_of(connection, raw["id"])
    }
    assert len(rows) == 66
    # UNSCR -> UN; suspended (16-Jan-02), never lifted: not in force from the suspension
    afghanistan = rows[("AF", "UN", "UNSCR 1333")]
    assert (afghanistan.since, afghanistan.until) == (dt.date(2000, 12, 19), dt.date(2002, 1, 16))
    assert afghanistan.source_row == 2
    # "Central African Rep." and "DRC" as SIPRI writes them; still in force
    car = rows[("CF", "UN", "UNSCR 2127")]
    assert (car.since, car.until) == (dt.date(2013, 12, 5), None)
    assert rows[("CD", "EU", "EC declaration")].since == dt.date(1993, 4, 7)
    # CFSP acts, "EU 2017/2063" and "EU agreement" -> EU
    assert rows[("RU", "EU", "2014/512/CFSP")].until is None
    assert rows[("VE", "EU", "EU 2017/2063")].since == dt.date(2017, 11, 13)
    assert rows[("EG", "EU", "EU agreement")].since == dt.date(2013, 8, 21)
    # suspended 16-Feb-96, lifted 10-Aug-98: ends at the suspension
    assert rows[("SI", "EU", "EC declaration")].until == dt.date(1996, 2, 16)

    # The same archive with SIPRI's imposer inferred (an authority column) loads alike.
    inferred = await load_ok(
        client,
        steward,
        "arms-embargoes",
        real_file("arms_embargoes/sipri_arms_embargoes_archive_with_imposer.csv"),
        as_of="2021-05-06",
    )
    assert inferred["rows"] == 66
    assert inferred["summary"]["skipped"]["imposed by neither UN, EU nor US"] == 7
    keys = {
        (r.country, r.authority, r.regime, r.since, r.until)
        for r in await embargoes_of(connection, inferred["id"])
    }
    assert keys == {(r.country, r.authority, r.regime, r.since, r.until) for r in rows.values()}


async def test_sipri_layout_with_an_unknown_document_is_a_row_error(
    client: httpx.AsyncClient, steward: str
) -> None:
    body = (
        "\ufeffTarget,Entry into force,Suspended,Lifted,Establishing document\n"
        "Iran,23-Apr-07,,,2007/246/CFSP\n"
        "Iran,1-Jan-10,,,Presidential proclamation\n"
    )
    response = await load(client, steward, "arms-embargoes", body, as_of="2021-05-05")
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["row"] == 3
    assert "Presidential proclamation" in problem["errors"][0]["msg"]


async def test_contract_layout_without_authority_names_the_columns_seen(
    client: httpx.AsyncClient, steward: str
) -> None:
    response = await load(
        client, steward, "arms-embargoes", "country,regime\nRU,ITAR 126.1\n", as_of="2021-05-05"
    )
    problem = assert_problem(response, 422)
    msg = problem["errors"][0]["msg"]
    assert "authority (or imposer / imposer inferred)" in msg
    assert "the header has: country, regime" in msg


# ------------------------------------------------------------------------------ workbooks


async def test_freedom_house_workbook_and_csv_give_the_same_dataset(
    client: httpx.AsyncClient, steward: str, connection: AsyncConnection
) -> None:
    await load_universe(client, steward)
    source = real_file("freedom_house/fiw_all_data_2013_2024.csv")
    from_csv = await load_ok(client, steward, "freedom-house", source, as_of="2024-02-29")
    # As Freedom House publishes it: an Index sheet, then FIW13-24 with a title row above the
    # header (the header is the sheet's row 2).
    workbook = workbook_from_csv(source, "FIW13-24", title="Freedom in the World 2013-2024")
    response = await load_xlsx(client, steward, "freedom-house", workbook, as_of="2024-02-29")
    assert response.status_code == 201, response.text
    from_xlsx = response.json()
    assert from_xlsx["id"] != from_csv["id"]
    assert from_xlsx["source_name"] == "publisher.xlsx"
    assert from_xlsx["rows"] == from_csv["rows"]
    assert from_xlsx["summary"] == from_csv["summary"]
    csv_facts = await facts_of(connection, from_csv["id"])
    xlsx_facts = await facts_of(connection, from_xlsx["id"])
    assert len(csv_facts) == len(xlsx_facts) > 6000
    # The same facts; each row is the sheet's own row, one below the CSV's (the title row).
    assert [(*f[:4], f[4] + 1) for f in csv_facts] == xlsx_facts
    described = (
        await client.get(f"/v1/datasets/{from_xlsx['id']}", headers=bearer(steward))
    ).json()
    assert described["kind"] == "freedom-house"


async def test_cpi_workbook_and_csv_give_the_same_dataset(
    client: httpx.AsyncClient, steward: str, connection: AsyncConnection
) -> None:
    await load_universe(client, steward)
    source = real_file("ti_cpi/cpi_2022_global_with_sources.csv")
    from_csv = await load_ok(client, steward, "ti-cpi", source, as_of="2023-01-31")
    workbook = workbook_from_csv(source, "CPI 2022 (final)")
    from_xlsx = await load_ok(client, steward, "ti-cpi", workbook, as_of="2023-01-31")
    assert from_xlsx["rows"] == from_csv["rows"] == 180
    csv_facts = await facts_of(connection, from_csv["id"])
    assert csv_facts == await facts_of(connection, from_xlsx["id"])  # source_row too
    venezuela = {
        f["metric"]: f
        for f in (await client.get("/v1/issuers/SOV-VE", headers=bearer(steward))).json()[
            "country_facts"
        ]
    }
    assert venezuela["country.cpi.score"]["value"] == "14"
    assert venezuela["country.cpi.score"]["dataset_id"] == from_xlsx["id"]


def _sheet(*rows: list[object]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_workbook_cells_and_row_numbers(client: httpx.AsyncClient, steward: str) -> None:
    assert cell_text(3.0) == "3"
    assert cell_text(6.299999) == "6.299999"
    assert cell_text(dt.datetime(2024, 2, 29)) == "2024-02-29"
    assert cell_text(None) == ""
    # a title, a blank row, the header on row 3; a bad rating on the sheet's row 5
    body = _sheet(
        ["ITUC Global Rights Index"],
        [],
        ["Country", "Rating"],
        ["Russia", 5],
        ["Narnia", 4],
    )
    response = await load(client, steward, "ituc", body, as_of="2024-06-13")
    problem = assert_problem(response, 422)
    assert [(e["row"], e["column"]) for e in problem["errors"]] == [(5, "country")]
    missing = await load(
        client, steward, "ituc", _sheet(["Land", "Rating"], ["Russia", 5]), as_of="2024-06-13"
    )
    msg = assert_problem(missing, 422)["errors"][0]["msg"]
    assert "missing required column(s): country" in msg
    assert "the header has: Land, Rating" in msg


def _patched(body: bytes, replace: dict[str, bytes]) -> bytes:
    """A workbook with some parts replaced (as a hostile one would be written)."""
    source = zipfile.ZipFile(io.BytesIO(body))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item.filename, replace.get(item.filename, source.read(item)))
    return out.getvalue()


def _open(tmp_path: Path, body: bytes, kind: DatasetKind, max_bytes: int = 1 << 30) -> None:
    path = tmp_path / "upload"
    path.write_bytes(body)
    ctx = LoadContext(provider="ituc", as_of=dt.date(2024, 6, 13))
    table = open_csv(str(path), ADAPTERS[kind](), ctx, max_bytes)
    try:
        for _ in table.rows():
            pass
    finally:
        table.close()


def test_hostile_workbooks_are_bounded(tmp_path: Path) -> None:
    plain = _sheet(["country", "rating"], ["Russia", 5])
    sheet_part = "xl/worksheets/sheet1.xml"
    # A zip bomb: 50 MB of XML in a few kB; more than the (here 10 MB) limit: a 413.
    bomb = _patched(plain, {sheet_part: b"<worksheet>" + b" " * 50_000_000 + b"</worksheet>"})
    assert len(bomb) < 200_000
    with pytest.raises(PayloadTooLarge):
        _open(tmp_path, bomb, DatasetKind.ituc, max_bytes=10_000_000)
    # Claimed dimensions allocate nothing; a row past Excel's last row is refused.
    ns = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    far = (
        b"<worksheet " + ns + b'><dimension ref="A1:XFD9999999"/><sheetData>'
        b'<row r="1"><c r="A1" t="inlineStr"><is><t>country</t></is></c>'
        b'<c r="B1" t="inlineStr"><is><t>rating</t></is></c></row>'
        b'<row r="'
        + str(MAX_SHEET_ROWS + 1).encode()
        + b'"><c r="A'
        + str(MAX_SHEET_ROWS + 1).encode()
        + b'" t="inlineStr"><is><t>Russia</t></is></c></row>'
        b"</sheetData></worksheet>"
    )
    with pytest.raises(InvalidInput) as refused:
        _open(tmp_path, _patched(plain, {sheet_part: far}), DatasetKind.ituc)
    assert "more than 1,048,576 rows" in str(refused.value.errors[0].msg)
    # Not a workbook after all (a ZIP header, then nothing): a 422, never a 500.
    with pytest.raises(InvalidInput):
        _open(tmp_path, b"PK\x03\x04garbage", DatasetKind.ituc)
    # Broken XML inside.
    with pytest.raises(InvalidInput):
        _open(
            tmp_path, _patched(plain, {sheet_part: b"<worksheet><sheetData><row"}), DatasetKind.ituc
        )


async def test_hostile_workbook_through_the_api_is_a_problem(
    client: httpx.AsyncClient, steward: str
) -> None:
    damaged = b"PK\x03\x04" + b"\x00" * 100
    response = await load_xlsx(client, steward, "ti-cpi", damaged, as_of="2023-01-31")
    problem = assert_problem(response, 422)
    assert "workbook" in problem["detail"]
    # a workbook whose sheet has no CPI header: the closest sheet and row are named
    body = _sheet(["Corruption Perceptions Index 2022"], ["Country", "ISO3", "Score"])
    response = await load_xlsx(client, steward, "ti-cpi", body, as_of="2023-01-31")
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["row"] == 2
    assert "the header has: Country, ISO3, Score" in problem["errors"][0]["msg"]


# ------------------------------------------------------------------------ header variants


async def test_freedom_house_header_variants(client: httpx.AsyncClient, steward: str) -> None:
    await load_universe(client, steward)
    body = "Country/Territory,C/T?,Edition,Status,PR Rating,CL Rating\nRussia,c,2024,NF,7,7\n"
    assert (await load_ok(client, steward, "freedom-house", body, as_of="2024-02-29"))["rows"] == 1
    response = await load(
        client,
        steward,
        "freedom-house",
        "Country,C/T,Edition,Status,CL rating\n",
        as_of="2024-02-29",
    )
    msg = assert_problem(response, 422)["errors"][0]["msg"]
    assert "missing required column(s): pr rating" in msg
    assert "the header has: Country, C/T, Edition, Status, CL rating" in msg


async def test_ti_header_variants(client: httpx.AsyncClient, steward: str) -> None:
    await load_universe(client, steward)
    for header in ("Country / Territory,ISO3,CPI score 2022", "Country,WB Code,CPI Score 2022"):
        loaded = await load_ok(
            client, steward, "ti-cpi", f"{header}\nVenezuela,VEN,14\n", as_of="2023-01-31"
        )
        assert loaded["rows"] == 1
    response = await load(
        client, steward, "ti-cpi", "Country,ISO3,Score\nX,VEN,1\n", as_of="2023-01-31"
    )
    msg = assert_problem(response, 422)["errors"][0]["msg"]
    assert "CPI score" in msg
    assert "the header has: Country, ISO3, Score" in msg


async def test_ituc_header_variants(client: httpx.AsyncClient, steward: str) -> None:
    for header in ("country,gri_rating", "Country / Territory,Rating"):
        loaded = await load_ok(client, steward, "ituc", f"{header}\nRussia,5\n", as_of="2024-06-13")
        assert loaded["rows"] == 1
    response = await load(client, steward, "ituc", "Country,Score\nRussia,5\n", as_of="2024-06-13")
    msg = assert_problem(response, 422)["errors"][0]["msg"]
    assert "missing required column(s): rating (or " in msg
    assert "gri rating" in msg
    assert "the header has: Country, Score" in msg


async def test_arms_embargoes_header_variants(client: httpx.AsyncClient, steward: str) -> None:
    body = (
        "Target,Imposer,Establishing document,Entry into force\nIran,EU,2007/246/CFSP,2007-04-23\n"
    )
    assert (await load_ok(client, steward, "arms-embargoes", body, as_of="2021-05-05"))["rows"] == 1
    response = await load(
        client, steward, "arms-embargoes", "Target,authority\nIran,EU\n", as_of="2021-05-05"
    )
    msg = assert_problem(response, 422)["errors"][0]["msg"]
    assert "missing required column(s): regime (or establishing document)" in msg
    assert "the header has: Target, authority" in msg


# ----------------------------------------------------------------- every real file loads

# Each real file -> its kind and as_of; the rest are reference data no kind reads today.
LOADABLE = {
    "arms_embargoes/sipri_arms_embargoes_archive.csv": ("arms-embargoes", "2021-05-05"),
    "arms_embargoes/sipri_arms_embargoes_archive_with_imposer.csv": (
        "arms-embargoes",
        "2021-05-06",
    ),
    "freedom_house/fiw_all_data_2013_2024.csv": ("freedom-house", "2024-02-29"),
    "freedom_house/fiw_2024_summary.csv": ("freedom-house", "2024-02-29"),
    "ti_cpi/cpi_2022_global_with_sources.csv": ("ti-cpi", "2023-01-31"),
    "ti_cpi/cpi_2012_2022_long.csv": ("ti-cpi", "2023-01-31"),
    "ituc_gri/ituc_gri_ratings_UNVERIFIED.csv": ("ituc", "2024-06-13"),
    "ofac_ns_cmic/ofac_ns_cmic_entities.csv": ("ofac-ns-cmic", "2025-04-21"),
    "gleif_lei/gleif_level2_relationship_records.csv": ("gleif-relationships", "2022-06-08"),
}
NOT_LOADABLE = {
    # 1973-2024 long form: editions like "1983-84" and "Jan.-Feb. 1973", unrated "-" cells
    # and split ratings ("2(5)", "F (NF)"): no kind reads it yet.
    "freedom_house/fiw_ratings_statuses_1973_2024_long.csv",
    # One row per (entity, ISIN): the same list as the entities file, which is what loads.
    "ofac_ns_cmic/ofac_ns_cmic_isins.csv",
    "gleif_lei/gleif_lei_isin_mapping.csv",
    "gleif_lei/gleif_level1_records.csv",
    "gleif_lei/gleif_parent_child_edges_from_api_endpoints.csv",
    "company_identifiers/financedatabase_named_companies_all_listings.csv",
    "company_identifiers/financedatabase_named_companies_by_isin.csv",
    "company_identifiers/financedatabase_screening_universe_all_listings.csv",
    "company_identifiers/financedatabase_screening_universe_by_isin.csv",
    "exclusion_lists/nbim_klp_decisions_compiled_from_public_pages.csv",
    "identifier_test_vectors/stdnum_identifier_vectors.csv",
}


def test_every_real_file_is_accounted_for() -> None:
    present = {str(p.relative_to(REAL_DATA)) for p in REAL_DATA.rglob("*.csv")}
    assert present == set(LOADABLE) | NOT_LOADABLE


@pytest.mark.parametrize("relative", sorted(LOADABLE))
async def test_every_loadable_real_file_loads_as_published(
    client: httpx.AsyncClient, steward: str, relative: str
) -> None:
    kind, as_of = LOADABLE[relative]
    loaded = await load_ok(client, steward, kind, real_file(relative), as_of=as_of)
    assert loaded["rows"] > 0
