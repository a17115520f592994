"""Loads never drop or replace data silently (issue 10, section 2), through the HTTP API on
both dialects: list-entries append and replace, older-dated lists, the same bytes re-dated."""

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.scopes import Scope
from app.datasets.records import EmbargoLoad, current_embargo_loads
from tests.conftest import MakeKey, bearer
from tests.support.calendar import today
from tests.support.checks import Desk, open_desk
from tests.support.datasets import FIXTURES, load, load_ok, real_file
from tests.support.policies import post_document
from tests.support.problems import assert_problem

RU_BOND = "RU000A0JX0J2"  # a Russian sovereign bond (loaded by the tests that need it)


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    return await open_desk(client, make_key)


async def country(desk: Desk, code: str) -> dict[str, Any]:
    response = await desk.client.get(f"/v1/countries/{code}", headers=bearer(desk.steward))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def reason(decision: dict[str, Any], rule_id: str) -> dict[str, Any] | None:
    return next((r for r in decision["reasons"] if r["rule_id"] == rule_id), None)


# ------------------------------------------------------------------- older-dated lists (item 2)


async def test_an_older_dated_embargo_list_loaded_later_does_not_supersede_a_newer_one(
    desk: Desk, make_key: MakeKey
) -> None:
    """``ingest --kind arms-embargoes --as-of 2021-05-05`` on top of a newer list left Russia
    (and Afghanistan, in the field) without its embargo: the provider's date decides."""
    await load_ok(
        desk.client,
        desk.steward,
        "instruments",
        f"isin,issuer_id,asset_class\n{RU_BOND},SOV-RU,sovereign_bond\n",
    )
    newer_date = (today() - dt.timedelta(days=45)).isoformat()
    newer = await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        FIXTURES / "arms_embargoes.csv",
        as_of=newer_date,
    )
    # SIPRI's archive as of 2021 (Russia: EU only), then a 2021 list without Russia at all.
    archive = await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        real_file("arms_embargoes/sipri_arms_embargoes_archive_with_imposer.csv"),
        as_of="2021-05-05",
    )
    older = await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        "country,authority,regime\nKP,UN,UNSCR 1718\n",
        as_of="2021-06-01",
    )
    assert newer["id"] < archive["id"] < older["id"]  # recorded, in load order

    russia = await country(desk, "RU")
    assert {(e["authority"], e["dataset_id"]) for e in russia["arms_embargoes"]} == {
        ("EU", newer["id"]),
        ("US", newer["id"]),
    }

    decision = await desk.check(RU_BOND)
    sanctions = reason(decision, "country-sanctions")
    assert sanctions is not None, decision
    evidence = sanctions["evidence"][0]
    assert evidence["as_of"] == newer_date
    assert evidence["dataset_id"] == newer["id"]
    assert decision["verdict"] == "excluded"

    # The custodian's list says so too, resting on the newer list's date.
    lists_reader = await make_key(Scope.lists_read)
    response = await desk.client.get(
        "/v1/lists/rpf",
        params={"format": "json", "level": "issuer"},
        headers=bearer(lists_reader),
    )
    assert response.status_code == 200, response.text
    rows = {r["issuer_id"]: r for r in response.json()["rows"]}
    assert "country-sanctions" in rows["SOV-RU"]["rule_ids"]
    assert rows["SOV-RU"]["since"] == newer_date


