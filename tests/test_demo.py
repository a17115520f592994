"""`mayhold demo`'s data: the shipped policies approved, and the sample universe loaded."""

from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.scopes import Scope
from app.demo import (
    DEFENCE_SHARE,
    EMERGING_FUND,
    EUROPE_FUND,
    GOVERNMENT_BOND_FUND,
    GROUP_BOND,
    LIFECYCLE_FUNDS,
    SHIPPED_POLICIES,
    SPONSOR_BOND,
    WORLD_FUND,
    generate,
    load_demo,
)
from app.models import Dataset, PolicyVersion
from tests.conftest import MakeKey, bearer


async def test_demo_loads_once_through_the_real_loaders(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        examples = await load_demo(session)
        datasets = (await session.execute(select(func.count(Dataset.id)))).scalar_one()
        approved = (
            await session.execute(select(func.count()).where(PolicyVersion.status == "approved"))
        ).scalar_one()
        again = await load_demo(session)  # a second start loads nothing more
        assert (await session.execute(select(func.count(Dataset.id)))).scalar_one() == datasets
        await session.rollback()
    assert datasets == 15  # ... including the country financial sanctions and fund holdings
    assert approved == len(SHIPPED_POLICIES)
    assert again == examples
    assert {"clean company", "tobacco producer", "sovereign RU"} <= set(examples)


def test_generated_universe_exercises_the_rules() -> None:
    universe = generate(companies=400)
    assert any(i.get("parent_control_pct") == "50" for i in universe.issuers)
    assert any(i.get("state_owner_pct") == "50" for i in universe.issuers)
    assert any(i["asset_class"] == "derivative" for i in universe.instruments)
    assert any(f["value"] == "96.4" for f in universe.facts)
    assert any(m["UNCONV_OIL_GAS_MAX_REV_PCT"] == "5-9.9" for m in universe.msci)
    assert generate(companies=400).facts == universe.facts  # seeded: the same every run


def test_pensura_db_sits_just_under_both_sponsor_limits() -> None:
    universe = generate(companies=120)
    held = {
        h["isin"]: Decimal(h["market_value"])
        for h in universe.holdings
        if h["portfolio_id"] == "PENSURA-DB"
    }
    total = sum(held.values())
    sponsors = {e["issuer_ref"] for e in universe.lists if e["list"] == "sponsor"}
    issuer_of = {i["isin"]: i["issuer_id"] for i in universe.instruments}
    group = {i["issuer_id"] for i in universe.issuers if i["issuer_id"].startswith("DIV-")}
    assert total == 100_000_000
    assert sum(v for i, v in held.items() if issuer_of[i] in sponsors) * 100 / total == Decimal(
        "4.8"
    )
    assert sum(v for i, v in held.items() if issuer_of[i] in group) * 100 / total == Decimal("9.5")
    assert set(held) <= set(issuer_of)  # every holding a known instrument


async def test_the_demo_portfolios_answer_as_the_readme_shows(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    make_key: MakeKey,
) -> None:
    async with sessionmaker() as session:
        await load_demo(session, companies=120)
        await session.commit()
    key = bearer(await make_key(Scope.admin))

    async def check(portfolio: str, isin: str) -> dict[str, Any]:
        response = await client.get(
            "/v1/check", params={"portfolio": portfolio, "instrument": isin}, headers=key
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    own, mandate = await check("ASR-OWN", DEFENCE_SHARE), await check("ASR-CLIENT", DEFENCE_SHARE)
    assert own["verdict"] == "allowed", own["reasons"]
    assert mandate["verdict"] == "excluded", mandate["reasons"]
    assert "defence-risk" in {r["rule_id"] for r in mandate["reasons"]}
    for isin in (SPONSOR_BOND, GROUP_BOND):
        assert (await check("PENSURA-DB", isin))["verdict"] == "allowed"

    orders = [
        {"instrument": SPONSOR_BOND, "side": "buy", "market_value": 150_000},
        {"instrument": SPONSOR_BOND, "side": "buy", "market_value": 500_000},
        {"instrument": GROUP_BOND, "side": "buy", "market_value": 600_000},
    ]
    response = await client.post(
        "/v1/checks", json={"portfolio": "PENSURA-DB", "orders": orders}, headers=key
    )
    assert response.status_code == 200, response.text
    modest, large, group = response.json()["decisions"]
    assert modest["verdict"] == "allowed", modest["reasons"]
    assert large["verdict"] == "excluded"
    (reason,) = large["reasons"]
    assert reason["rule_id"] == "sponsor-max-5pct"
    assert Decimal(reason["evidence"][0]["value"]) == Decimal("5.2736")  # 5.3 / 100.5
    assert group["verdict"] == "excluded"  # 10.1 / 100.6 = 10.04%: the group limit
    assert {r["rule_id"] for r in group["reasons"]} == {"sponsor-group-max-10pct"}

    run = await client.get("/v1/portfolios/PENSURA-DB/compliance", headers=key)
    assert run.status_code == 200, run.text
    limits = {u["limit_id"]: (u["pct"], u["breach"]) for u in run.json()["limits"]}
    assert limits == {"sponsor-max-5pct": ("4.8", False), "sponsor-group-max-10pct": ("9.5", False)}
    assert run.json()["verdict"] == "allowed"
    assert run.json()["breaches"] == []
    listed = await client.get("/v1/portfolios", headers=key)
    assert {"PENSURA-DB", "ASR-OWN", "ASR-CLIENT"} <= {
        p["portfolio_id"] for p in listed.json()["portfolios"]
    }


async def test_pensuras_lifecycle_funds_are_judged_through_what_they_hold(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    make_key: MakeKey,
) -> None:
    """Seed 002 §2.3.3: the six lifecycle funds by ISIN; three with a composition."""
    async with sessionmaker() as session:
        examples = await load_demo(session, companies=120)
        await session.commit()
    key = bearer(await make_key(Scope.admin))
    assert {isin for isin, *_ in LIFECYCLE_FUNDS} <= {
        i["isin"] for i in generate(companies=120).instruments if i["asset_class"] == "fund"
    }
    assert examples["lifecycle fund holding a tobacco producer"] == EUROPE_FUND

    async def verdicts(policy: str) -> dict[str, dict[str, Any]]:
        funds = [WORLD_FUND, EUROPE_FUND, GOVERNMENT_BOND_FUND, EMERGING_FUND]
        response = await client.post(
            "/v1/checks",
            json={"policy": policy, "instruments": funds},
            headers=key,
        )
        assert response.status_code == 200, response.text
        return {d["instrument"]["isin"]: d for d in response.json()["decisions"]}

    for policy in ("rpf", "dk-pension", "asr", "pensura"):
        found = await verdicts(policy)
        assert found[WORLD_FUND]["verdict"] == "allowed", found[WORLD_FUND]["reasons"]
        assert found[GOVERNMENT_BOND_FUND]["verdict"] == "allowed", policy
        # No composition: never allowed.
        assert found[EMERGING_FUND]["verdict"] == "unknown", found[EMERGING_FUND]["reasons"]
        # Only rpf excludes tobacco (seed 004): the others allow the European fund.
        europe = found[EUROPE_FUND]
        assert europe["verdict"] == ("excluded" if policy == "rpf" else "allowed"), policy
    europe = (await verdicts("rpf"))[EUROPE_FUND]
    # The reason names the constituent that fired: the tobacco producer's share, held at 1%.
    (reason,) = europe["reasons"]
    assert reason["via"][0]["relation"] == "holding", reason
    weights = [e["value"] for e in reason["evidence"] if e["metric"] == "fund_weight_pct"]
    assert [Decimal(w) for w in weights] == [Decimal(1)], reason
