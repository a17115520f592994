"""Checks through the HTTP API, with data loaded through the dataset endpoints and the shipped
policies loaded and approved through the policy endpoints (four eyes). Both dialects."""

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from app.kit.time import utcnow
from tests.conftest import MakeKey, bearer
from tests.support.calendar import stable_today, today, years_before
from tests.support.checks import ASR_CLEAN, CLEAN, FRESH, Desk, open_desk
from tests.support.datasets import FIXTURES, load_ok
from tests.support.policies import post_document, shipped
from tests.support.problems import assert_problem


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    return await open_desk(client, make_key)


def rule_ids(decision: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["rule_id"], r["outcome"]) for r in decision["reasons"]}


async def test_allowed_and_excluded_with_evidence_and_provenance(desk: Desk) -> None:
    await desk.clean("PMI")
    tobacco = await desk.facts("PMI", "iss", {"revenue_pct.tobacco": "96.4"})
    decision = await desk.check("US7181721090")
    assert decision["verdict"] == "excluded"
    assert decision["may_hold"] is False
    assert decision["instrument"] == {"isin": "US7181721090", "asset_class": "equity"}
    assert decision["issuer"]["issuer_id"] == "PMI"
    assert decision["policy"]["key"] == "rpf"
    assert decision["policy"]["version"] == 1
    assert len(decision["policy"]["sha256"]) == 64
    assert decision["data_version"] == tobacco
    (reason,) = decision["reasons"]
    assert reason["rule_id"] == "tobacco"
    assert reason["via"] == [{"issuer_id": "PMI", "relation": "self"}]
    (evidence,) = reason["evidence"]
    assert evidence["provider"] == "iss"
    assert evidence["metric"] == "revenue_pct.tobacco"
    assert evidence["value"] == "96.4"
    assert (evidence["comparison"], evidence["threshold"]) == (">", "50")
    assert evidence["as_of"] == FRESH
    assert evidence["dataset_id"] == tobacco

    await desk.clean("BATS")
    assert (await desk.check("GB0002875804"))["verdict"] == "allowed"


@pytest.mark.parametrize(
    ("overrides", "verdict", "rule"),
    [
        ({"revenue_pct__tobacco": "50"}, "allowed", None),
        ({"revenue_pct__tobacco": "50.1"}, "excluded", "tobacco"),
        ({"revenue_pct__unconventional_oil_gas": "5"}, "allowed", None),
        ({"revenue_pct__unconventional_oil_gas": "5.1"}, "excluded", "fossil-fuels"),
        ({"revenue_pct__thermal_coal_power": "10"}, "allowed", None),
        ({"revenue_pct__thermal_coal_power": "10.1"}, "excluded", "coal-power"),
        ({"revenue_pct__unconventional_oil_gas": "5-9.9"}, "unknown", "fossil-fuels"),
        ({"controversial_weapons__involved": "true"}, "excluded", "controversial-weapons"),
    ],
)
async def test_rpf_company_rules_at_their_edges(
    desk: Desk, overrides: dict[str, str], verdict: str, rule: str | None
) -> None:
    await desk.clean("ANGLO", **overrides)
    decision = await desk.check("GB00B1XZS820")
    assert decision["verdict"] == verdict
    assert {r["rule_id"] for r in decision["reasons"]} == ({rule} if rule else set())


async def test_norms_two_years_to_the_day(desk: Desk) -> None:
    # Two calendar years before the server's today (29 February: the 28th); any day of the month.
    day = stable_today()
    two_years = years_before(day, 2).isoformat()
    await desk.clean("SHELL", norms__status="non_compliant")
    await desk.facts("SHELL", "robeco", {"norms.non_compliant_since": two_years})
    decision = await desk.check("GB00BP6MXD84")
    assert decision["as_of"].startswith(day.isoformat())
    assert decision["verdict"] == "excluded"
    assert ("norms-violators", "exclude") in rule_ids(decision)
    day_after = (years_before(day, 2) + dt.timedelta(days=1)).isoformat()
    await desk.facts("SHELL", "robeco", {"norms.non_compliant_since": day_after})
    decision = await desk.check("GB00BP6MXD84")
    assert decision["verdict"] == "watch"
    assert decision["may_hold"] is True
    assert rule_ids(decision) == {("norms-engagement", "watch")}


