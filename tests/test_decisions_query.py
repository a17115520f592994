"""Auditors' reading of the decision log over HTTP, on decisions made by real checks: listings
with filters and cursor pages, replay, verification of a tampered log, and the append-only
triggers on the data decisions rest on. Both dialects."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.decisions.log import DecisionLog
from app.decisions.repository import DecisionFilters, listing_query
from app.kit.canonical import parse_rfc3339, rfc3339
from tests.conftest import MakeKey, bearer
from tests.support.checks import Desk, open_desk
from tests.support.decisions import entry, uses_index
from tests.support.problems import assert_problem

PMI = "US7181721090"  # Philip Morris: excluded under rpf once its tobacco revenue is loaded
BATS = "GB0002875804"
SHELL = "GB00BP6MXD84"
NOT_IN_UNIVERSE = "US0378331005"  # a valid ISIN we hold no data on: unknown
MALFORMED = "US0378331006"  # wrong check digit

DECISIONS = "/v1/decisions"


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    desk = await open_desk(client, make_key)
    await desk.clean("PMI")
    await desk.facts("PMI", "iss", {"revenue_pct.tobacco": "96.4"})
    await desk.clean("BATS")
    await desk.clean("SHELL")
    return desk


async def batch(desk: Desk, policy: str, *isins: str) -> list[dict[str, Any]]:
    response = await desk.client.post(
        "/v1/checks",
        json={"policy": policy, "instruments": list(isins)},
        headers=bearer(desk.trader),
    )
    assert response.status_code == 200, response.text
    decisions: list[dict[str, Any]] = response.json()["decisions"]
    return decisions


async def listing(desk: Desk, **params: Any) -> dict[str, Any]:
    response = await desk.client.get(DECISIONS, params=params, headers=bearer(desk.auditor))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def every_page(desk: Desk, cursor: str | None = None, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = await listing(desk, **params, **({"cursor": cursor} if cursor else {}))
        found += page["decisions"]
        if (cursor := page["next_cursor"]) is None:
            return found


def ids(decisions: list[dict[str, Any]]) -> list[str]:
    return [d["decision_id"] for d in decisions]


async def decided_separately(desk: Desk) -> list[dict[str, Any]]:
    """Decisions of several commits (distinct decided_at), in the order they were made."""
    made: list[dict[str, Any]] = []
    for policy, isins in (
        ("rpf", [PMI]),
        ("rpf", [BATS, SHELL]),
        ("dk-pension", [PMI, BATS]),
        ("rpf", [NOT_IN_UNIVERSE, MALFORMED, PMI]),
        ("dk-pension", [SHELL]),
    ):
        made += await batch(desk, policy, *isins)
        await asyncio.sleep(0.002)
    return made


async def test_each_filter_and_their_combinations(desk: Desk) -> None:
    made = await decided_separately(desk)
    assert [d["verdict"] for d in made[:3]] == ["excluded", "allowed", "allowed"]
    assert made[5]["verdict"] == made[6]["verdict"] == "unknown"
    third_commit, last_commit = made[3]["decided_at"], made[8]["decided_at"]

    def isin(d: dict[str, Any]) -> str:
        return str(d["instrument"]["isin"] if d["instrument"] else d["requested_isin"])

    def issuer(d: dict[str, Any]) -> str | None:
        return d["issuer"]["issuer_id"] if d["issuer"] else None

    def at(d: dict[str, Any]) -> dt.datetime:
        return parse_rfc3339(d["decided_at"])

    cases: list[tuple[dict[str, str], Any]] = [
        ({}, lambda d: True),
        ({"instrument": PMI}, lambda d: isin(d) == PMI),
        ({"instrument": PMI.lower()}, lambda d: isin(d) == PMI),
        ({"instrument": NOT_IN_UNIVERSE}, lambda d: isin(d) == NOT_IN_UNIVERSE),
        ({"instrument": MALFORMED}, lambda d: isin(d) == MALFORMED),
        ({"issuer_id": "BATS"}, lambda d: issuer(d) == "BATS"),
        ({"policy": "dk-pension"}, lambda d: d["policy"]["key"] == "dk-pension"),
        ({"verdict": "unknown"}, lambda d: d["verdict"] == "unknown"),
        ({"from": third_commit}, lambda d: at(d) >= at(made[3])),
        ({"to": third_commit}, lambda d: at(d) < at(made[3])),
        (
            {"from": third_commit, "to": last_commit},
            lambda d: at(made[3]) <= at(d) < at(made[8]),
        ),
        (
            {"instrument": PMI, "policy": "rpf", "verdict": "excluded"},
            lambda d: isin(d) == PMI and d["policy"]["key"] == "rpf",
        ),
        (
            {"issuer_id": "BATS", "policy": "dk-pension", "from": third_commit},
            lambda d: issuer(d) == "BATS" and d["policy"]["key"] == "dk-pension",
        ),
        ({"instrument": PMI, "issuer_id": "BATS"}, lambda d: False),
        ({"policy": "asr"}, lambda d: False),
        ({"from": rfc3339(at(made[-1]) + dt.timedelta(seconds=1))}, lambda d: False),
    ]
    for params, wanted in cases:
        body = await listing(desk, **params)
        assert ids(body["decisions"]) == ids([d for d in made if wanted(d)]), params
        assert body["next_cursor"] is None

    # each item is the stored decision as GET /v1/decisions/{id} shows it
    (first, *_) = (await listing(desk, instrument=PMI))["decisions"]
    one = await desk.client.get(f"{DECISIONS}/{first['decision_id']}", headers=bearer(desk.auditor))
    assert first == one.json()
    assert {k: v for k, v in first.items() if k != "audit"} == made[0]
    assert first["audit"]["seq"] == 1


async def test_pages_have_no_gaps_or_repeats_while_decisions_arrive(desk: Desk) -> None:
    made = await batch(desk, "rpf", PMI, BATS, PMI, SHELL, PMI, BATS, PMI)
    pmi = [d for d in made if d["instrument"]["isin"] == PMI]
    streams: dict[str, dict[str, Any]] = {
        "all": {"limit": 3},
        "pmi": {"limit": 1, "instrument": PMI},
    }
    seen: dict[str, list[dict[str, Any]]] = {name: [] for name in streams}
    cursors: dict[str, str | None] = dict.fromkeys(streams)
    reading = set(streams)
    pages = 0
    while reading:
        for name in sorted(reading):
            cursor = cursors[name]
            page = await listing(desk, **streams[name], **({"cursor": cursor} if cursor else {}))
            seen[name] += page["decisions"]
            cursors[name] = page["next_cursor"]
            if cursors[name] is None:
                reading.discard(name)
        pages += 1
        if pages <= 3:  # new decisions arrive between pages, at the end of the chain
            arrived = await batch(desk, "rpf", BATS, PMI)
            made += arrived
            pmi += [arrived[1]]
    assert pages >= 4
    assert ids(seen["all"]) == ids(made)  # every decision once, in order
    assert ids(seen["pmi"]) == ids(pmi)
    assert [d["audit"]["seq"] for d in seen["all"]] == list(range(1, len(made) + 1))

    # a full last page says "nothing more" without an empty page after it
    exact = await listing(desk, instrument=PMI, limit=len(pmi))
    assert (len(exact["decisions"]), exact["next_cursor"]) == (len(pmi), None)
    # the limit may change from page to page; the filters may not
    first = await listing(desk, limit=2)
    rest = await every_page(desk, limit=50, cursor=first["next_cursor"])
    assert ids(first["decisions"] + rest) == ids(made)


async def test_bad_cursors_and_parameters_are_422(desk: Desk) -> None:
    await batch(desk, "rpf", PMI, BATS, PMI, PMI)
    auditor = bearer(desk.auditor)
    cursor = (await listing(desk, instrument=PMI, limit=1))["next_cursor"]
    assert cursor is not None

    def forged(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    for bad in ("not a cursor", "%%%", forged("d1.x.y"), forged("d9.1.abc"), cursor[:-3]):
        problem = assert_problem(
            await desk.client.get(
                DECISIONS, params={"instrument": PMI, "cursor": bad}, headers=auditor
            ),
            422,
        )
        assert problem["errors"][0]["loc"] == ["query", "cursor"], bad
    for other in (
        {"instrument": BATS},
        {},
        {"instrument": PMI, "verdict": "excluded"},
        {"instrument": PMI, "from": "2020-01-01T00:00:00Z"},
    ):
        problem = assert_problem(
            await desk.client.get(DECISIONS, params={**other, "cursor": cursor}, headers=auditor),
            422,
        )
        assert "other filters" in problem["detail"], other
    # the same filters, spelt differently, are the same filters
    again = await listing(desk, instrument=PMI.lower(), cursor=cursor)
    assert len(again["decisions"]) == 2

    for params in (
        {"verdict": "forbidden"},
        {"limit": 0},
        {"limit": 1001},
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"from": "2026-01-01T00:00:00"},  # no zone: never guessed
        {"instrument": "X" * 13},
        {"isin": PMI},  # unknown parameter
    ):
        assert_problem(await desk.client.get(DECISIONS, params=params, headers=auditor), 422)


async def test_scopes(desk: Desk) -> None:
    (decision,) = await batch(desk, "rpf", PMI)
    replay_url = f"{DECISIONS}/{decision['decision_id']}/replay"
    for headers in ({}, bearer("mh_nope_nope")):
        assert_problem(await desk.client.get(DECISIONS, headers=headers), 401)
        assert_problem(await desk.client.post(replay_url, headers=headers), 401)
    for key in (desk.trader, desk.steward):
        problem = assert_problem(await desk.client.get(DECISIONS, headers=bearer(key)), 403)
        assert "decisions:read" in problem["detail"]
        assert_problem(await desk.client.post(replay_url, headers=bearer(key)), 403)


async def replay(desk: Desk, decision_id: str) -> dict[str, Any]:
    response = await desk.client.post(
        f"{DECISIONS}/{decision_id}/replay", headers=bearer(desk.auditor)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def without_log_fields(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decision.items() if k not in ("decision_id", "decided_at")}


async def test_replay_matches_the_stored_decision(desk: Desk) -> None:
    made = await batch(desk, "rpf", PMI, BATS, NOT_IN_UNIVERSE, MALFORMED)
    made += await batch(desk, "dk-pension", SHELL)
    for decision in made:
        body = await replay(desk, decision["decision_id"])
        assert body["matches"] is True, body["differences"]
        assert (body["differences"], body["problem"], body["hash_ok"]) == ([], None, True)
        assert body["original"] == decision
        assert body["recomputed"] == without_log_fields(decision)
    unknown = f"{DECISIONS}/00000000-0000-4000-8000-000000000000/replay"
    assert_problem(await desk.client.post(unknown, headers=bearer(desk.auditor)), 404)
    assert_problem(
        await desk.client.post(f"{DECISIONS}/nope/replay", headers=bearer(desk.auditor)), 422
    )


async def test_replay_after_a_later_data_load_still_matches(desk: Desk) -> None:
    """A changed fact decides later checks; an old decision replays on the data it had."""
    (before,) = await batch(desk, "rpf", PMI)
    assert before["verdict"] == "excluded"
    await desk.facts("PMI", "iss", {"revenue_pct.tobacco": "12"})
    (after,) = await batch(desk, "rpf", PMI)
    assert after["verdict"] == "allowed"
    assert after["data_version"] > before["data_version"]

    old = await replay(desk, before["decision_id"])
    assert (old["matches"], old["recomputed"]["verdict"]) == (True, "excluded")
    new = await replay(desk, after["decision_id"])
    assert (new["matches"], new["recomputed"]["verdict"]) == (True, "allowed")


# -- tampering, inside the test's transaction ----------------------------------------------------


async def tamper(connection: AsyncConnection, statement: str, **params: Any) -> None:
    """Change the log behind its triggers' back, as someone with DDL rights could."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("ALTER TABLE decisions DISABLE TRIGGER decisions_append_only")
        )
        await connection.execute(text(statement), params)
        await connection.execute(text("ALTER TABLE decisions ENABLE TRIGGER decisions_append_only"))
        return
    # SQLite cannot disable a trigger: drop and re-create it (DDL is transactional there).
    triggers = (
        await connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": "decisions"},
        )
    ).all()
    assert {name for name, _ in triggers} == {"decisions_no_update", "decisions_no_delete"}
    for name, _ in triggers:
        await connection.execute(text(f"DROP TRIGGER {name}"))
    await connection.execute(text(statement), params)
    for _, sql in triggers:
        await connection.execute(text(sql))