def test_each_provider_current_list_is_its_newest_dated_one_on_the_day() -> None:
    """The rule itself, for days a check over HTTP cannot reach (data loaded today is not known
    to a check of 2023): a day between two lists reads the older one."""
    newer = EmbargoLoad(dataset_id=1, provider="sipri", as_of=dt.date(2026, 10, 15))
    older = EmbargoLoad(dataset_id=2, provider="sipri", as_of=dt.date(2021, 5, 5))
    same_day = EmbargoLoad(dataset_id=3, provider="sipri", as_of=dt.date(2026, 10, 15))
    other = EmbargoLoad(dataset_id=4, provider="un", as_of=dt.date(2020, 1, 1))
    loads = [older, other, newer]
    assert current_embargo_loads(loads, dt.date(2026, 11, 30)) == {"sipri": newer, "un": other}
    assert current_embargo_loads(loads, dt.date(2023, 1, 1)) == {"sipri": older, "un": other}
    assert current_embargo_loads(loads, dt.date(2019, 12, 31)) == {}
    # Ties on the provider's date: the later load.
    assert current_embargo_loads([same_day, newer], dt.date(2026, 11, 30))["sipri"] == same_day


# ------------------------------------------------------------ the same bytes, new date (item 3)


async def test_the_same_bytes_with_another_as_of_or_provider_are_a_new_dataset(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    """A vendor's byte-identical monthly re-export is this month's data, not last month's (it
    answered 200 with the old dataset, so the data read as stale and trading blocked); the same
    file from another provider is that provider's statement (it answered with the other's)."""
    steward = await make_key(Scope.data_write)
    await load_ok(client, steward, "issuers", FIXTURES / "issuers.csv")
    await load_ok(client, steward, "instruments", FIXTURES / "instruments.csv")
    msci = FIXTURES / "msci_esg.csv"
    september = await load_ok(client, steward, "msci-esg", msci, as_of="2025-09-30")
    retried = await load(client, steward, "msci-esg", msci, as_of="2025-09-30")
    assert retried.status_code == 200
    assert retried.json() == september
    october = await load_ok(client, steward, "msci-esg", msci, as_of="2025-10-31")
    assert october["id"] > september["id"]
    assert october["as_of"] == "2025-10-31"
    assert october["sha256"] == september["sha256"]
    shell = (await client.get("/v1/issuers/SHELL", headers=bearer(steward))).json()
    current = {f["metric"]: f for f in shell["facts"]}
    assert current["norms.status"]["as_of"] == "2025-10-31"
    assert current["norms.status"]["dataset_id"] == october["id"]

    body = "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,96.4\n"
    iss = await load_ok(client, steward, "facts", body, provider="iss", as_of="2025-06-30")
    other = await load_ok(
        client, steward, "facts", body, provider="sustainalytics", as_of="2025-06-30"
    )
    assert other["id"] != iss["id"]
    assert other["provider"] == "sustainalytics"
    pmi = (await client.get("/v1/issuers/PMI", headers=bearer(steward))).json()
    providers = {f["provider"] for f in pmi["facts"] if f["metric"] == "revenue_pct.tobacco"}
    assert {"iss", "sustainalytics"} <= providers


# --------------------------------------------------------- list-entries append/replace (item 1)

LIST_HEADER = "policy,issuer_ref,list,reason,decided_on\n"
THALES = "FR0000121329"
NORTHROP = "US6668071029"
BATS = "GB0002875804"
PMI = "US7181721090"


def entries(*rows: tuple[str, str]) -> str:
    """A list-entries file: (policy, issuer) exclusions."""
    return LIST_HEADER + "".join(
        f"{policy},{issuer},exclusion,Board decision on {issuer},2026-01-15\n"
        for policy, issuer in rows
    )


async def excluded_by_list(desk: Desk, isin: str, policy: str = "rpf", **params: str) -> bool:
    decision = await desk.check(isin, policy, **params)
    return reason(decision, "list:exclusion") is not None


def keys(part: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["policy"], e["issuer_id"], e["list"]) for e in part["examples"]]