async def test_stale_fact_gives_unknown_naming_the_data(desk: Desk) -> None:
    old = (today() - dt.timedelta(days=401)).isoformat()
    await desk.clean("THALES")
    await desk.facts("THALES", "iss", {"revenue_pct.tobacco": "0"}, as_of=old)
    # the fresh value from clean() still wins: an older provider date never supersedes
    assert (await desk.check("FR0000121329"))["verdict"] == "allowed"

    await desk.clean("EQUINOR")
    await desk.facts("EQUINOR", "robeco", {"norms.status": "compliant"}, as_of=old)
    body = f"issuer_ref,metric,value,as_of\nNORTHROP,revenue_pct.tobacco,0,{old}\n"
    for (metric, provider), value in CLEAN.items():
        if metric != "revenue_pct.tobacco":
            await desk.facts("NORTHROP", provider, {metric: value})
    await load_ok(desk.client, desk.steward, "facts", body, provider="iss")
    decision = await desk.check("US6668071029")
    assert decision["verdict"] == "unknown"
    assert decision["may_hold"] is False
    (reason,) = decision["reasons"]
    assert reason["rule_id"] == "tobacco"
    assert reason["outcome"] == "unknown"
    assert "stale" in reason["detail"]


async def country_data(desk: Desk, **cpi: str) -> None:
    await load_ok(
        desk.client,
        desk.steward,
        "freedom-house",
        "Country/Territory,C/T,Edition,Status,PR rating,CL rating\n"
        "Russia,c,2025,NF,7,7\nNetherlands,c,2025,F,1,1\nVenezuela,c,2025,NF,7,6\n"
        "China,c,2025,NF,6,6\n",
        as_of=FRESH,
    )
    await load_ok(
        desk.client,
        desk.steward,
        "ituc",
        "country,rating\nRU,5\nNL,1\nVE,5+\nCN,5\n",
        as_of=FRESH,
    )
    scores = {"RUS": "22", "NLD": "79", "VEN": "14", "CHN": "45", **cpi}
    await load_ok(
        desk.client,
        desk.steward,
        "ti-cpi",
        "Country,ISO3,CPI score\n" + "".join(f"x,{k},{v}\n" for k, v in scores.items()),
        as_of=FRESH,
    )
    await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        "country,authority,regime,since\nRU,EU,2014/512/CFSP,2014-07-31\n",
        as_of=FRESH,
    )
    await load_ok(
        desk.client,
        desk.steward,
        "facts",
        "issuer_ref,metric,value\n"
        + "".join(f"{c},country.sanctions.financial,none\n" for c in ("RU", "NL", "VE", "CN")),
        provider="internal",
        as_of=FRESH,
    )


async def test_sovereigns_under_rpf(desk: Desk) -> None:
    await country_data(desk)
    netherlands = await desk.check("NL0000102317")
    assert netherlands["verdict"] == "allowed", netherlands["reasons"]
    assert netherlands["instrument"]["asset_class"] == "sovereign_bond"


@pytest.mark.parametrize(("cpi", "verdict"), [("19", "excluded"), ("20", "allowed")])
async def test_cpi_exactly_nineteen(desk: Desk, cpi: str, verdict: str) -> None:
    await country_data(desk, NLD=cpi)
    decision = await desk.check("NL0000102317")
    assert decision["verdict"] == verdict
    if verdict == "excluded":
        assert rule_ids(decision) == {("country-corruption", "exclude")}


