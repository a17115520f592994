"""Sanctions: OFAC's NS-CMIC list (`ofac-ns-cmic`, metric ``sanctions.us_ns_cmic``) and country
sanctions beyond arms embargoes (``country.sanctions.financial``, loaded as country facts).

Through the HTTP API on both dialects (loads, checks, evidence), and the engine's reader with
hand-built snapshots: an instrument carrying an official ISIN that fails the check digit cannot
be loaded (instrument loads validate ISINs), so its textual match is shown at the engine level.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from app.datasets.records import EmbargoLoad
from app.kit.time import utcnow
from app.policies.document import PolicyDocument, parse_document
from app.screening.engine import evaluate
from app.screening.snapshot import FactPoint, InstrumentNode, IssuerNode, SanctionsListing, Snapshot
from tests.conftest import MakeKey, bearer
from tests.support.checks import FRESH, Desk, open_desk
from tests.support.datasets import load, load_ok, real_file
from tests.support.policies import approve, post_document, rule

OFAC = real_file("ofac_ns_cmic/ofac_ns_cmic_entities.csv")
BAD_ISINS = {"CND10002K094", "CND10002G601"}
CHINA_MOBILE_ADR = "US16941M1099"  # row 4 of the published file, listed 03 Jun 2021
TODAY = utcnow().date()


def days_ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def cmic_policy(providers: list[str] | None = None) -> dict[str, Any]:
    when: dict[str, Any] = {"metric": "sanctions.us_ns_cmic", "op": "==", "value": True}
    if providers is not None:
        when["providers"] = providers
    return {
        "key": "cmic",
        "title": "No NS-CMIC companies",
        "unknown": "block",
        "data": {"max_age_days": 400},
        "rules": [
            rule("ns-cmic", when, applies_to={"issuer_kinds": ["company"]}),
            rule(
                "country-financial",
                {
                    "metric": "country.sanctions.financial",
                    "op": "intersects",
                    "value": ["UN", "EU", "US"],
                },
                applies_to={"issuer_kinds": ["sovereign"]},
            ),
        ],
    }


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    desk = await open_desk(client, make_key)
    author = await make_key(Scope.policies_write, name="cmic-author")
    approver = await make_key(Scope.policies_approve, name="cmic-committee")
    created = await post_document(client, "cmic", cmic_policy(), bearer(author))
    assert created.status_code == 201, created.text
    approved = await approve(client, "cmic", created.json()["version"], bearer(approver))
    assert approved.status_code == 200, approved.text
    await load_ok(
        client,
        desk.steward,
        "issuers",
        "issuer_id,name,kind,country\nCHINA-MOBILE,China Mobile Limited,company,HK\n",
    )
    await load_ok(
        client,
        desk.steward,
        "instruments",
        f"isin,issuer_id,asset_class,name\n{CHINA_MOBILE_ADR},CHINA-MOBILE,equity,ADR\n"
        "RU000A0JX0J2,SOV-RU,sovereign_bond,OFZ\n",
    )
    return desk


def without(name: str) -> bytes:
    """The published file without one entity's row (a later list that delisted it)."""
    lines = OFAC.read_bytes().decode("utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if name not in line).encode("utf-8")


def reason(decision: dict[str, Any], rule_id: str) -> dict[str, Any] | None:
    return next((r for r in decision["reasons"] if r["rule_id"] == rule_id), None)


# ----------------------------------------------------------------------------- the load


async def test_the_published_list_loads_as_published(desk: Desk) -> None:
    loaded = await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC, as_of="2025-04-21")
    assert loaded["kind"] == "ofac-ns-cmic"
    assert loaded["provider"] == "ofac"
    assert loaded["as_of"] == "2025-04-21"
    assert loaded["rows"] == 68
    summary = loaded["summary"]
    assert summary["entities"] == 68
    assert summary["isins"] == 164
    # OFAC gives two ISINs twice within one entity's row (CNOOC, CSSC): kept as published.
    assert {(e["ent_num"], e["isin"]) for e in summary["repeated_isins"]["examples"]} == {
        ("30926", "HK0883013259"),
        ("30938", "CND100005MX3"),
    }
    assert summary["entities_without_isins"]["count"] == 15
    assert {"ent_num": "30902", "name": "AERO ENGINE CORPORATION OF CHINA"} in summary[
        "entities_without_isins"
    ]["examples"]
    invalid = summary["invalid_isins"]
    assert invalid["count"] == 2
    assert {e["isin"] for e in invalid["examples"]} == BAD_ISINS
    assert {e["name"] for e in invalid["examples"]} == {
        "CHINA COMMUNICATIONS CONSTRUCTION COMPANY LIMITED"
    }
    # Only the China Mobile ADR is an instrument we hold.
    assert summary["unmatched_isins"]["count"] == 163
    assert summary["previous"] is None
    assert summary["added"]["count"] == 68
    assert summary["history"] is False