async def test_a_list_load_appends_by_default_and_keeps_the_boards_earlier_exclusions(
    desk: Desk,
) -> None:
    """Loading the sanctions exclusions for rpf dropped the board's earlier exclusion of
    another company: the newest load naming a policy was its whole list."""
    board = await load_ok(desk.client, desk.steward, "list-entries", entries(("rpf", "THALES")))
    assert board["mode"] == "append"
    sanctions = await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "NORTHROP"), ("rpf", "BATS")),
    )
    assert await excluded_by_list(desk, THALES)
    assert await excluded_by_list(desk, NORTHROP)
    summary = sanctions["summary"]
    assert summary["added"]["count"] == 2
    assert keys(summary["added"]) == [
        ("rpf", "BATS", "exclusion"),
        ("rpf", "NORTHROP", "exclusion"),
    ]
    assert summary["removed"] == {"count": 0, "examples": []}
    # An entry appended again updates the one it repeats: one reason, the newest.
    renewed = LIST_HEADER + "rpf,THALES,exclusion,Renewed by the board,2026-06-01\n"
    update = await load_ok(desk.client, desk.steward, "list-entries", renewed, mode="append")
    assert update["summary"]["changed"]["count"] == 1
    assert update["summary"]["added"]["count"] == 0
    decision = await desk.check(THALES)
    hits = [r for r in decision["reasons"] if r["rule_id"] == "list:exclusion"]
    assert [h["title"] for h in hits] == ["Renewed by the board"]


async def test_replace_makes_the_file_the_whole_list_of_the_policies_it_names(
    desk: Desk,
) -> None:
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "THALES"), ("rpf", "NORTHROP"), ("dk-pension", "THALES")),
    )
    replaced = await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "NORTHROP"), ("rpf", "BATS")),
        mode="replace",
    )
    assert (replaced["mode"], replaced["policy"]) == ("replace", None)
    summary = replaced["summary"]
    assert summary["replaced"] == ["rpf"]
    assert keys(summary["removed"]) == [("rpf", "THALES", "exclusion")]
    assert keys(summary["added"]) == [("rpf", "BATS", "exclusion")]
    assert summary["unchanged"] == 1
    assert not await excluded_by_list(desk, THALES)
    assert await excluded_by_list(desk, BATS)
    assert await excluded_by_list(desk, NORTHROP)
    # dk-pension was not named: its list is as it was.
    assert await excluded_by_list(desk, THALES, "dk-pension")


async def test_replace_for_one_policy_checks_every_row_and_may_empty_the_list(
    desk: Desk,
) -> None:
    """A published list that revokes its last exclusions must be loadable (a header-only file
    was a 422 "no data rows")."""
    first = await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "THALES"), ("dk-pension", "BATS")),
    )
    wrong = await load(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "NORTHROP"), ("dk-pension", "BATS")),
        mode="replace",
        policy="rpf",
    )
    problem = assert_problem(wrong, 422)
    assert problem["errors"][0]["row"] == 3
    assert problem["errors"][0]["column"] == "policy"
    assert "policy=rpf" in problem["errors"][0]["msg"]

    for params in ({"mode": "replace"}, {"mode": "append", "policy": "rpf"}):
        empty = assert_problem(
            await load(desk.client, desk.steward, "list-entries", LIST_HEADER, **params), 422
        )
        assert "no data rows" in empty["errors"][0]["msg"]
    emptied = await load_ok(
        desk.client, desk.steward, "list-entries", LIST_HEADER, mode="replace", policy="rpf"
    )
    assert emptied["rows"] == 0
    assert (emptied["mode"], emptied["policy"]) == ("replace", "rpf")
    assert keys(emptied["summary"]["removed"]) == [("rpf", "THALES", "exclusion")]
    assert not await excluded_by_list(desk, THALES)
    assert await excluded_by_list(desk, BATS, "dk-pension")

    # Bitemporal: the list as it was at the first load's time, and a replayed decision.
    assert await excluded_by_list(desk, THALES, as_of=first["loaded_at"])