async def verify(desk: Desk) -> dict[str, Any]:
    response = await desk.client.get(f"{DECISIONS}/verify", headers=bearer(desk.auditor))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_tampered_decision_fails_verify_and_replay(
    desk: Desk, connection: AsyncConnection
) -> None:
    made = await batch(desk, "rpf", BATS, PMI, SHELL)
    made += await batch(desk, "rpf", PMI)
    clean = await verify(desk)
    assert (clean["ok"], clean["checked"], clean["first_bad_id"]) == (True, 4, None)

    await tamper(
        connection,
        "UPDATE decisions SET payload = replace(replace(payload, :excluded, :allowed), "
        ":may_not, :may) WHERE seq = 2",
        excluded='"verdict":"excluded"',
        allowed='"verdict":"allowed"',
        may_not='"may_hold":false',
        may='"may_hold":true',
    )
    body = await verify(desk)
    assert (body["ok"], body["first_bad_id"], body["first_bad_seq"]) == (
        False,
        made[1]["decision_id"],
        2,
    )
    assert "altered" in body["problem"]

    forged = await replay(desk, made[1]["decision_id"])
    assert (forged["matches"], forged["hash_ok"]) == (False, False)
    assert forged["original"]["verdict"] == "allowed"  # what the forger wrote
    assert forged["differences"] == [
        {"path": "/may_hold", "original": True, "recomputed": False},
        {"path": "/verdict", "original": "allowed", "recomputed": "excluded"},
    ]
    # the untouched decisions still replay, and the trigger is back
    assert (await replay(desk, made[3]["decision_id"]))["matches"] is True
    with pytest.raises(DBAPIError, match="append-only"):
        async with connection.begin_nested():
            await connection.execute(text("DELETE FROM decisions WHERE seq = 1"))