async def test_state_owned_company_excluded_through_its_owner(desk: Desk) -> None:
    await country_data(desk)
    await desk.clean("SHENHUA")  # 69.52 % owned by the Chinese state
    await desk.clean("THALES")  # 26.6 % owned by the French state
    assert (await desk.check("CNE1000002R0"))["verdict"] == "allowed"

    # The next arms-embargoes load (the complete list) adds the EU embargo on China.
    await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        "country,authority,regime,since\nRU,EU,2014/512/CFSP,2014-07-31\n"
        "CN,EU,European Council declaration,1989-06-27\n",
        as_of=today().isoformat(),
    )
    decision = await desk.check("CNE1000002R0")
    assert decision["verdict"] == "excluded"
    (reason,) = decision["reasons"]
    assert reason["rule_id"] == "country-sanctions"
    assert reason["via"] == [
        {"issuer_id": "SOV-CN", "relation": "state_owner"},
        {"issuer_id": "SOV-CN", "relation": "self"},
    ]
    assert reason["evidence"][0]["value"] == "EU"
    assert (await desk.check("FR0000121329"))["verdict"] == "allowed"


async def test_unknown_and_malformed_instruments(desk: Desk) -> None:
    unknown = await desk.check("US0378331005")
    assert unknown["verdict"] == "unknown"
    assert unknown["may_hold"] is False
    assert unknown["instrument"] is None
    assert unknown["reasons"][0]["rule_id"] == "data:instrument"

    bad = await desk.client.get(
        "/v1/check",
        params={"policy": "rpf", "instrument": "US0378331004"},
        headers=bearer(desk.trader),
    )
    problem = assert_problem(bad, 422)
    assert "US0378331004" in problem["detail"]

    await desk.clean("PMI")
    batch = await desk.client.post(
        "/v1/checks",
        json={"policy": "rpf", "instruments": ["US7181721090", "US0378331004", "us7181721090"]},
        headers=bearer(desk.trader),
    )
    assert batch.status_code == 200, batch.text
    decisions = batch.json()["decisions"]
    assert [d["requested_isin"] for d in decisions] == [
        "US7181721090",
        "US0378331004",
        "us7181721090",
    ]
    assert [d["verdict"] for d in decisions] == ["allowed", "unknown", "allowed"]
    assert decisions[1]["reasons"][0]["rule_id"] == "data:isin"
    assert "check digit" in decisions[1]["reasons"][0]["detail"]
    assert len({d["decision_id"] for d in decisions}) == 3


async def test_policy_and_size_errors(desk: Desk) -> None:
    missing = await desk.client.get(
        "/v1/check",
        params={"policy": "nope", "instrument": "US7181721090"},
        headers=bearer(desk.trader),
    )
    assert_problem(missing, 404)
    too_many = await desk.client.post(
        "/v1/checks",
        json={"policy": "rpf", "instruments": ["US7181721090"] * 10_001},
        headers=bearer(desk.trader),
    )
    problem = assert_problem(too_many, 413)
    assert "10,000" in problem["detail"]
    no_scope = await desk.client.get(
        "/v1/check",
        params={"policy": "rpf", "instrument": "US7181721090"},
        headers=bearer(desk.auditor),
    )
    assert_problem(no_scope, 403)


async def test_as_of_answers_with_the_data_loaded_by_then(desk: Desk) -> None:
    await desk.clean("PMI")
    before = (await desk.check("US7181721090"))["decided_at"]
    await desk.facts("PMI", "iss", {"revenue_pct.tobacco": "80"})
    assert (await desk.check("US7181721090"))["verdict"] == "excluded"
    past = await desk.check("US7181721090", as_of=before)
    assert past["verdict"] == "allowed"
    assert past["as_of"].startswith(before[:19])
    future = await desk.client.get(
        "/v1/check",
        params={"policy": "rpf", "instrument": "US7181721090", "as_of": "2999-01-01T00:00:00Z"},
        headers=bearer(desk.trader),
    )
    assert_problem(future, 422)