async def test_a_decision_replays_against_the_list_as_it_was(desk: Desk) -> None:
    await load_ok(desk.client, desk.steward, "list-entries", entries(("rpf", "THALES")))
    decision = await desk.check(THALES)
    assert reason(decision, "list:exclusion") is not None
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "BATS")),
        mode="replace",
        policy="rpf",
    )
    assert not await excluded_by_list(desk, THALES)
    replay = await desk.client.post(
        f"/v1/decisions/{decision['decision_id']}/replay", headers=bearer(desk.auditor)
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["matches"] is True


async def test_an_older_replace_does_not_supersede_a_newer_list(desk: Desk) -> None:
    current = await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "THALES")),
        mode="replace",
        as_of="2026-10-15",
    )
    before = await desk.client.get("/v1/datasets", headers=bearer(desk.steward))
    older = await load(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "BATS")),
        mode="replace",
        as_of="2026-05-01",
    )
    problem = assert_problem(older, 409)
    assert f"dataset {current['id']}" in problem["detail"]
    assert "2026-10-15" in problem["detail"]
    after = await desk.client.get("/v1/datasets", headers=bearer(desk.steward))
    assert after.json() == before.json()
    assert await excluded_by_list(desk, THALES)
    # The same date, or appending its entries, is fine.
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        entries(("rpf", "NORTHROP")),
        mode="append",
        as_of="2026-05-01",
    )
    assert await excluded_by_list(desk, THALES)
    assert await excluded_by_list(desk, NORTHROP)


async def test_list_parameters_are_part_of_a_loads_identity_and_only_for_lists(
    desk: Desk,
) -> None:
    body = entries(("rpf", "THALES"))
    appended = await load_ok(desk.client, desk.steward, "list-entries", body)
    again = await load(desk.client, desk.steward, "list-entries", body, mode="append")
    assert again.status_code == 200
    assert again.json()["id"] == appended["id"]
    replaced = await load_ok(desk.client, desk.steward, "list-entries", body, mode="replace")
    scoped = await load_ok(
        desk.client, desk.steward, "list-entries", body, mode="replace", policy="rpf"
    )
    assert len({appended["id"], replaced["id"], scoped["id"]}) == 3

    for params in ({"mode": "replace"}, {"policy": "rpf"}):
        problem = assert_problem(
            await load(desk.client, desk.steward, "issuers", FIXTURES / "issuers.csv", **params),
            422,
        )
        assert "list-entries loads only" in problem["detail"]
        assert problem["errors"][0]["loc"] == ["query", next(iter(params))]
    problem = assert_problem(
        await load(desk.client, desk.steward, "list-entries", body, mode="overwrite"), 422
    )
    problem = assert_problem(
        await load(desk.client, desk.steward, "list-entries", body, policy="RPF!"), 422
    )
    assert "not a policy key" in problem["detail"]


async def test_the_same_issuer_twice_on_a_list_by_two_references_is_a_row_error(
    desk: Desk,
) -> None:
    body = entries(("rpf", "PMI"), ("rpf", PMI))  # issuer_id, then the ISIN of its share
    problem = assert_problem(await load(desk.client, desk.steward, "list-entries", body), 422)
    assert problem["errors"][0]["row"] == 3
    assert "same issuer (PMI)" in problem["errors"][0]["msg"]


# ------------------------------------------------- the newest decision wins (review 2, item 1)


