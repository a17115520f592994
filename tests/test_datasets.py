"""Data loads through the HTTP API: every kind, real published files, all-or-nothing rejection."""

from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from tests.conftest import MakeKey, bearer
from tests.support.datasets import FIXTURES, datasets, load, load_ok, load_universe, real_file
from tests.support.policies import post_document, shipped
from tests.support.problems import assert_problem


async def issuer(client: httpx.AsyncClient, key: str, issuer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/issuers/{issuer_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def facts_by_metric(facts: list[dict[str, Any]]) -> dict[str, str]:
    return {f["metric"]: f["value"] for f in facts}


# ---------------------------------------------------------------------------- happy paths


async def test_issuers_and_instruments_load_with_provenance(
    client: httpx.AsyncClient, steward: str
) -> None:
    loaded = await load_ok(client, steward, "issuers", FIXTURES / "issuers.csv")
    assert loaded["kind"] == "issuers"
    assert loaded["rows"] == 17
    assert loaded["provider"] == "internal"
    assert len(str(loaded["sha256"])) == 64
    described = (await client.get(f"/v1/datasets/{loaded['id']}", headers=bearer(steward))).json()
    assert described["loaded_by"] == "data-steward"
    assert described["loaded_at"].endswith("Z") or "+00:00" in described["loaded_at"]

    await load_ok(client, steward, "instruments", FIXTURES / "instruments.csv")
    shell = await issuer(client, steward, "SHELL")
    assert shell["lei"] == "21380068P1DRHMJ8KU70"
    assert [(s["issuer_id"], s["control_pct"]) for s in shell["subsidiaries"]] == [
        ("SHELL-EP84", "100"),
        ("SHELL-NE", "50"),
    ]
    assert [i["isin"] for i in shell["instruments"]] == ["GB00BP6MXD84"]

    petrochina = await issuer(client, steward, "PETROCHINA")
    assert petrochina["parent"]["issuer_id"] == "CNPC"
    assert petrochina["parent"]["control_pct"] == "80.41"
    assert (await issuer(client, steward, "SHENHUA"))["state_owners"] == [
        {"country": "CN", "pct": "69.52"}
    ]
    assert (await issuer(client, steward, "SOV-VE"))["country"] == "VE"  # from "Venezuela"

    adr = (await client.get("/v1/instruments/US71646E1001", headers=bearer(steward))).json()
    assert adr["issuer"]["issuer_id"] == "PETROCHINA"
    assert adr["underlying"]["isin"] == "CNE1000003W8"
    assert adr["cusip"] == "71646E100"


async def test_facts_resolve_every_kind_of_issuer_reference(
    client: httpx.AsyncClient, steward: str
) -> None:
    await load_universe(client, steward)
    loaded = await load_ok(client, steward, "facts", FIXTURES / "facts.csv", provider="iss")
    assert loaded["rows"] == 9
    # by ISIN of an instrument, by MSCI id, by LEI, by issuer_id:
    assert facts_by_metric((await issuer(client, steward, "PMI"))["facts"]) == {
        "norms.status": "compliant",
        "revenue_pct.tobacco": "96.4",
    }
    assert facts_by_metric((await issuer(client, steward, "ANGLO"))["facts"]) == {
        "revenue_pct.thermal_coal_extraction": "4.5"
    }
    shell = (await issuer(client, steward, "SHELL"))["facts"]
    assert shell[0]["value"] == "5"
    assert shell[0]["provider"] == "iss"
    assert shell[0]["dataset_id"] == loaded["id"]
    assert shell[0]["source_row"] == 6
    assert facts_by_metric((await issuer(client, steward, "SHENHUA"))["facts"]) == {
        "revenue_pct.thermal_coal_extraction": "55-100"  # a vendor band, kept as a band
    }


async def test_msci_export_maps_onto_the_vocabulary(
    client: httpx.AsyncClient, steward: str
) -> None:
    await load_universe(client, steward)
    loaded = await load_ok(
        client, steward, "msci-esg", FIXTURES / "msci_esg.csv", as_of="2025-09-30"
    )
    assert loaded["provider"] == "msci"
    assert loaded["summary"]["unmatched_issuers"] == 1
    assert loaded["summary"]["unmatched_examples"] == ["IID000000009999999"]
    shell = {f["metric"]: f for f in (await issuer(client, steward, "SHELL"))["facts"]}
    assert shell["revenue_pct.arctic_oil_gas"]["value"] == "5"  # 1.2 oil + 3.8 gas
    assert (
        shell["revenue_pct.arctic_oil_gas"]["source_field"]
        == "ARCTIC_OIL_MAX_REV_PCT+ARCTIC_GAS_MAX_REV_PCT"
    )
    assert shell["norms.status"]["value"] == "watchlist"
    assert shell["revenue_pct.unconventional_oil_gas"]["as_of"] == "2025-09-30"
    northrop = facts_by_metric((await issuer(client, steward, "NORTHROP"))["facts"])
    assert northrop["controversial_weapons.involved"] == "true"
    # PetroChina matched by ISIN (no msci id on our record? it has one) and UNGC Fail:
    assert (
        facts_by_metric((await issuer(client, steward, "PETROCHINA"))["facts"])["norms.status"]
        == "non_compliant"
    )


async def test_real_freedom_house_all_data_file(client: httpx.AsyncClient, steward: str) -> None:
    await load_universe(client, steward)
    loaded = await load_ok(
        client,
        steward,
        "freedom-house",
        real_file("freedom_house/fiw_all_data_2013_2024.csv"),
        as_of="2024-02-29",
    )
    summary = loaded["summary"]
    assert summary["periods"] == list(range(2013, 2025))
    assert summary["skipped"]["territory"] > 100  # 15-ish territories x 12 editions
    assert "Gaza Strip" in summary["skipped_examples"]["territory"] or summary["skipped"]
    russia = (await issuer(client, steward, "SOV-RU"))["country_facts"]
    current = {f["metric"]: f for f in russia}
    assert current["country.freedom_house.status"]["value"] == "Not Free"
    assert current["country.freedom_house.status"]["as_of"] == "2024-02-29"  # newest edition
    assert current["country.freedom_house.pr_rating"]["value"] == "7"
    netherlands = facts_by_metric((await issuer(client, steward, "SOV-NL"))["country_facts"])
    assert netherlands["country.freedom_house.status"] == "Free"
    # Older editions are points in time of their own:
    history = (
        await client.get(
            "/v1/issuers/SOV-RU/facts", params={"history": "true"}, headers=bearer(steward)
        )
    ).json()["history"]
    editions = sorted(f["as_of"] for f in history if f["metric"] == "country.freedom_house.status")
    assert editions[0] == "2013-01-01"
    assert editions[-1] == "2024-02-29"
    assert len(editions) == 12


async def test_real_cpi_official_sheet_and_time_series(
    client: httpx.AsyncClient, steward: str
) -> None:
    await load_universe(client, steward)
    sheet = await load_ok(
        client,
        steward,
        "ti-cpi",
        real_file("ti_cpi/cpi_2022_global_with_sources.csv"),
        as_of="2023-01-31",
    )
    assert sheet["rows"] == 180
    assert sheet["provider"] == "transparency-international"
    venezuela = {f["metric"]: f for f in (await issuer(client, steward, "SOV-VE"))["country_facts"]}
    assert venezuela["country.cpi.score"]["value"] == "14"
    assert venezuela["country.cpi.score"]["source_field"] == "CPI score 2022"
    series = await load_ok(
        client,
        steward,
        "ti-cpi",
        real_file("ti_cpi/cpi_2012_2022_long.csv"),
        as_of="2023-01-31",
    )
    assert series["summary"]["periods"][0] == 2012
    history = (
        await client.get(
            "/v1/issuers/SOV-NL/facts", params={"history": "true"}, headers=bearer(steward)
        )
    ).json()["history"]
    cpi_dates = {f["as_of"] for f in history if f["metric"] == "country.cpi.score"}
    assert "2013-01-01" in cpi_dates  # the 2012 score, published in January 2013


async def test_real_ituc_map_with_its_own_column_name(
    client: httpx.AsyncClient, steward: str
) -> None:
    await load_universe(client, steward)
    loaded = await load_ok(
        client,
        steward,
        "ituc",
        real_file("ituc_gri/ituc_gri_ratings_UNVERIFIED.csv"),
        as_of="2024-06-13",
    )
    assert loaded["rows"] == 151
    china = facts_by_metric((await issuer(client, steward, "SOV-CN"))["country_facts"])
    assert china["country.ituc.rating"] in {"5", "5+"}


async def test_real_sipri_archive_and_contract_layout(
    client: httpx.AsyncClient, steward: str
) -> None:
    sipri = await load_ok(
        client,
        steward,
        "arms-embargoes",
        real_file("arms_embargoes/sipri_arms_embargoes_archive_with_imposer.csv"),
        as_of="2021-05-05",
    )
    skipped = sipri["summary"]["skipped"]
    assert skipped["imposed by neither UN, EU nor US"] == 7
    assert skipped["target is not a state"] == 3  # Taliban, ISIL/Al-Qaeda (UN), Al-Qaeda (EU)
    assert skipped["ended embargo on a state that no longer exists"] >= 2  # Yugoslavia
    assert sipri["rows"] == 79 - sum(skipped.values())
    # the verbatim archive (BOM, trailing ",,,," rows, no imposer column) reads the authority
    # from the establishing document: tests/test_publisher_files.py
    ours = await load_ok(
        client, steward, "arms-embargoes", FIXTURES / "arms_embargoes.csv", as_of="2025-10-01"
    )
    assert ours["rows"] == 5


async def test_list_entries_resolve_issuers(
    client: httpx.AsyncClient, steward: str, make_key: MakeKey
) -> None:
    await load_universe(client, steward)
    author = await make_key(Scope.policies_write)
    for key in ("rpf", "asr"):  # the policies the list names exist (drafts will do)
        created = await post_document(client, key, shipped(key), bearer(author))
        assert created.status_code == 201, created.text
    loaded = await load_ok(client, steward, "list-entries", FIXTURES / "list_entries.csv")
    assert loaded["rows"] == 4
    assert loaded["provider"] == "internal"


async def test_multipart_upload_is_accepted(client: httpx.AsyncClient, steward: str) -> None:
    response = await client.post(
        "/v1/datasets",
        params={"kind": "issuers"},
        files={"file": ("issuers.csv", (FIXTURES / "issuers.csv").read_bytes(), "text/csv")},
        headers=bearer(steward),
    )
    assert response.status_code == 201, response.text
    assert response.json()["source_name"] == "issuers.csv"
    assert response.headers["location"] == f"/v1/datasets/{response.json()['id']}"


# ------------------------------------------------------------------------ idempotence, time


async def test_same_bytes_again_return_the_existing_dataset(
    client: httpx.AsyncClient, steward: str
) -> None:
    first = await load_ok(client, steward, "issuers", FIXTURES / "issuers.csv")
    again = await load(client, steward, "issuers", FIXTURES / "issuers.csv")
    assert again.status_code == 200
    assert again.json() == first
    assert len(await datasets(client, steward)) == 1


async def test_later_load_supersedes_while_the_past_stays_queryable(
    client: httpx.AsyncClient, steward: str
) -> None:
    await load_universe(client, steward)
    first = await load_ok(
        client,
        steward,
        "facts",
        "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,40\n",
        provider="iss",
        as_of="2025-01-31",
    )
    second = await load_ok(
        client,
        steward,
        "facts",
        "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,60\n",
        provider="iss",
        as_of="2025-07-31",
    )
    assert facts_by_metric((await issuer(client, steward, "PMI"))["facts"]) == {
        "revenue_pct.tobacco": "60"
    }
    between = first["loaded_at"]  # the moment the first load was recorded
    past = (
        await client.get("/v1/issuers/PMI/facts", params={"at": between}, headers=bearer(steward))
    ).json()
    assert past["data_version"] == first["id"]
    assert facts_by_metric(past["facts"]) == {"revenue_pct.tobacco": "40"}
    now = (await client.get("/v1/issuers/PMI/facts", headers=bearer(steward))).json()
    assert now["data_version"] == second["id"]
    # before the issuer was loaded at all, it was not known
    before = await client.get(
        "/v1/issuers/PMI/facts", params={"at": "2000-01-01T00:00:00Z"}, headers=bearer(steward)
    )
    assert_problem(before, 404)


async def test_older_provider_date_loaded_later_does_not_supersede(
    client: httpx.AsyncClient, steward: str
) -> None:
    """A correction file dated earlier than what we hold must not replace newer data."""
    await load_universe(client, steward)
    await load_ok(
        client,
        steward,
        "facts",
        "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,60\n",
        provider="iss",
        as_of="2025-07-31",
    )
    await load_ok(
        client,
        steward,
        "facts",
        "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,40\n",
        provider="iss",
        as_of="2025-01-31",
    )
    assert facts_by_metric((await issuer(client, steward, "PMI"))["facts"]) == {
        "revenue_pct.tobacco": "60"
    }


# ------------------------------------------------------------------------------ bad input

BAD_FILES = [
    pytest.param(
        "instruments",
        "isin,issuer_id,asset_class\nXS0009876540,NOBODY,equity\n",
        {},
        2,
        "issuer_id",
        "unknown issuer 'NOBODY'",
        id="instrument-of-unknown-issuer",
    ),
    pytest.param(
        "instruments",
        "isin,issuer_id,asset_class,underlying_isin\nXS0009876540,PMI,derivative,XS0009876557\n",
        {},
        2,
        "underlying_isin",
        "unknown underlying 'XS0009876557'",
        id="derivative-on-unknown-underlying",
    ),
    pytest.param(
        "issuers",
        "issuer_id,name,kind,country,parent_issuer_id\nX1,Orphan BV,company,NL,NOPARENT\n",
        {},
        2,
        "parent_issuer_id",
        "unknown parent issuer 'NOPARENT'",
        id="issuer-with-unknown-parent",
    ),
    pytest.param(
        "instruments",
        "isin,issuer_id,asset_class\nUS7181721090,PMI,equity\nUS7181721091,PMI,equity\n",
        {},
        3,
        "isin",
        "check digit",
        id="isin-check-digit",
    ),
    pytest.param(
        "issuers",
        "issuer_id,name,kind,country\nX1,Narnia Holdings,company,Narnia\n",
        {},
        2,
        "country",
        "Narnia",
        id="unknown-country",
    ),
    pytest.param(
        "facts",
        "issuer_ref,metric,value\nPMI,revenue.tobacco,50\n",
        {"provider": "iss", "as_of": "2025-06-30"},
        2,
        "metric",
        "unknown metric",
        id="unknown-metric",
    ),
    pytest.param(
        "facts",
        "issuer_ref,metric,value\nPMI,controversial_weapons.involved,perhaps\n",
        {"provider": "iss", "as_of": "2025-06-30"},
        2,
        "value",
        "not a boolean",
        id="wrong-type",
    ),
    pytest.param(
        "facts",
        "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,100.5\n",
        {"provider": "iss", "as_of": "2025-06-30"},
        2,
        "value",
        "above 100",
        id="percent-out-of-range",
    ),
    pytest.param(
        "facts",
        "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,50\nNOBODY,revenue_pct.tobacco,5\n",
        {"provider": "iss", "as_of": "2025-06-30"},
        3,
        "issuer_ref",
        "unknown issuer 'NOBODY'",
        id="unknown-issuer-ref",
    ),
    pytest.param(
        "instruments",
        "isin,issuer_id,asset_class\nUS7181721090,PMI,equity\nUS7181721090,PMI,equity\n",
        {},
        3,
        "isin",
        "duplicate isin: row 2",
        id="duplicate-key",
    ),
    pytest.param(
        "issuers",
        "issuer_id,name,country\nX1,Missing Kind,NL\n",
        {},
        1,
        None,
        "missing required column(s): kind",
        id="missing-column",
    ),
    pytest.param(
        "issuers",
        "issuer_id;name;kind;country\nX1;Semicolon BV;company;NL\n",
        {},
        1,
        None,
        "semicolons",
        id="wrong-delimiter",
    ),
    pytest.param(
        "issuers",
        "issuer_id,name,kind,country\nX1,Soci\u00e9t\u00e9 G\u00e9n\u00e9rale,company,FR\n".encode(
            "latin-1"
        ),
        {},
        2,
        None,
        "not UTF-8",
        id="wrong-encoding",
    ),
]


@pytest.mark.parametrize(("kind", "body", "params", "row", "column", "message"), BAD_FILES)
async def test_a_bad_row_rejects_the_whole_file_and_writes_nothing(
    client: httpx.AsyncClient,
    steward: str,
    kind: str,
    body: str | bytes,
    params: dict[str, str],
    row: int,
    column: str | None,
    message: str,
) -> None:
    await load_universe(client, steward)
    before = await datasets(client, steward)
    pmi_before = await issuer(client, steward, "PMI")

    response = await load(client, steward, kind, body, **params)
    problem = assert_problem(response, 422)
    first = problem["errors"][0]
    assert first["row"] == row, problem
    assert first["column"] == column, problem
    assert message in first["msg"], problem
    assert "Nothing was loaded" in problem["detail"]

    assert await datasets(client, steward) == before
    assert await issuer(client, steward, "PMI") == pmi_before
    if kind == "issuers":
        gone = await client.get("/v1/issuers/X1", headers=bearer(steward))
        assert gone.status_code == 404


async def test_good_rows_before_a_bad_one_are_not_written(
    client: httpx.AsyncClient, steward: str
) -> None:
    good = "".join(f"G{i},Good Company {i},company,NL\n" for i in range(500))
    body = "issuer_id,name,kind,country\n" + good + "B1,Bad Country Co,company,Atlantis\n"
    assert_problem(await load(client, steward, "issuers", body), 422)
    assert (await client.get("/v1/issuers/G0", headers=bearer(steward))).status_code == 404
    assert await datasets(client, steward) == []


async def test_errors_are_capped_at_one_hundred(client: httpx.AsyncClient, steward: str) -> None:
    body = "issuer_id,name,kind,country\n" + "".join(
        f"X{i},Company {i},company,Atlantis\n" for i in range(150)
    )
    problem = assert_problem(await load(client, steward, "issuers", body), 422)
    assert len(problem["errors"]) == 100
    assert [e["row"] for e in problem["errors"]] == list(range(2, 102))


async def test_vendor_data_needs_an_as_of_and_a_known_provider(
    client: httpx.AsyncClient, steward: str
) -> None:
    await load_universe(client, steward)
    body = "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,50\n"
    problem = assert_problem(await load(client, steward, "facts", body, provider="iss"), 422)
    assert "as_of" in problem["errors"][0]["msg"] or problem["errors"][0]["column"] == "as_of"
    problem = assert_problem(
        await load(client, steward, "facts", body, provider="bloomberg", as_of="2025-01-01"), 422
    )
    assert "Unknown provider 'bloomberg'" in problem["detail"]
    problem = assert_problem(
        await load(client, steward, "msci-esg", FIXTURES / "msci_esg.csv"), 422
    )
    assert problem["errors"] == [{"loc": ["query", "as_of"], "msg": "required for this kind"}]


async def test_loading_needs_data_write(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    reader = await make_key(Scope.check, Scope.lists_read)
    assert_problem(await load(client, reader, "issuers", FIXTURES / "issuers.csv"), 403)
    assert_problem(await client.post("/v1/datasets", params={"kind": "issuers"}, content=b"x"), 401)


async def test_countries_find_their_sovereigns_facts_and_embargoes(
    client: httpx.AsyncClient, steward: str
) -> None:
    await load_universe(client, steward)
    await load_ok(client, steward, "ituc", "country,rating\nRussia,5\n", as_of="2025-06-01")
    first = await load_ok(
        client, steward, "arms-embargoes", FIXTURES / "arms_embargoes.csv", as_of="2025-10-01"
    )
    russia = (await client.get("/v1/countries/RUS", headers=bearer(steward))).json()
    assert russia["country"] == "RU"
    assert [s["issuer_id"] for s in russia["sovereigns"]] == ["SOV-RU"]
    assert facts_by_metric(russia["facts"]) == {"country.ituc.rating": "5"}
    assert {(e["authority"], e["in_force"]) for e in russia["arms_embargoes"]} == {
        ("EU", True),
        ("US", True),
    }
    assert all(e["dataset_id"] == first["id"] for e in russia["arms_embargoes"])

    # The next load of the same provider is its complete list: Russia's US row is gone.
    lifted = (
        (FIXTURES / "arms_embargoes.csv")
        .read_text()
        .replace("Russia,US,ITAR 126.1,2014-03-01,\n", "")
    )
    await load_ok(client, steward, "arms-embargoes", lifted, as_of="2025-11-01")
    russia = (await client.get("/v1/countries/RU", headers=bearer(steward))).json()
    assert [e["authority"] for e in russia["arms_embargoes"]] == ["EU"]
    assert_problem(await client.get("/v1/countries/Narnia", headers=bearer(steward)), 404)


async def test_references_may_point_within_the_same_file(
    client: httpx.AsyncClient, steward: str
) -> None:
    """A parent, or an underlying, loaded in the same file as what points to it is known."""
    await load_universe(client, steward)
    issuers = (
        "issuer_id,name,kind,country,parent_issuer_id\n"
        "KID,Kid BV,company,NL,MOM\nMOM,Mom NV,company,NL,\n"
    )
    assert (await load(client, steward, "issuers", issuers)).status_code == 201
    instruments = (
        "isin,issuer_id,asset_class,underlying_isin\n"
        "XS0009876540,KID,derivative,XS0009876557\nXS0009876557,MOM,equity,\n"
    )
    assert (await load(client, steward, "instruments", instruments)).status_code == 201
    option = await client.get("/v1/instruments/XS0009876540", headers=bearer(steward))
    assert option.json()["underlying"]["isin"] == "XS0009876557"