async def test_every_decision_is_stored_as_returned(desk: Desk) -> None:
    await desk.clean("PMI")
    decision = await desk.check("US7181721090")
    stored = await desk.client.get(
        f"/v1/decisions/{decision['decision_id']}", headers=bearer(desk.auditor)
    )
    assert stored.status_code == 200, stored.text
    body = stored.json()
    audit = body.pop("audit")
    assert body == decision
    assert audit["requested_by"] == "oms"
    assert audit["request"]["instruments"] == ["US7181721090"]


async def test_dk_group_rule_through_the_api(desk: Desk) -> None:
    # SHELL-NE is 50 % owned (not > 50): no group hit; SHELL-EP84 is 100 %.
    await desk.facts(
        "SHELL-EP84",
        "sustainalytics",
        {"controversial_weapons.involved": "true", "norms.status": "compliant"},
    )
    await desk.facts(
        "SHELL",
        "sustainalytics",
        {"controversial_weapons.involved": "false", "norms.status": "compliant"},
    )
    decision = await desk.check("GB00BP6MXD84", policy="dk-pension")
    assert decision["verdict"] == "excluded"
    (reason,) = [r for r in decision["reasons"] if r["outcome"] == "exclude"]
    assert reason["via"][0] == {"issuer_id": "SHELL-EP84", "relation": "subsidiary"}


async def test_list_entries_from_the_policy_owner(desk: Desk) -> None:
    await desk.clean("SHENHUA")
    await load_ok(desk.client, desk.steward, "list-entries", FIXTURES / "list_entries.csv")
    decision = await desk.check("CNE1000002R0")
    assert decision["verdict"] == "excluded"
    assert ("list:exclusion", "exclude") in rule_ids(decision)


async def test_impact_preview_lists_what_a_draft_would_change(
    desk: Desk, make_key: MakeKey
) -> None:
    await desk.clean("PMI", revenue_pct__tobacco="45")
    await desk.clean("BATS", revenue_pct__tobacco="97")
    author = await make_key(Scope.policies_write, name="second-author")
    stricter = shipped("rpf")
    for rule in stricter["rules"]:
        if rule["id"] == "tobacco":
            rule["when"]["value"] = 40
    created = await post_document(desk.client, "rpf", stricter, bearer(author))
    assert created.status_code == 201, created.text
    version = created.json()["version"]
    response = await desk.client.post(
        f"/v1/policies/rpf/versions/{version}/impact", headers=bearer(author)
    )
    assert response.status_code == 200, response.text
    impact = response.json()
    assert impact["against_version"] == 1
    changes = {c["isin"]: c for c in impact["changes"]}
    assert changes["US7181721090"]["before"] == "allowed"
    assert changes["US7181721090"]["after"] == "excluded"
    assert changes["US7181721090"]["rules_after"] == ["tobacco"]
    assert "GB0002875804" not in changes  # excluded before and after, by the same rule
    assert impact["instruments_evaluated"] == 12
    forbidden = await desk.client.post(
        f"/v1/policies/rpf/versions/{version}/impact", headers=bearer(desk.trader)
    )
    assert_problem(forbidden, 403)


@pytest.fixture(autouse=True)
async def every_decision_replays_identically(desk: Desk, sessionmaker: Any) -> Any:
    """After each test: recompute every decision it made; each must match what was stored."""
    yield
    from sqlalchemy import select

    from app.models import Decision as StoredDecision
    from app.screening.service import recompute

    async with sessionmaker() as session:
        stored = (await session.execute(select(StoredDecision.payload))).scalars().all()
        for text in stored:
            original = json.loads(text)
            recomputed = await recompute(session, original)
            expected = {k: v for k, v in original.items() if k not in ("decision_id", "decided_at")}
            assert recomputed == expected


# ------------------------------------------------------------ fail closed (issue 10, section 1)