async def test_an_appended_older_decision_never_overwrites_a_newer_one(
    desk: Desk, make_key: MakeKey
) -> None:
    """An archive back-fill (an expired 2019 exclusion) appended after the committee's
    2026 decision took G1 off the list: the newest load won, whatever its decided_on."""
    header = "policy,issuer_ref,list,reason,decided_on,reference,expires_on\n"
    committee = await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        header + "rpf,THALES,exclusion,Committee decision,2026-11-15,EXC-2026-9,\n",
    )
    backfill = await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        header + "rpf,THALES,exclusion,Old 2019 exclusion (archive backfill),2019-01-01,EXC-2019-1,"
        "2020-01-01\n",
    )
    summary = backfill["summary"]
    assert summary["changed"] == {"count": 0, "examples": []}
    assert summary["unchanged"] == 1
    assert summary["superseded"]["count"] == 1
    [example] = summary["superseded"]["examples"]
    assert (example["policy"], example["issuer_id"], example["list"]) == (
        "rpf",
        "THALES",
        "exclusion",
    )
    assert example["row"] == 2
    assert example["decided_on"] == "2019-01-01"
    assert example["in_force"] == {
        "decided_on": "2026-11-15",
        "dataset_id": committee["id"],
        "reason": "Committee decision",
    }
    decision = await desk.check(THALES)
    hits = [r for r in decision["reasons"] if r["rule_id"] == "list:exclusion"]
    assert [h["title"] for h in hits] == ["Committee decision"]
    assert decision["may_hold"] is False

    # A newer decision still updates it, and the summary says what changed. (Its expiry a year
    # from today: a fixed date would expire the entry, and fail the test, on that day.)
    expires = (today() + dt.timedelta(days=365)).isoformat()
    renewed = await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        header + f"rpf,THALES,exclusion,Committee review,2026-11-20,EXC-2026-9,{expires}\n",
    )
    assert renewed["summary"]["superseded"]["count"] == 0
    [changed] = renewed["summary"]["changed"]["examples"]
    assert changed["changes"] == {
        "reason": {"before": "Committee decision", "after": "Committee review"},
        "decided_on": {"before": "2026-11-15", "after": "2026-11-20"},
        "expires_on": {"before": None, "after": expires},
    }
    hits = [r for r in (await desk.check(THALES))["reasons"] if r["rule_id"] == "list:exclusion"]
    assert [h["title"] for h in hits] == ["Committee review"]

    # The custodian list agrees (the compiled index reads every entry through the same rule).
    lists_reader = await make_key(Scope.lists_read)
    response = await desk.client.get(
        "/v1/lists/rpf", params={"format": "json", "level": "issuer"}, headers=bearer(lists_reader)
    )
    assert response.status_code == 200, response.text
    rows = {r["issuer_id"]: r for r in response.json()["rows"]}
    assert "list:exclusion" in rows["THALES"]["rule_ids"]


# ----------------------------------------- an embargo list's load says what it replaces (item 2)


def embargo_keys(part: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["country"], e["authority"], e["regime"]) for e in part["examples"]]


async def test_an_embargo_list_load_says_what_it_adds_and_removes(desk: Desk) -> None:
    """A one-row file replaced SIPRI's whole list, dropping Russia's embargoes, and answered
    201 with an empty summary: a replacing list must say what it removes."""
    first = await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        FIXTURES / "arms_embargoes.csv",
        as_of="2026-10-01",
    )
    assert first["summary"]["previous"] is None
    assert first["summary"]["added"]["count"] == 5
    assert first["summary"]["history"] is False

    one_row = await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        "country,authority,regime\nNL,EU,test embargo\n",
        as_of="2026-11-01",
    )
    summary = one_row["summary"]
    assert summary["previous"] == {"dataset_id": first["id"], "as_of": "2026-10-01"}
    assert embargo_keys(summary["added"]) == [("NL", "EU", "test embargo")]
    assert summary["removed"]["count"] == 5
    assert ("RU", "EU", "Council Decision 2014/512/CFSP") in embargo_keys(summary["removed"])
    assert ("RU", "US", "ITAR 126.1") in embargo_keys(summary["removed"])
    assert summary["unchanged"] == 0
    assert summary["history"] is False
    # It is the current list: Russia's embargo is gone, as the summary said.
    assert (await country(desk, "RU"))["arms_embargoes"] == []

    # An older-dated list is history: it says so, and today's list stays the one-row file.
    archive = await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        FIXTURES / "arms_embargoes.csv",
        as_of="2026-09-01",
    )
    summary = archive["summary"]
    assert summary["history"] is True
    assert summary["current"] == {"dataset_id": one_row["id"], "as_of": "2026-11-01"}
    assert summary["previous"] is None  # no list of this provider before 2026-09-01
    assert summary["added"]["count"] == 5
    assert (await country(desk, "RU"))["arms_embargoes"] == []
    # Between the two, the provider's list in force on 2026-10-15 is the first one.
    between = await load_ok(
        desk.client,
        desk.steward,
        "arms-embargoes",
        "country,authority,regime\nKP,UN,UNSCR 1718\n",
        as_of="2026-10-15",
    )
    assert between["summary"]["previous"] == {"dataset_id": first["id"], "as_of": "2026-10-01"}
    assert between["summary"]["unchanged"] == 1
    assert between["summary"]["removed"]["count"] == 4
    assert between["summary"]["history"] is True


