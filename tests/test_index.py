"""The compiled index: the same answers as the database path, and fresh within a second.

Each test has a database of its own with real commits (the index reads on sessions of its own),
and runs the app's lifespan so the index and its watcher run as in production.
"""

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.demo import DEFENCE_SHARE, GROUP_BOND, SPONSOR_BOND
from app.kit.time import utcnow
from app.screening.index import VerdictIndex
from tests.conftest import bearer
from tests.support.databases import DIALECTS
from tests.support.index import demo_database, running

VOLATILE = ("decision_id", "decided_at", "as_of")


async def compiled(app: FastAPI, client: httpx.AsyncClient, key: str, isin: str) -> None:
    """Ask until the index has been built for rpf (the first asks trigger the build)."""
    index: VerdictIndex = app.state.verdict_index
    deadline = time.monotonic() + 60
    while index.builds == 0:
        response = await client.get(
            "/v1/check", params={"policy": "rpf", "instrument": isin}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, "the index was never compiled"
        await asyncio.sleep(0.1)


def stable(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k not in VOLATILE} for d in decisions]


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_index_answers_exactly_as_the_database_path(dialect: str, tmp_path: Path) -> None:
    async with demo_database(dialect, tmp_path) as (url, key, isins), running(url) as (app, client):
        await compiled(app, client, key, isins[0])
        batch = [*isins, "US0378331005", "XS0000000001"]  # + one unknown, one malformed
        body = {"policy": "rpf", "instruments": batch}
        from_index = await client.post("/v1/checks", json=body, headers=bearer(key))
        assert from_index.status_code == 200, from_index.text
        index = app.state.verdict_index
        builds = index.builds
        app.state.verdict_index = None  # the database path
        from_database = await client.post("/v1/checks", json=body, headers=bearer(key))
        app.state.verdict_index = index
        assert from_database.status_code == 200, from_database.text
        assert index.builds == builds
        indexed = stable(from_index.json()["decisions"])
        assert indexed == stable(from_database.json()["decisions"])
        verdicts = {d["verdict"] for d in indexed}
        assert verdicts == {"allowed", "watch", "excluded", "unknown"}


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_batch_of_compiled_isins_answers_exactly_as_the_database_path(
    dialect: str, tmp_path: Path
) -> None:
    """Every instrument compiled (the batch's one-pass path, no fallback): the same decisions,
    and each logged with the item it answers as its request."""
    async with demo_database(dialect, tmp_path) as (url, key, isins), running(url) as (app, client):
        await compiled(app, client, key, isins[0])
        body = {"policy": "rpf", "instruments": [*isins, isins[0]]}  # one asked twice
        from_index = await client.post("/v1/checks", json=body, headers=bearer(key))
        assert from_index.status_code == 200, from_index.text
        index = app.state.verdict_index
        app.state.verdict_index = None  # the database path
        from_database = await client.post("/v1/checks", json=body, headers=bearer(key))
        app.state.verdict_index = index
        assert from_database.status_code == 200, from_database.text
        indexed, read = from_index.json()["decisions"], from_database.json()["decisions"]
        assert stable(indexed) == stable(read)
        # The response's bytes: from the index, the keys in the order they always had (the
        # database path's come sorted, as rendered canonically).
        order = ["decision_id", "decided_at", "as_of", "requested_isin", "policy"]
        order += ["data_version", "instrument", "issuer", "verdict", "may_hold", "reasons"]
        assert {tuple(d) for d in indexed} == {tuple(order)}
        for decision in (indexed[0], indexed[-1]):
            stored = await client.get(
                f"/v1/decisions/{decision['decision_id']}", headers=bearer(key)
            )
            assert stored.status_code == 200, stored.text
            assert stored.json()["audit"]["request"] == {
                "policy": "rpf",
                "instruments": [decision["requested_isin"]],
                "as_of": None,
            }


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_load_by_another_process_is_seen_within_a_second(
    dialect: str, tmp_path: Path
) -> None:
    async with demo_database(dialect, tmp_path) as (url, key, _):
        clean = "XS0000000009"  # the demo's "clean company" (CO00000)
        async with running(url) as (first, client_a), running(url) as (_, client_b):
            await compiled(first, client_a, key, clean)
            before = await client_a.get(
                "/v1/check", params={"policy": "rpf", "instrument": clean}, headers=bearer(key)
            )
            assert before.json()["verdict"] == "allowed"

            loaded = await client_b.post(
                "/v1/datasets",
                params={"kind": "facts", "provider": "iss", "as_of": before.json()["as_of"][:10]},
                content=b"issuer_ref,metric,value\nCO00000,revenue_pct.tobacco,88\n",
                headers={**bearer(key), "Content-Type": "text/csv"},
            )
            assert loaded.status_code == 201, loaded.text
            committed = time.monotonic()
            while True:
                after = await client_a.get(
                    "/v1/check",
                    params={"policy": "rpf", "instrument": clean},
                    headers=bearer(key),
                )
                if after.json()["verdict"] == "excluded":
                    break
                assert time.monotonic() - committed < 1.0, "not seen within a second"
                await asyncio.sleep(0.02)
            assert after.json()["data_version"] == loaded.json()["id"]