async def test_a_load_without_as_of_is_the_list_as_of_the_load_date(desk: Desk) -> None:
    loaded = await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC)
    assert loaded["as_of"] == TODAY.isoformat()


async def test_sanctions_us_ns_cmic_is_not_a_fact(desk: Desk) -> None:
    response = await load(
        desk.client,
        desk.steward,
        "facts",
        f"issuer_ref,metric,value,as_of\nCHINA-MOBILE,sanctions.us_ns_cmic,true,{FRESH}\n",
        provider="ofac",
    )
    assert response.status_code == 422
    assert "ofac-ns-cmic" in response.text


# ----------------------------------------------------------------------------- checks


async def test_a_listed_company_is_excluded_with_the_lists_date_and_its_listing_date(
    desk: Desk,
) -> None:
    as_of = days_ago(40)
    loaded = await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC, as_of=as_of)
    assert loaded["summary"]["unmatched_isins"]["count"] == 163  # the ADR matched
    decision = await desk.check(CHINA_MOBILE_ADR, policy="cmic")
    assert decision["verdict"] == "excluded"
    found = reason(decision, "ns-cmic")
    assert found is not None
    assert found["outcome"] == "exclude"
    (evidence,) = found["evidence"]
    assert evidence["provider"] == "ofac"
    assert evidence["metric"] == "sanctions.us_ns_cmic"
    assert evidence["value"] == "true"
    assert evidence["as_of"] == as_of  # the list's date
    assert evidence["dataset_id"] == loaded["id"]
    assert evidence["source_row"] == 4  # CHINA MOBILE LIMITED's row in the published file
    assert "listed since 2021-06-03" in evidence["source_field"]
    assert CHINA_MOBILE_ADR in evidence["source_field"]


async def test_a_company_a_fresh_list_does_not_name_is_not_excluded(desk: Desk) -> None:
    await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC, as_of=days_ago(40))
    decision = await desk.check("US7181721090", policy="cmic")  # Philip Morris
    assert decision["verdict"] == "allowed"  # false, not unknown
    assert reason(decision, "ns-cmic") is None


async def test_no_list_loaded_is_unknown(desk: Desk) -> None:
    decision = await desk.check("US7181721090", policy="cmic")
    assert decision["verdict"] == "unknown"
    found = reason(decision, "ns-cmic")
    assert found is not None
    assert found["outcome"] == "unknown"
    assert "no sanctions.us_ns_cmic list" in found["detail"]


async def test_a_newer_list_without_the_entity_lifts_it_and_an_older_one_never_supersedes(
    desk: Desk,
) -> None:
    await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC, as_of=days_ago(40))
    newer = await load_ok(
        desk.client,
        desk.steward,
        "ofac-ns-cmic",
        without("CHINA MOBILE LIMITED"),
        as_of=days_ago(10),
    )
    assert newer["summary"]["removed"]["examples"] == [
        {"ent_num": "30923", "name": "CHINA MOBILE LIMITED"}
    ]
    assert newer["summary"]["unchanged"] == 67
    decision = await desk.check(CHINA_MOBILE_ADR, policy="cmic")
    assert decision["verdict"] == "allowed"

    # An older-dated list loaded later (an archive) is history: it does not bring it back.
    older = await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC, as_of=days_ago(60))
    assert older["summary"]["history"] is True
    assert older["summary"]["current"]["dataset_id"] == newer["id"]
    assert (await desk.check(CHINA_MOBILE_ADR, policy="cmic"))["verdict"] == "allowed"
    # (A day between the two dates reads the list then in force: the engine tests below.)


async def test_a_stale_list_is_unknown(desk: Desk) -> None:
    # The file as retrieved (2025-04-21): older than the policy's 400 days by now.
    stale = await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC, as_of="2025-04-21")
    if (TODAY - dt.date(2025, 4, 21)).days <= 400:
        pytest.skip("the published file's date is not yet 400 days old")
    decision = await desk.check("US7181721090", policy="cmic")
    assert decision["verdict"] == "unknown"
    found = reason(decision, "ns-cmic")
    assert found is not None
    assert found["outcome"] == "unknown"
    assert "stale" in found["detail"]
    assert found["evidence"][0]["dataset_id"] == stale["id"]
    # A stale list that names the company decides nothing either: unknown, never excluded.
    listed = await desk.check(CHINA_MOBILE_ADR, policy="cmic")
    assert listed["verdict"] == "unknown"