# ------------------------------------------------------- typos are errors, not no-ops (item 3)


async def test_a_list_entry_for_an_unknown_policy_or_rule_is_a_row_error(
    desk: Desk, make_key: MakeKey
) -> None:
    """`rfp` for rpf, `tobbaco` for tobacco, `policy=nosuch`: each answered 201, and the entry
    never applied (an exclusion nobody reads, an inclusion lifting nothing)."""
    before = await desk.client.get("/v1/datasets", headers=bearer(desk.steward))
    header = "policy,issuer_ref,list,reason,decided_on,rules\n"
    typo = await load(
        desk.client,
        desk.steward,
        "list-entries",
        header
        + "rpf,THALES,exclusion,Board,2026-01-15,\n"
        + "rfp,BATS,exclusion,Board,2026-01-15,\n"
        + "rpf,PMI,inclusion,Review,2026-01-15,tobacco tobbaco\n"
        + "asr,PMI,inclusion,Review,2026-01-15,defence-risk\n",
    )
    problem = assert_problem(typo, 422)
    errors = {(e["row"], e["column"]): e["msg"] for e in problem["errors"]}
    assert set(errors) == {(3, "policy"), (4, "rules")}
    assert "unknown policy 'rfp'" in errors[(3, "policy")]
    assert "asr, dk-pension, rpf" in errors[(3, "policy")]
    assert "'tobbaco' is not a rule of policy 'rpf'" in errors[(4, "rules")]
    assert "tobacco" in errors[(4, "rules")].split("its rules:")[1]

    replace = await load(
        desk.client,
        desk.steward,
        "list-entries",
        LIST_HEADER,
        mode="replace",
        policy="nosuch",
    )
    problem = assert_problem(replace, 422)
    assert problem["errors"][0]["loc"] == ["query", "policy"]
    assert "unknown policy 'nosuch'" in problem["detail"]
    assert "asr, dk-pension, rpf" in problem["detail"]

    after = await desk.client.get("/v1/datasets", headers=bearer(desk.steward))
    assert after.json() == before.json()  # nothing written
    assert not await excluded_by_list(desk, THALES)

    # A draft counts (any status); an overlay has its base's rules as well as its own.
    author = await make_key(Scope.policies_write)
    overlay = {"key": "rpf-mandate", "title": "A client mandate on rpf", "extends": "rpf"}
    draft = await post_document(desk.client, "rpf-mandate", overlay, bearer(author))
    assert draft.status_code == 201, draft.text
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        header + "rpf-mandate,PMI,inclusion,Review,2026-01-15,tobacco\n",
    )


# ------------------------------------------------ a provider's as-of is never future (item 4)


