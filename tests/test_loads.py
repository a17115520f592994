"""Loads never drop or replace data silently (issue 10, section 2), through the HTTP API on
both dialects: list-entries append and replace, older-dated lists, the same bytes re-dated."""

import datetime as dt
from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from app.screening.snapshot import EmbargoLoad, current_embargo_loads
from tests.conftest import MakeKey, bearer
from tests.support.calendar import today
from tests.support.checks import Desk, open_desk
from tests.support.datasets import FIXTURES, load_ok, real_file

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