# ----------------------------------------------------------------------------- countries


async def country_sanctions(desk: Desk, rows: dict[str, str]) -> dict[str, Any]:
    body = "issuer_ref,metric,value,as_of\n" + "".join(
        f"{country},country.sanctions.financial,{value},{FRESH}\n"
        for country, value in rows.items()
    )
    return await load_ok(desk.client, desk.steward, "facts", body, provider="internal")


async def test_country_financial_sanctions_exclude_a_sovereign_bond(desk: Desk) -> None:
    loaded = await country_sanctions(desk, {"Russia": "EU;US", "NL": "none"})
    russia = await desk.check("RU000A0JX0J2", policy="cmic")
    assert russia["verdict"] == "excluded"
    found = reason(russia, "country-financial")
    assert found is not None
    assert found["outcome"] == "exclude"
    (evidence,) = found["evidence"]
    assert evidence["value"] == "EU;US"
    assert evidence["dataset_id"] == loaded["id"]
    assert evidence["provider"] == "internal"
    netherlands = await desk.check("NL0000102317", policy="cmic")
    assert netherlands["verdict"] == "allowed"  # "none": stated, so false, not unknown

    # The shipped policies: rpf counts any of UN, EU, US; dk-pension only UN and EU (§ 16).
    rpf = reason(await desk.check("RU000A0JX0J2", policy="rpf"), "country-financial-sanctions")
    assert rpf is not None
    assert rpf["outcome"] == "exclude"
    assert (
        reason(await desk.check("NL0000102317", policy="rpf"), "country-financial-sanctions")
        is None
    )
    dk = reason(
        await desk.check("RU000A0JX0J2", policy="dk-pension"), "country-financial-sanctions"
    )
    assert dk is not None
    assert dk["outcome"] == "exclude"


async def test_dk_pension_does_not_count_us_only_sanctions(desk: Desk) -> None:
    await country_sanctions(desk, {"RU": "US"})
    dk = await desk.check("RU000A0JX0J2", policy="dk-pension")
    assert reason(dk, "country-financial-sanctions") is None
    rpf = reason(await desk.check("RU000A0JX0J2", policy="rpf"), "country-financial-sanctions")
    assert rpf is not None
    assert rpf["outcome"] == "exclude"


async def test_missing_country_sanctions_data_is_unknown(desk: Desk) -> None:
    decision = await desk.check("RU000A0JX0J2", policy="cmic")
    assert decision["verdict"] == "unknown"
    found = reason(decision, "country-financial")
    assert found is not None
    assert found["outcome"] == "unknown"


async def test_a_country_fact_names_a_known_country(desk: Desk) -> None:
    response = await load(
        desk.client,
        desk.steward,
        "facts",
        f"issuer_ref,metric,value,as_of\nAtlantis,country.sanctions.financial,UN,{FRESH}\n",
        provider="internal",
    )
    assert response.status_code == 422
    assert "Atlantis" in response.text


# ----------------------------------------------------------------------------- the engine

AT = dt.datetime(2025, 9, 30, 12, 0, tzinfo=dt.UTC)
DAY = AT.date()


def engine_policy() -> PolicyDocument:
    return parse_document(cmic_policy(["ofac"]))


def listing(isin: str, dataset_id: int, row: int = 9) -> SanctionsListing:
    return SanctionsListing(
        isin=isin,
        entity_ref="32038",
        name="CHINA COMMUNICATIONS CONSTRUCTION CO LTD",
        listing_date=dt.date(2021, 6, 3),
        effective_date=dt.date(2021, 8, 2),
        dataset_id=dataset_id,
        source_row=row,
    )


def snapshot(
    loads: list[EmbargoLoad], listings: list[SanctionsListing], isin: str = "CND10002K094"
) -> Snapshot:
    snap = Snapshot(data_version=9)
    snap.issuers["CCCC"] = IssuerNode("CCCC", "China Communications Construction", "company", "CN")
    snap.instruments[isin] = InstrumentNode(isin, "CCCC", "corporate_bond")
    snap.sanctions_loads = tuple(loads)
    grouped: dict[str, tuple[SanctionsListing, ...]] = {}
    for item in listings:
        grouped[item.isin] = (*grouped.get(item.isin, ()), item)
    snap.sanctions_listings = grouped
    snap.link_listings()
    return snap


def ofac(dataset_id: int, days: int) -> EmbargoLoad:
    return EmbargoLoad(dataset_id=dataset_id, provider="ofac", as_of=DAY - dt.timedelta(days))