async def test_a_future_as_of_is_refused_for_the_load_and_for_its_rows(desk: Desk) -> None:
    """`as_of=2099-01-01` was accepted: a facts load then read as no data until 2099, and a
    list-entries replace made every later real replace a 409 until 2099."""
    before = (await desk.client.get("/v1/datasets", headers=bearer(desk.steward))).json()
    fact = "issuer_ref,metric,value\nPMI,revenue_pct.tobacco,96.4\n"
    for kind, body, params in (
        ("facts", fact, {"provider": "iss"}),
        ("list-entries", entries(("rpf", "THALES")), {"mode": "replace"}),
        ("arms-embargoes", "country,authority,regime\nKP,UN,UNSCR 1718\n", {}),
        ("issuers", FIXTURES / "issuers.csv", {}),
    ):
        problem = assert_problem(
            await load(desk.client, desk.steward, kind, body, as_of="2099-01-01", **params), 422
        )
        assert problem["errors"][0]["loc"] == ["query", "as_of"], kind
        assert "as_of=2099-01-01 is in the future" in problem["detail"]

    # Per row: a fact's as_of, a decision's decided_on, an edition or score year.
    tomorrow_plus = (today() + dt.timedelta(days=2)).isoformat()
    rows: tuple[tuple[str, str, dict[str, str], str], ...] = (
        (
            "facts",
            f"issuer_ref,metric,value,as_of\nPMI,revenue_pct.tobacco,96.4,{tomorrow_plus}\n",
            {"provider": "iss"},
            "as_of",
        ),
        (
            "list-entries",
            LIST_HEADER + f"rpf,THALES,exclusion,Board,{tomorrow_plus}\n",
            {},
            "decided_on",
        ),
        (
            "freedom-house",
            "Country/Territory,C/T,Edition,Status,PR rating,CL rating\nNorway,c,2099,F,40,60\n",
            {"as_of": "2026-02-01"},
            "Edition",
        ),
        (
            "ti-cpi",
            "Country,ISO3,year,cpi_score\nNorway,NOR,2099,84\n",
            {"as_of": "2026-02-01"},
            "year",
        ),
    )
    for kind, body, params, column in rows:
        problem = assert_problem(await load(desk.client, desk.steward, kind, body, **params), 422)
        error = problem["errors"][0]
        assert (error["row"], error["column"]) == (2, column), kind
        assert "in the future" in error["msg"]
    after = (await desk.client.get("/v1/datasets", headers=bearer(desk.steward))).json()
    assert after == before  # nothing written

    # Tomorrow is fine (time zones), and so is a list entry's expiry or review in the future.
    tomorrow = (today() + dt.timedelta(days=1)).isoformat()
    await load_ok(desk.client, desk.steward, "facts", fact, provider="iss", as_of=tomorrow)
    await load_ok(
        desk.client,
        desk.steward,
        "list-entries",
        "policy,issuer_ref,list,reason,decided_on,review_on,expires_on\n"
        f"rpf,THALES,exclusion,Board,{tomorrow},2099-01-01,2099-01-01\n",
    )


# ------------------------------------------------------------------- planner statistics


async def test_a_load_s_rows_are_in_the_planner_s_statistics_before_its_checks(
    desk: Desk, connection: AsyncConnection
) -> None:
    """The whole-file checks of facts and instruments select the rows just published by their
    dataset id. With statistics from before the load the planner believes no row has it (an
    estimate of 1) and nested-loops every reference over every identifier: the demo's load
    took 275 s on Postgres instead of 2 s. So the table is analyzed first, whatever the load's
    size; the planner then expects this load's rows (SQLite has no planner statistics)."""
    issuers = "".join(f"STAT{n:04d},Statistics {n} N.V.,company,NL\n" for n in range(400))
    await load_ok(desk.client, desk.steward, "issuers", "issuer_id,name,kind,country\n" + issuers)
    facts = "".join(f"STAT{n:04d},revenue_pct.tobacco,0\n" for n in range(400))
    loaded = await load_ok(
        desk.client,
        desk.steward,
        "facts",
        "issuer_ref,metric,value\n" + facts,
        provider="iss",
        as_of=today().isoformat(),
    )
    if connection.dialect.name != "postgresql":
        return
    plan = (
        await connection.execute(
            text("EXPLAIN (FORMAT JSON) SELECT * FROM facts WHERE dataset_id = :id"),
            {"id": loaded["id"]},
        )
    ).scalar_one()
    document = plan if isinstance(plan, list) else json.loads(plan)
    assert document[0]["Plan"]["Plan Rows"] >= 200, document