async def test_state_owner_without_country_data_is_unknown_naming_the_data(desk: Desk) -> None:
    """Equinor is 67 % owned by Norway; nothing about Norway is loaded: unknown, not allowed."""
    await desk.clean("EQUINOR")
    decision = await desk.check("NO0010096985")
    assert decision["verdict"] == "unknown"
    assert decision["may_hold"] is False
    assert {r["outcome"] for r in decision["reasons"]} == {"unknown"}
    for reason in decision["reasons"]:
        assert reason["via"][0]["relation"] == "state_owner"
        ownership = reason["evidence"][-1]
        assert (ownership["metric"], ownership["value"], ownership["threshold"]) == (
            "state_owner_pct",
            "67",
            "50",
        )
    assert "country NO" in " ".join(r["detail"] or "" for r in decision["reasons"])


async def test_group_rule_carries_a_subsidiary_list_exclusion_with_its_control(
    desk: Desk, client: httpx.AsyncClient
) -> None:
    """dk-pension: the funds exclude Shell's 100 % subsidiary; Shell violates too (seed 003
    section 27), and the reason shows the control percentage and where it was read."""
    await desk.clean("SHELL")
    assert (await desk.check("GB00BP6MXD84", "dk-pension"))["verdict"] == "allowed"
    await load_ok(
        client,
        desk.steward,
        "list-entries",
        "policy,issuer_ref,list,reason,decided_on\n"
        "dk-pension,SHELL-EP84,exclusion,Funds' decision,2025-06-01\n",
    )
    decision = await desk.check("GB00BP6MXD84", "dk-pension")
    assert decision["verdict"] == "excluded"
    (reason,) = decision["reasons"]
    assert reason["rule_id"] == "list:exclusion"
    assert [v["relation"] for v in reason["via"]] == ["subsidiary", "self"]
    control = reason["evidence"][-1]
    assert (control["metric"], control["value"], control["comparison"], control["threshold"]) == (
        "parent_control_pct",
        "100",
        ">",
        "50",
    )
    listed = await client.get(
        "/v1/datasets", params={"kind": "issuers"}, headers=bearer(desk.steward)
    )
    assert control["dataset_id"] in {d["id"] for d in listed.json()}


async def test_norms_flag_without_a_start_date_is_unknown(desk: Desk) -> None:
    await desk.clean("SHELL", norms__status="non_compliant")
    decision = await desk.check("GB00BP6MXD84")
    assert decision["verdict"] == "unknown"
    assert ("norms-violators", "unknown") in rule_ids(decision)
    assert ("norms-engagement", "watch") in rule_ids(decision)


async def test_a_readmission_does_not_lift_a_later_weapons_flag(desk: Desk) -> None:
    await desk.clean("SHELL", norms__status="non_compliant")
    await desk.facts("SHELL", "robeco", {"norms.non_compliant_since": "2020-01-01"})
    assert (await desk.check("GB00BP6MXD84"))["verdict"] == "excluded"
    decided = (dt.date.fromisoformat(FRESH) + dt.timedelta(days=1)).isoformat()
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        "policy,issuer_ref,list,reason,decided_on\n"
        f"rpf,SHELL,inclusion,Sufficient engagement progress,{decided}\n",
    )
    decision = await desk.check("GB00BP6MXD84")
    assert decision["verdict"] == "allowed"
    assert rule_ids(decision) == {("list:inclusion", "readmitted")}
    await desk.facts(
        "SHELL",
        "sustainalytics",
        {"controversial_weapons.involved": "true"},
        as_of=today().isoformat(),
    )
    decision = await desk.check("GB00BP6MXD84")
    assert decision["verdict"] == "excluded"
    assert ("controversial-weapons", "exclude") in rule_ids(decision)


async def test_company_data_a_year_old_is_unknown(desk: Desk) -> None:
    old = (today() - dt.timedelta(days=390)).isoformat()
    for (metric, provider), value in CLEAN.items():
        await desk.facts("BATS", provider, {metric: value}, as_of=old)
    decision = await desk.check("GB0002875804")
    assert decision["verdict"] == "unknown"
    assert all(
        "stale" in (r["detail"] or "") for r in decision["reasons"] if r["outcome"] == "unknown"
    )