async def test_a_decision_naming_a_policy_version_we_never_had_cannot_replay(
    desk: Desk, connection: AsyncConnection
) -> None:
    (decision,) = await batch(desk, "rpf", PMI)
    await tamper(
        connection,
        "UPDATE decisions SET payload = replace(payload, :real, :never)",
        real='"version":1}',
        never='"version":7}',
    )
    body = await replay(desk, decision["decision_id"])
    assert (body["matches"], body["recomputed"], body["differences"]) == (False, None, [])
    assert "has no version 7" in body["problem"]
    assert (await verify(desk))["first_bad_id"] == decision["decision_id"]


# -- the append-only triggers on what decisions rest on -------------------------------------------

LOADED = {
    # table: a harmless-looking change to each of its rows
    "datasets": "UPDATE datasets SET rows = rows",
    "issuer_records": "UPDATE issuer_records SET name = name",
    "instrument_records": "UPDATE instrument_records SET asset_class = 'fund'",
    "facts": "UPDATE facts SET value = '0'",
}


@pytest.fixture
async def loaded(desk: Desk, connection: AsyncConnection) -> AsyncConnection:
    for table in LOADED:
        count = (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
        assert count > 0, table
    return connection


@pytest.mark.parametrize("table", list(LOADED))
async def test_loaded_data_refuses_update_delete_and_truncate(
    loaded: AsyncConnection, table: str
) -> None:
    statements = [LOADED[table], f"DELETE FROM {table}"]
    if loaded.dialect.name == "postgresql":  # SQLite has no TRUNCATE
        statements.append(f"TRUNCATE {table} CASCADE")
    before = (await loaded.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            async with loaded.begin_nested():
                await loaded.execute(text(statement))
    after = (await loaded.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    assert after == before


# -- query plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (DecisionFilters(isin="NL0000000070"), "ix_decisions_isin_decisions_seq"),
        (DecisionFilters(issuer_id="I0000007"), "ix_decisions_issuer_id_decisions_seq"),
        (DecisionFilters(policy_key="mandate"), "ix_decisions_policy_key_decisions_seq"),
    ],
)
async def test_a_page_is_one_index_range_scan_without_a_sort(
    app: FastAPI,
    client: httpx.AsyncClient,
    connection: AsyncConnection,
    filters: DecisionFilters,
    index: str,
) -> None:
    log: DecisionLog = app.state.decision_log
    await log.append([entry(n % 20) for n in range(400)])
    query = listing_query(filters, after_seq=100, limit=50).compile(
        dialect=connection.dialect, compile_kwargs={"literal_binds": True}
    )
    if connection.dialect.name == "postgresql":
        await connection.execute(text("ANALYZE decisions"))
        # A tiny table: make the planner show the plan it would use at millions of rows.
        await connection.execute(text("SET LOCAL enable_seqscan = off"))
        await connection.execute(text("SET LOCAL enable_bitmapscan = off"))
        plan = "\n".join(r[0] for r in await connection.execute(text(f"EXPLAIN {query}")))
        assert uses_index(plan, index), plan
        assert "Sort" not in plan, plan
    else:
        rows = await connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))
        plan = "\n".join(str(r[-1]) for r in rows)
        assert index in plan, plan
        assert "TEMP B-TREE" not in plan, plan
