"""Checks in a portfolio (contract, "Portfolios and holdings"; seeds 001 and 002), over HTTP on
both databases: accounts, pre-trade orders against position limits, the post-trade run, lists
per portfolio, as-of and replay.

The Pensura group (seed 002 §3: Diversey Europe Operations B.V. and the other sponsoring
companies): the sponsor DIV-EU sits two levels under the ultimate parent DIV-TOP; DIV-US-OPS
sits two levels under it on another branch, so it is in the group but not a sponsor.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import httpx
import pytest
from stdnum import isin as stdnum_isin

from app.auth.scopes import Scope
from tests.conftest import MakeKey, bearer
from tests.support.calendar import today
from tests.support.checks import ASR_CLEAN, Desk, open_desk, publish_policy
from tests.support.datasets import load, load_ok
from tests.support.problems import assert_problem


def isin(body: str) -> str:
    return body + stdnum_isin.calc_check_digit(body)


SPONSOR = isin("NL000DIVEU0")  # DIV-EU: the sponsoring employer
SIBLING = isin("US000DIVUS0")  # DIV-US-OPS: same group, another branch, two levels down
OTHER = isin("DE000OTHER0")  # unrelated
OTHER_2 = isin("FR000OTHER0")  # unrelated, not held
DEFENCE_OPTION = isin("NL000AIROPT")  # a bank's option on Airbus shares
AIRBUS = "NL0000235190"

ISSUERS = (
    "issuer_id,name,kind,country,lei,parent_issuer_id,parent_control_pct\n"
    "DIV-TOP,Diamond (BC) Holding,company,US,,,\n"
    "DIV-NL,Diamond (BC) Netherlands Holding B.V.,company,NL,,DIV-TOP,100\n"
    "DIV-EU,Diversey Europe Operations B.V.,company,NL,,DIV-NL,100\n"
    "DIV-US-HOLD,Diversey US Holdings,company,US,,DIV-TOP,100\n"
    "DIV-US-OPS,Diversey US Operations,company,US,,DIV-US-HOLD,100\n"
    "OTHERCO,Other Company AG,company,DE,,,\n"
    "OTHERCO2,Autre Société SA,company,FR,,,\n"
    "BANK,Some Bank N.V.,company,NL,,,\n"
)
INSTRUMENTS = (
    "isin,issuer_id,asset_class,underlying_isin,name\n"
    f"{SPONSOR},DIV-EU,corporate_bond,,Diversey Europe 4% 2030\n"
    f"{SIBLING},DIV-US-OPS,corporate_bond,,Diversey US 5% 2031\n"
    f"{OTHER},OTHERCO,equity,,Other Company shares\n"
    f"{OTHER_2},OTHERCO2,equity,,Autre Société shares\n"
    f"{DEFENCE_OPTION},BANK,derivative,{AIRBUS},Call on Airbus\n"
)
PORTFOLIOS = (
    "portfolio_id,name,policy,account,base_currency,custodian\n"
    "PEN-DB,Pensura defined benefit,pensura,client,EUR,ABN AMRO\n"
    "PEN-BREACH,Pensura in breach,pensura,client,EUR,ABN AMRO\n"
    "PEN-HIST,Pensura with a history of reports,pensura,client,EUR,ABN AMRO\n"
    "ASR-OWN,a.s.r. own account,asr,own,EUR,\n"
    "ASR-CLIENT,a.s.r. client mandate,asr,client,EUR,\n"
)


def holdings_csv(rows: dict[tuple[str, str], str], as_of: str | None = None) -> str:
    header = "portfolio_id,isin,quantity,market_value" + (",as_of" if as_of else "") + "\n"
    return header + "".join(
        f"{portfolio},{code},1,{value}" + (f",{as_of}" if as_of else "") + "\n"
        for (portfolio, code), value in rows.items()
    )


# Sponsor 4.05% and group 9.1% of 100,000,000: buying 1,000,000 of the sponsor's bond takes
# the sponsor to exactly 5% (5.05 / 101) and the group to exactly 10% (10.1 / 101).
PEN_DB = {
    ("PEN-DB", SPONSOR): "4050000",
    ("PEN-DB", SIBLING): "5050000",
    ("PEN-DB", OTHER): "90900000",
}
# Sponsor at 6% of 100,000,000: already above its 5% limit.
PEN_BREACH = {
    ("PEN-BREACH", SPONSOR): "6000000",
    ("PEN-BREACH", OTHER): "94000000",
}


async def sponsor_entries(desk: Desk) -> None:
    decided = (today() - dt.timedelta(days=10)).isoformat()
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        "policy,issuer_ref,list,reason,decided_on\n"
        f"pensura,DIV-EU,sponsor,ABTN §3: sponsoring employer,{decided}\n",
    )


async def airbus_exception(desk: Desk) -> None:
    """Airbus (NL) is a defence company with a board-approved nl-defence exception (seed 001);
    the bank writing the option on it is clean."""
    for issuer, defence in (("AIRBUS", "true"), ("BANK", "false")):
        await desk.facts(
            issuer,
            "sustainalytics",
            {
                "controversial_weapons.involved": "false",
                "civilian_firearms.involved": "false",
                "defence.involved": defence,
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


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    desk = await open_desk(client, make_key)
    author = await make_key(Scope.policies_write, name="pensura-author")
    approver = await make_key(Scope.policies_approve, name="pensura-board")
    await publish_policy(client, author, approver, "pensura")
    await load_ok(client, desk.steward, "issuers", ISSUERS)
    await load_ok(client, desk.steward, "instruments", INSTRUMENTS)
    await load_ok(client, desk.steward, "portfolios", PORTFOLIOS)
    await sponsor_entries(desk)
    await load_ok(client, desk.steward, "holdings", holdings_csv({**PEN_DB, **PEN_BREACH}))
    return desk


async def orders(
    desk: Desk, portfolio: str, *items: tuple[str, str, str], **extra: Any
) -> list[dict[str, Any]]:
    body = {
        "portfolio": portfolio,
        "orders": [{"instrument": i, "side": s, "market_value": v} for i, s, v in items],
        **extra,
    }
    response = await desk.client.post("/v1/checks", json=body, headers=bearer(desk.trader))
    assert response.status_code == 200, response.text
    decisions: list[dict[str, Any]] = response.json()["decisions"]
    return decisions


def limit_reasons(decision: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rule_id"]: r for r in decision["reasons"] if r["rule_id"].startswith("sponsor")}


async def test_exactly_at_both_limits_is_allowed_and_just_above_is_excluded(desk: Desk) -> None:
    at_limits, above = await orders(
        desk, "PEN-DB", (SPONSOR, "buy", "1000000"), (SPONSOR, "buy", "1010000")
    )
    assert at_limits["verdict"] == "allowed", at_limits["reasons"]
    assert at_limits["may_hold"] is True
    assert limit_reasons(at_limits) == {}
    assert at_limits["portfolio"]["portfolio_id"] == "PEN-DB"
    assert at_limits["portfolio"]["account"] == "client"
    assert at_limits["order"] == {
        "instrument": SPONSOR,
        "side": "buy",
        "quantity": None,
        "market_value": "1000000",
    }
    # 5.06 / 101.01 = 5.0094% and 10.11 / 101.01 = 10.0089%: one reason per limit breached.
    assert above["verdict"] == "excluded"
    assert above["may_hold"] is False
    reasons = limit_reasons(above)
    assert set(reasons) == {"sponsor-max-5pct", "sponsor-group-max-10pct"}
    sponsor = reasons["sponsor-max-5pct"]["evidence"][0]
    assert sponsor["metric"] == "portfolio_pct"
    assert sponsor["comparison"] == "<="
    assert Decimal(sponsor["threshold"]) == 5
    assert Decimal(sponsor["value"]) == Decimal("5.0094")
    assert sponsor["dataset_id"] == above["portfolio"]["holdings_version"]
    group = reasons["sponsor-group-max-10pct"]["evidence"][0]
    assert Decimal(group["value"]) == Decimal("10.0089")


async def test_a_group_member_two_levels_down_counts_for_the_group_only(desk: Desk) -> None:
    # Buying 0.1M of the sibling: the sponsor falls to 4.05/100.1 (fine), the group rises to
    # 9.2/100.1 = 9.19% (fine); 1.01M of it takes the group to 10.11/101.01 (breach), the
    # sponsor stays under 5%.
    fine, breach = await orders(
        desk, "PEN-DB", (SIBLING, "buy", "100000"), (SIBLING, "buy", "1010000")
    )
    assert fine["verdict"] == "allowed", fine["reasons"]
    assert set(limit_reasons(breach)) == {"sponsor-group-max-10pct"}
    assert breach["verdict"] == "excluded"


async def test_a_sell_out_of_a_breach_is_allowed_and_one_deeper_into_it_is_not(
    desk: Desk,
) -> None:
    out, unrelated_sell, dilute = await orders(
        desk,
        "PEN-BREACH",
        (SPONSOR, "sell", "500000"),  # 5.5 / 99.5 = 5.53%: still above, but lower: allowed
        (OTHER, "sell", "1000000"),  # 6 / 99 = 6.06%: higher while above: excluded
        (OTHER, "buy", "1000000"),  # 6 / 101 = 5.94%: lower: allowed
    )
    assert out["verdict"] == "allowed", out["reasons"]
    assert unrelated_sell["verdict"] == "excluded"
    assert set(limit_reasons(unrelated_sell)) == {"sponsor-max-5pct"}
    assert dilute["verdict"] == "allowed", dilute["reasons"]


async def test_orders_are_each_judged_on_the_current_holdings(desk: Desk) -> None:
    first, second = await orders(
        desk, "PEN-DB", (SPONSOR, "buy", "1000000"), (SPONSOR, "buy", "1000000")
    )
    volatile = ("decision_id", "decided_at")
    assert {k: v for k, v in first.items() if k not in volatile} == {
        k: v for k, v in second.items() if k not in volatile
    }
    assert first["verdict"] == second["verdict"] == "allowed"


async def test_a_check_without_an_order_names_the_portfolio_and_uses_no_holdings(
    desk: Desk,
) -> None:
    response = await desk.client.get(
        "/v1/check",
        params={"portfolio": "PEN-DB", "instrument": SPONSOR},
        headers=bearer(desk.trader),
    )
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["policy"]["key"] == "pensura"
    assert decision["portfolio"] == {
        "portfolio_id": "PEN-DB",
        "account": "client",
        "holdings_version": None,
    }
    assert "order" not in decision


async def test_own_and_client_accounts_for_the_same_exception(desk: Desk) -> None:
    await airbus_exception(desk)
    verdicts = {}
    for portfolio in ("ASR-OWN", "ASR-CLIENT"):
        for code in (AIRBUS, DEFENCE_OPTION):
            response = await desk.client.get(
                "/v1/check",
                params={"portfolio": portfolio, "instrument": code},
                headers=bearer(desk.trader),
            )
            assert response.status_code == 200, response.text
            verdicts[portfolio, code] = response.json()["verdict"]
    without = await desk.check(AIRBUS, "asr")
    assert verdicts == {
        ("ASR-OWN", AIRBUS): "allowed",
        ("ASR-OWN", DEFENCE_OPTION): "allowed",
        ("ASR-CLIENT", AIRBUS): "excluded",
        ("ASR-CLIENT", DEFENCE_OPTION): "excluded",
    }
    assert without["verdict"] == "excluded"  # no portfolio: client money
    assert "portfolio" not in without


async def test_lists_per_portfolio_apply_that_account_s_exceptions(
    desk: Desk, make_key: MakeKey
) -> None:
    await airbus_exception(desk)
    custodian = await make_key(Scope.lists_read, name="custodian")

    async def listed(**params: str) -> set[str]:
        response = await desk.client.get(
            "/v1/lists/asr", params={"format": "json", **params}, headers=bearer(custodian)
        )
        assert response.status_code == 200, response.text
        return {row["isin"] for row in response.json()["rows"]}

    own, client, plain = (
        await listed(portfolio="ASR-OWN"),
        await listed(portfolio="ASR-CLIENT"),
        await listed(),
    )
    assert AIRBUS not in own
    assert DEFENCE_OPTION not in own
    assert AIRBUS in client
    assert DEFENCE_OPTION in client
    assert client == plain
    other = await desk.client.get(
        "/v1/lists/asr", params={"portfolio": "PEN-DB"}, headers=bearer(custodian)
    )
    assert assert_problem(other, 422)["errors"][0]["loc"] == ["query", "portfolio"]


async def test_policy_must_be_the_portfolio_s_and_the_portfolio_must_exist(desk: Desk) -> None:
    wrong = await desk.client.get(
        "/v1/check",
        params={"portfolio": "PEN-DB", "policy": "rpf", "instrument": SPONSOR},
        headers=bearer(desk.trader),
    )
    assert "pensura" in assert_problem(wrong, 422)["detail"]
    missing = await desk.client.get(
        "/v1/check",
        params={"portfolio": "NOPE", "instrument": SPONSOR},
        headers=bearer(desk.trader),
    )
    assert_problem(missing, 404)
    neither = await desk.client.get(
        "/v1/check", params={"instrument": SPONSOR}, headers=bearer(desk.trader)
    )
    assert_problem(neither, 422)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"portfolio": "PEN-DB", "orders": [{"instrument": SPONSOR, "side": "buy"}]},
            "market_value",
        ),
        (
            {
                "portfolio": "PEN-DB",
                "orders": [{"instrument": SPONSOR, "side": "buy", "market_value": "-5"}],
            },
            "market_value",
        ),
        (
            {
                "portfolio": "PEN-DB",
                "orders": [
                    {"instrument": SPONSOR, "side": "buy", "market_value": 5, "quantity": 0}
                ],
            },
            "quantity",
        ),
        (
            {
                "portfolio": "PEN-DB",
                "orders": [{"instrument": SPONSOR, "side": "hold", "market_value": 5}],
            },
            "side",
        ),
        ({"orders": [{"instrument": SPONSOR, "side": "buy", "market_value": 5}]}, None),
    ],
)
async def test_bad_orders_are_422_naming_the_field_and_log_nothing(
    desk: Desk, body: dict[str, Any], field: str | None
) -> None:
    before = await desk.client.get("/v1/decisions", headers=bearer(desk.auditor))
    response = await desk.client.post("/v1/checks", json=body, headers=bearer(desk.trader))
    problem = assert_problem(response, 422)
    if field is not None:
        assert any(field in e["loc"] for e in problem["errors"]), problem
    after = await desk.client.get("/v1/decisions", headers=bearer(desk.auditor))
    assert len(after.json()["decisions"]) == len(before.json()["decisions"])


async def test_a_holding_without_market_value_makes_the_limits_unknown(desk: Desk) -> None:
    await load_ok(
        desk.client,
        desk.steward,
        "holdings",
        f"portfolio_id,isin,quantity,market_value\nPEN-DB,{SPONSOR},1,4050000\nPEN-DB,{OTHER},1,\n",
    )
    (decision,) = await orders(desk, "PEN-DB", (OTHER_2, "buy", "1000"))
    assert decision["verdict"] == "unknown"
    assert decision["may_hold"] is False
    reasons = limit_reasons(decision)
    assert {r["outcome"] for r in reasons.values()} == {"unknown"}
    assert all(OTHER in (r["detail"] or "") for r in reasons.values())


async def test_holdings_as_known_then_and_replay_after_a_later_load(desk: Desk) -> None:
    """A check at a past time uses the position report known then; now, the report with the
    newest date (an older-dated report loaded later does not supersede it); a later load
    changes no earlier decision's replay."""
    earlier = (today() - dt.timedelta(days=20)).isoformat()
    later = (today() - dt.timedelta(days=5)).isoformat()
    oldest = (today() - dt.timedelta(days=30)).isoformat()
    first = await load_ok(
        desk.client,
        desk.steward,
        "holdings",
        holdings_csv({("PEN-HIST", SPONSOR): "1000000", ("PEN-HIST", OTHER): "99000000"}, earlier),
    )
    second = await load_ok(
        desk.client,
        desk.steward,
        "holdings",
        holdings_csv({("PEN-HIST", SPONSOR): "4990000", ("PEN-HIST", OTHER): "95010000"}, later),
    )
    await load_ok(  # dated before both, loaded after both: an archive back-fill
        desk.client,
        desk.steward,
        "holdings",
        holdings_csv({("PEN-HIST", OTHER): "100000000"}, oldest),
    )
    (past,) = await orders(desk, "PEN-HIST", (SPONSOR, "buy", "1000000"), as_of=first["loaded_at"])
    (now,) = await orders(desk, "PEN-HIST", (SPONSOR, "buy", "1000000"))
    assert past["portfolio"]["holdings_version"] == first["id"]
    assert past["verdict"] == "allowed"  # 2 / 101 = 1.98%
    assert now["portfolio"]["holdings_version"] == second["id"]
    assert now["verdict"] == "excluded"  # 5.99 / 101 = 5.93%
    assert Decimal(limit_reasons(now)["sponsor-max-5pct"]["evidence"][0]["value"]) == Decimal(
        "5.9307"
    )
    await load_ok(
        desk.client,
        desk.steward,
        "holdings",
        holdings_csv({("PEN-HIST", OTHER): "1000"}, today().isoformat()),
    )
    for decision in (past, now):
        replayed = await desk.client.post(
            f"/v1/decisions/{decision['decision_id']}/replay", headers=bearer(desk.auditor)
        )
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["matches"] is True, replayed.json()["differences"]