async def test_an_inclusion_naming_its_rules_lifts_them_whatever_the_evidence_date(
    desk: Desk,
) -> None:
    """The list-entries column `rules`: an inclusion decided before the evidence lifts the
    rules it names; naming rules on another list is a row error and writes nothing."""
    await desk.clean("PMI", revenue_pct__tobacco="96.4")
    before = (dt.date.fromisoformat(FRESH) - dt.timedelta(days=10)).isoformat()
    header = "policy,issuer_ref,list,reason,decided_on,rules\n"
    await load_ok(
        desk.client, desk.steward, "list-entries", header + f"rpf,PMI,inclusion,Review,{before},\n"
    )
    assert (await desk.check("US7181721090"))["verdict"] == "excluded"  # a later hit
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        header + f'rpf,PMI,inclusion,Review,{before},"tobacco, coal-power"\n',
    )
    decision = await desk.check("US7181721090")
    assert decision["verdict"] == "allowed"
    assert rule_ids(decision) == {("list:inclusion", "readmitted")}

    response = await desk.client.post(
        "/v1/datasets",
        params={"kind": "list-entries"},
        content=header + f"rpf,BATS,exclusion,Board,{before},tobacco\n",
        headers={**bearer(desk.steward), "Content-Type": "text/csv"},
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["column"] == "rules"
    assert "only an inclusion" in problem["errors"][0]["msg"]


async def test_an_own_account_exception_does_not_apply_to_client_money(desk: Desk) -> None:
    """a.s.r.'s Dutch defence exception is for its own account (seed 001). A check without a
    portfolio is judged as client money (contract): the board-approved entry lifts nothing."""
    await desk.facts(
        "AIRBUS",
        "sustainalytics",
        {
            "controversial_weapons.involved": "false",
            "civilian_firearms.involved": "false",
            "defence.involved": "true",
            "norms.status": "compliant",
            **ASR_CLEAN,
        },
    )
    decided = today().isoformat()
    expires = (today() + dt.timedelta(days=300)).isoformat()
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        "policy,issuer_ref,list,reason,decided_on,reference,expires_on\n"
        f"asr,AIRBUS,exception,nl-defence: board approval,{decided},BOARD-1,{expires}\n",
    )
    decision = await desk.check("NL0000235190", "asr")
    assert decision["verdict"] == "excluded"
    assert rule_ids(decision) == {("defence-risk", "exclude")}


async def test_an_ownership_cycle_answers_the_same_in_any_batch_order(desk: Desk) -> None:
    """Two issuers loaded controlling each other: every order of asking gives one answer."""
    await load_ok(
        desk.client,
        desk.steward,
        "issuers",
        "issuer_id,name,kind,country,parent_issuer_id,parent_control_pct\n"
        "CYC1,Cycle one,company,DK,CYC2,60\nCYC2,Cycle two,company,DK,CYC1,60\n",
    )
    await load_ok(
        desk.client,
        desk.steward,
        "instruments",
        "isin,issuer_id,asset_class\nDK0000000019,CYC1,equity\nDK0000000027,CYC2,equity\n",
    )
    for issuer, weapons in (("CYC1", "true"), ("CYC2", "false")):
        await desk.facts(
            issuer,
            "sustainalytics",
            {"controversial_weapons.involved": weapons, "norms.status": "compliant"},
        )
    at = utcnow().isoformat()
    answers = []
    for isins in (
        ["DK0000000027"],
        ["DK0000000019", "DK0000000027"],
        ["DK0000000027", "DK0000000019"],
    ):
        response = await desk.client.post(
            "/v1/checks",
            json={"policy": "dk-pension", "instruments": isins, "as_of": at},
            headers=bearer(desk.trader),
        )
        assert response.status_code == 200, response.text
        by_isin = {d["instrument"]["isin"]: d for d in response.json()["decisions"]}
        answers.append((by_isin["DK0000000027"]["verdict"], rule_ids(by_isin["DK0000000027"])))
    assert (
        answers[0]
        == answers[1]
        == answers[2]
        == (
            "excluded",
            {("controversial-weapons", "exclude")},
        )
    )