def test_engine_matches_an_isin_failing_the_check_digit_textually() -> None:
    snap = snapshot([ofac(1, 30)], [listing("CND10002K094", 1)])
    result = evaluate(engine_policy(), snap, "CND10002K094", AT)
    assert result.verdict == "excluded"
    (found,) = result.reasons
    (evidence,) = found.evidence
    assert (evidence.provider, evidence.value, evidence.dataset_id) == ("ofac", "true", 1)
    assert evidence.as_of == DAY - dt.timedelta(30)
    assert evidence.source_row == 9
    assert evidence.source_field is not None
    assert "listed since 2021-06-03" in evidence.source_field


def test_engine_reads_the_newest_dated_list_not_the_last_loaded() -> None:
    # Dataset 1 (30 days old) names it; dataset 2 (10 days old) does not; dataset 3, loaded
    # last but dated 60 days back, names it again: the current list is dataset 2.
    snap = snapshot(
        [ofac(1, 30), ofac(2, 10), ofac(3, 60)],
        [listing("CND10002K094", 1), listing("CND10002K094", 3)],
    )
    result = evaluate(engine_policy(), snap, "CND10002K094", AT)
    assert result.verdict == "allowed"
    # 20 days ago the list of 30 days ago was in force.
    earlier = evaluate(engine_policy(), snap, "CND10002K094", AT - dt.timedelta(days=20))
    assert earlier.verdict == "excluded"
    # 45 days ago: the back-filled list of 60 days ago.
    archive = evaluate(engine_policy(), snap, "CND10002K094", AT - dt.timedelta(days=45))
    assert archive.verdict == "excluded"
    assert archive.reasons[0].evidence[0].dataset_id == 3


def test_engine_a_stale_list_is_unknown_and_no_list_is_unknown() -> None:
    stale = evaluate(engine_policy(), snapshot([ofac(1, 500)], []), "CND10002K094", AT)
    assert stale.verdict == "unknown"
    assert stale.reasons[0].detail is not None
    assert "stale" in stale.reasons[0].detail
    none = evaluate(engine_policy(), snapshot([], []), "CND10002K094", AT)
    assert none.verdict == "unknown"
    # Another provider's list is not read when the rule names ofac.
    other = snapshot([EmbargoLoad(1, "sipri", DAY)], [listing("CND10002K094", 1)])
    assert evaluate(engine_policy(), other, "CND10002K094", AT).verdict == "unknown"


def test_engine_an_unlisted_isin_is_false_on_a_fresh_list() -> None:
    snap = snapshot([ofac(1, 30)], [listing("CND10002G601", 1)], isin="CND10002K094")
    result = evaluate(engine_policy(), snap, "CND10002K094", AT)
    assert result.verdict == "allowed"
    assert result.reasons == ()


def test_engine_country_financial_sanctions() -> None:
    snap = snapshot([ofac(1, 30)], [])
    snap.issuers["SOV-RU"] = IssuerNode("SOV-RU", "Russian Federation", "sovereign", "RU")
    snap.instruments["RU000A0JX0J2"] = InstrumentNode("RU000A0JX0J2", "SOV-RU", "sovereign_bond")
    snap.add_country_facts(
        "RU",
        [FactPoint("country.sanctions.financial", "internal", "EU;US", DAY, 4, 2)],
    )
    result = evaluate(engine_policy(), snap, "RU000A0JX0J2", AT)
    assert result.verdict == "excluded"
    assert result.reasons[0].rule_id == "country-financial"


def test_the_adapter_reads_ofac_dates() -> None:
    from app.datasets.adapters.ofac_ns_cmic import ofac_date
    from app.datasets.csvfile import CsvRow

    row = CsvRow(2, ["03 Jun 2021", "2021-08-02", ""], {"a": 0, "b": 1, "c": 2})
    assert ofac_date(row, "a") == dt.date(2021, 6, 3)
    assert ofac_date(row, "b") == dt.date(2021, 8, 2)
    assert ofac_date(row, "c") is None


async def test_the_policys_list_carries_the_listed_company(desk: Desk, make_key: MakeKey) -> None:
    """The compiled universe (custodians' lists) reads the lists too (``full_snapshot``)."""
    await load_ok(desk.client, desk.steward, "ofac-ns-cmic", OFAC, as_of=days_ago(40))
    reader = await make_key(Scope.lists_read, name="cmic-custodian")
    response = await desk.client.get(
        "/v1/lists/cmic", params={"format": "csv"}, headers=bearer(reader)
    )
    assert response.status_code == 200, response.text
    rows = [line for line in response.text.splitlines() if CHINA_MOBILE_ADR in line]
    assert len(rows) == 1
    assert "ns-cmic" in rows[0]
    assert "excluded" in rows[0]
    assert "US7181721090" not in response.text  # PMI: not on the list, a fresh one