@pytest.mark.slow
async def test_an_unknown_policy_starts_one_build_attempt_per_data_version(tmp_path: Path) -> None:
    """A check naming a policy that does not exist is a 404; it must not start an index build
    on every request (each would read the database for nothing)."""
    async with (
        demo_database("sqlite", tmp_path) as (url, key, isins),
        running(url) as (app, client),
    ):
        index: VerdictIndex = app.state.verdict_index
        for _ in range(5):
            response = await client.get(
                "/v1/check",
                params={"policy": "nosuch", "instrument": isins[0]},
                headers=bearer(key),
            )
            assert response.status_code == 404, response.text
            await asyncio.sleep(0.2)  # let the attempt finish
        assert index.attempts == 1


async def portfolio_compiled(app: FastAPI, client: httpx.AsyncClient, key: str, pid: str) -> None:
    """Ask until the index holds the portfolio compiled on current verdicts (the first asks
    start the builds of its policy's verdicts and of the portfolio)."""
    index: VerdictIndex = app.state.verdict_index
    deadline = time.monotonic() + 60
    while index.portfolio(pid, utcnow()) is None:
        response = await client.get(f"/v1/portfolios/{pid}/compliance", headers=bearer(key))
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, f"{pid} was never compiled"
        await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_portfolio_checks_and_compliance_answer_exactly_as_the_database_path(
    dialect: str, tmp_path: Path
) -> None:
    """The demo's portfolios: an order batch in PENSURA-DB (allowed, over the sponsor limit,
    over the group limit, a sell, an unknown and a malformed ISIN) and the compliance runs,
    answered from the compiled portfolio and from the database path: the same decisions."""
    orders = [
        {"instrument": SPONSOR_BOND, "side": "buy", "market_value": "150000"},
        {"instrument": SPONSOR_BOND, "side": "buy", "market_value": "500000"},
        {"instrument": GROUP_BOND, "side": "buy", "market_value": "600000"},
        {"instrument": GROUP_BOND, "side": "sell", "market_value": "1000000"},
        {"instrument": "US0378331005", "side": "buy", "market_value": "1000"},
        {"instrument": "XS0000000001", "side": "buy", "market_value": "1000"},
    ]
    portfolios = ("PENSURA-DB", "ASR-OWN", "ASR-CLIENT")
    async with demo_database(dialect, tmp_path) as (url, key, _), running(url) as (app, client):
        for pid in portfolios:
            await portfolio_compiled(app, client, key, pid)
        index: VerdictIndex = app.state.verdict_index
        builds = index.builds
        body = {"portfolio": "PENSURA-DB", "orders": orders}
        answers: dict[str, list[Any]] = {"index": [], "database": []}
        for path in ("index", "database"):
            app.state.verdict_index = index if path == "index" else None
            checked = await client.post("/v1/checks", json=body, headers=bearer(key))
            assert checked.status_code == 200, checked.text
            answers[path].append(stable(checked.json()["decisions"]))
            for pid in portfolios:
                run = await client.get(f"/v1/portfolios/{pid}/compliance", headers=bearer(key))
                assert run.status_code == 200, run.text
                answers[path].append(stable([run.json()]))
            single = await client.get(
                "/v1/check",
                params={"portfolio": "ASR-OWN", "instrument": DEFENCE_SHARE},
                headers=bearer(key),
            )
            answers[path].append(stable([single.json()]))
        app.state.verdict_index = index
        # The index was used, and not rebuilt in between: the same compiled portfolios.
        assert index.builds == builds
        assert set(portfolios) <= set(index._portfolios)
        assert all(index.portfolio(pid, utcnow()) is not None for pid in portfolios)
        assert answers["index"] == answers["database"]
        decisions = answers["index"][0]
        assert [d["verdict"] for d in decisions] == [
            "allowed",
            "excluded",
            "excluded",
            "allowed",
            "unknown",
            "unknown",
        ]
        assert decisions[0]["portfolio"]["holdings_version"] is not None
        pensura_run = answers["index"][1][0]
        assert {u["limit_id"]: u["pct"] for u in pensura_run["limits"]} == {
            "sponsor-max-5pct": "4.8",
            "sponsor-group-max-10pct": "9.5",
        }
        assert answers["index"][-1][0]["verdict"] == "allowed"  # the nl-defence exception