async def test_the_post_trade_run(desk: Desk) -> None:
    await load_ok(
        desk.client,
        desk.steward,
        "holdings",
        holdings_csv(
            {
                ("PEN-DB", SPONSOR): "5010000",  # 5.01%: a breach
                ("PEN-DB", SIBLING): "4990000",  # group 10% exactly: no breach
                ("PEN-DB", OTHER): "90000000",
            }
        ),
    )
    response = await desk.client.get(
        "/v1/portfolios/PEN-DB/compliance", headers=bearer(desk.trader)
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["portfolio"]["portfolio_id"] == "PEN-DB"
    assert run["policy"]["key"] == "pensura"
    weights = {h["isin"]: h["weight_pct"] for h in run["holdings"]}
    assert weights == {SPONSOR: "5.01", SIBLING: "4.99", OTHER: "90"}
    limits = {u["limit_id"]: u for u in run["limits"]}
    assert limits["sponsor-max-5pct"]["pct"] == "5.01"
    assert limits["sponsor-max-5pct"]["breach"] is True
    assert limits["sponsor-group-max-10pct"]["pct"] == "10"
    assert limits["sponsor-group-max-10pct"]["breach"] is False
    assert run["breaches"] == [{"kind": "limit", "limit_id": "sponsor-max-5pct"}]
    assert run["verdict"] == "excluded"
    assert run["may_hold"] is False
    stored = await desk.client.get(
        f"/v1/decisions/{run['decision_id']}", headers=bearer(desk.auditor)
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["audit"]["request"] == {"compliance": "PEN-DB", "as_of": None}
    listed = await desk.client.get(
        "/v1/decisions", params={"policy": "pensura"}, headers=bearer(desk.auditor)
    )
    assert run["decision_id"] in {d["decision_id"] for d in listed.json()["decisions"]}
    replayed = await desk.client.post(
        f"/v1/decisions/{run['decision_id']}/replay", headers=bearer(desk.auditor)
    )
    assert replayed.json()["matches"] is True, replayed.json()["differences"]
    missing = await desk.client.get("/v1/portfolios/NOPE/compliance", headers=bearer(desk.trader))
    assert_problem(missing, 404)


FUND = isin("NL000LIFEFD")  # a fund half in the sponsor's bond (managed by BANK)


async def test_position_limits_count_exposure_through_funds_at_their_weights(
    desk: Desk,
) -> None:
    """Seed 002 §2.3.3: Pensura invests through funds; a limit a fund could sidestep is no
    limit. 2,000,000 of a fund half in the sponsor is 1,000,000 of the sponsor: with
    18,000,000 else, exactly 5 % (allowed); any more of the fund breaches. Replay agrees."""
    await load_ok(
        desk.client,
        desk.steward,
        "instruments",
        f"isin,issuer_id,asset_class,underlying_isin,name\n{FUND},BANK,fund,,Lifecycle fund\n",
    )
    await load_ok(
        desk.client,
        desk.steward,
        "fund-holdings",
        f"fund_isin,holding_ref,weight_pct\n{FUND},{SPONSOR},50\n{FUND},OTHERCO,50\n",
        as_of=today().isoformat(),
    )
    await load_ok(
        desk.client,
        desk.steward,
        "portfolios",
        "portfolio_id,name,policy,account,base_currency,custodian\n"
        "PEN-FUND,Pensura through funds,pensura,client,EUR,ABN AMRO\n",
    )
    await load_ok(
        desk.client,
        desk.steward,
        "holdings",
        holdings_csv({("PEN-FUND", FUND): "2000000", ("PEN-FUND", OTHER): "18000000"}),
    )
    run = await desk.client.get("/v1/portfolios/PEN-FUND/compliance", headers=bearer(desk.trader))
    assert run.status_code == 200, run.text
    limits = {u["limit_id"]: (u["pct"], u["breach"]) for u in run.json()["limits"]}
    assert limits == {"sponsor-max-5pct": ("5", False), "sponsor-group-max-10pct": ("5", False)}
    more, other = await orders(desk, "PEN-FUND", (FUND, "buy", "2"), (OTHER, "buy", "2"))
    assert more["verdict"] == "excluded", more["reasons"]
    assert set(limit_reasons(more)) == {"sponsor-max-5pct"}
    assert other["verdict"] == "allowed", other["reasons"]  # dilutes
    replayed = await desk.client.post(
        f"/v1/decisions/{more['decision_id']}/replay", headers=bearer(desk.auditor)
    )
    assert replayed.json()["matches"] is True, replayed.json()["differences"]


async def test_a_portfolio_whose_policy_does_not_exist_is_a_row_error(desk: Desk) -> None:
    response = await load(
        desk.client,
        desk.steward,
        "portfolios",
        "portfolio_id,name,policy,account\nX-1,Ghost,no-such-policy,client\n",
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["column"] == "policy"
