"""Operations metrics at /metrics (README, "Operations"): who may read them, and that checks,
the decision log, loads, provider data and the compiled index show as the series operators
alarm on, with the right labels and values."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.auth.scopes import Scope
from app.kit.time import utcnow
from app.screening.index import VerdictIndex
from tests.conftest import MakeKey, bearer
from tests.support.checks import Desk, open_desk
from tests.support.datasets import load, load_ok
from tests.support.index import demo_database, running
from tests.support.problems import assert_problem

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

SHELL = "GB00BP6MXD84"
PMI = "US7181721090"
VERDICTS = ("allowed", "watch", "excluded", "unknown")


async def scrape(client: httpx.AsyncClient, key: str) -> Series:
    response = await client.get("/metrics", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not yet created (a counter that never
    counted)."""
    return series.get((name, frozenset(labels.items())), 0.0)


def days_ago(n: int) -> str:
    return (utcnow().date() - dt.timedelta(days=n)).isoformat()


async def test_metrics_need_a_key_with_the_metrics_read_scope(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    response = await client.get("/metrics")
    assert_problem(response, 401)
    assert "mayhold_" not in response.text
    trader = await make_key(Scope.check, name="oms")
    body = assert_problem(await client.get("/metrics", headers=bearer(trader)), 403)
    assert "metrics:read" in str(body["detail"])
    prometheus = await make_key(Scope.metrics_read, name="prometheus")
    assert (
        "mayhold_http_requests_total"
        in (await client.get("/metrics", headers=bearer(prometheus))).text
    )
    admin = await make_key(Scope.admin, name="admin")
    assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200
    # The scraping key reads nothing else.
    assert_problem(
        await client.get(
            "/v1/check", params={"policy": "rpf", "instrument": SHELL}, headers=bearer(prometheus)
        ),
        403,
    )


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    return await open_desk(client, make_key)


@pytest.fixture
async def prometheus(make_key: MakeKey) -> str:
    return await make_key(Scope.metrics_read, name="prometheus")


async def test_checks_count_by_policy_and_verdict_and_the_log_appends_are_timed(
    desk: Desk, prometheus: str
) -> None:
    await desk.clean("SHELL")  # SHELL: allowed under rpf; PMI (no data loaded): not
    before = await scrape(desk.client, prometheus)
    assert (await desk.check(SHELL))["verdict"] == "allowed"
    batch = await desk.client.post(
        "/v1/checks",
        json={"policy": "dk-pension", "instruments": [SHELL, PMI, SHELL]},
        headers=bearer(desk.trader),
    )
    assert batch.status_code == 200, batch.text
    verdicts = [d["verdict"] for d in batch.json()["decisions"]]
    assert verdicts[0] == verdicts[2] == "allowed"
    assert verdicts[1] != "allowed"
    after = await scrape(desk.client, prometheus)

    def counted(policy: str, verdict: str) -> float:
        name = "mayhold_checks_total"
        labels = {"policy": policy, "verdict": verdict}
        return value(after, name, **labels) - value(before, name, **labels)

    assert [counted("rpf", v) for v in VERDICTS] == [1, 0, 0, 0]
    assert [counted("dk-pension", v) for v in VERDICTS] == [verdicts.count(v) for v in VERDICTS]
    assert counted("dk-pension", "allowed") == 2
    # Two appends (one per request), each timed once; nothing left waiting for the writer.
    appends = "mayhold_decision_log_append_seconds_count"
    assert value(after, appends) - value(before, appends) == 2
    assert value(after, "mayhold_decision_log_queue_decisions") == 0
    assert value(after, "mayhold_decision_log_append_seconds_bucket", le="+Inf") == value(
        after, appends
    )


async def test_loads_are_timed_by_kind_and_rejected_rows_counted(
    client: httpx.AsyncClient, steward: str, prometheus: str
) -> None:
    before = await scrape(client, prometheus)
    rejected = await load(
        client,
        steward,
        "issuers",
        "issuer_id,name,kind,country\nA,Alpha,company,NL\nB,Beta,planet,NL\nC,Gamma,company,XX\n",
    )
    errors = assert_problem(rejected, 422)["errors"]
    assert len(errors) == 2
    await load_ok(client, steward, "issuers", "issuer_id,name,kind,country\nA,Alpha,company,NL\n")
    after = await scrape(client, prometheus)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mayhold_dataset_rows_rejected_total", kind="issuers") == 2
    loads = "mayhold_dataset_load_seconds_count"
    assert delta(loads, kind="issuers", outcome="rejected") == 1
    assert delta(loads, kind="issuers", outcome="loaded") == 1
    assert delta(loads, kind="facts", outcome="loaded") == 0
    assert delta("mayhold_dataset_load_seconds_sum", kind="issuers", outcome="loaded") > 0


async def test_data_age_is_the_oldest_current_dataset_per_kind_and_provider(
    desk: Desk, prometheus: str
) -> None:
    client, steward = desk.client, desk.steward
    await desk.facts("SHELL", "msci", {"revenue_pct.tobacco": "0"}, as_of=days_ago(40))
    await desk.facts("SHELL", "msci", {"revenue_pct.tobacco": "0"}, as_of=days_ago(12))
    await desk.facts("SHELL", "iss", {"revenue_pct.tobacco": "0"}, as_of=days_ago(3))
    await load_ok(
        client,
        steward,
        "portfolios",
        "portfolio_id,name,policy,account,base_currency,custodian\n"
        "HOUSE,House book,rpf,own,,\nCL-1,Client one,rpf,client,,\n",
    )
    header = "portfolio_id,isin,quantity,market_value,currency,as_of,position\n"
    await load_ok(
        client, steward, "holdings", header + f"HOUSE,{SHELL},1,1,,,\n", as_of=days_ago(2)
    )
    await load_ok(client, steward, "holdings", header + f"CL-1,{SHELL},1,1,,,\n", as_of=days_ago(9))
    series = await scrape(client, prometheus)
    ages = {
        dict(labels)["kind"] + "/" + dict(labels)["provider"]: age
        for (name, labels), age in series.items()
        if name == "mayhold_data_age_days"
    }
    # The newest msci facts load is the current one: 12 days, not the superseded 40.
    assert ages["facts/msci"] == 12
    assert ages["facts/iss"] == 3
    # Per portfolio, each one's newest report is current: the oldest of them shows.
    holdings = [key for key in ages if key.startswith("holdings/")]
    assert len(holdings) == 1
    assert ages[holdings[0]] == 9
    await load_ok(client, steward, "holdings", header + f"CL-1,{SHELL},2,2,,,\n", as_of=days_ago(1))
    series = await scrape(client, prometheus)
    assert (
        value(
            series, "mayhold_data_age_days", kind="holdings", provider=holdings[0].split("/", 1)[1]
        )
        == 2
    )


@pytest.mark.slow
async def test_index_rebuild_time_and_age_per_policy(tmp_path: Path) -> None:
    async with (
        demo_database("sqlite", tmp_path) as (url, key, isins),
        running(url) as (app, client),
    ):
        index: VerdictIndex = app.state.verdict_index
        deadline = time.monotonic() + 60
        while index.builds == 0:  # the first checks start the build
            asked = await client.get(
                "/v1/check", params={"policy": "rpf", "instrument": isins[0]}, headers=bearer(key)
            )
            assert asked.status_code == 200, asked.text
            assert time.monotonic() < deadline, "the index was never compiled"
            await asyncio.sleep(0.1)
        series = await scrape(client, key)
        client_rpf = {"policy": "rpf", "account": "client"}
        assert value(series, "mayhold_index_build_seconds_count", **client_rpf) >= 1
        assert value(series, "mayhold_index_build_seconds_sum", **client_rpf) > 0
        assert value(series, "mayhold_index_current", **client_rpf) == 1
        age = value(series, "mayhold_index_age_seconds", **client_rpf)
        assert 0 <= age < 120
        await asyncio.sleep(0.2)
        later = await scrape(client, key)
        assert value(later, "mayhold_index_age_seconds", **client_rpf) > age
        # (Counters of the process: other tests' builds count too; only increments are read.)
        full = value(series, "mayhold_index_builds_total", mode="full", **client_rpf)
        incremental = value(series, "mayhold_index_builds_total", mode="incremental", **client_rpf)
        assert full >= 1
        # A load makes the compilation stale; the watcher rebuilds it at once, from the previous
        # one (no check is asked here, and /metrics starts no build): current again.
        loaded = await load(
            client,
            key,
            "facts",
            f"issuer_ref,metric,value,as_of\n{isins[0]},revenue_pct.tobacco,0,{days_ago(1)}\n",
            provider="iss",
        )
        assert loaded.status_code == 201, loaded.text
        deadline = time.monotonic() + 30
        while True:
            series = await scrape(client, key)
            built = value(series, "mayhold_index_builds_total", mode="incremental", **client_rpf)
            if built > incremental:
                break
            assert time.monotonic() < deadline, "a load was never compiled in"
            await asyncio.sleep(0.1)
        assert value(series, "mayhold_index_builds_total", mode="full", **client_rpf) == full
        assert value(series, "mayhold_index_current", **client_rpf) == 1
