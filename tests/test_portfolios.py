"""Portfolios and holdings (contract, "Portfolios and holdings"), through the HTTP API on both
dialects: the two data kinds, their row errors (all or nothing), and the reading endpoints
with their bitemporal holdings (what was known at a time, about the day asked)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.scopes import Scope
from app.kit.time import utcnow
from app.portfolios.repository import PortfolioRepository
from tests.conftest import MakeKey, bearer
from tests.support.calendar import today
from tests.support.checks import open_desk
from tests.support.datasets import FIXTURES, datasets, load, load_ok, load_universe
from tests.support.policies import post_document, shipped
from tests.support.problems import assert_problem

APPLE = "US0378331005"
APPLE_BAD_CHECK_DIGIT = "US0378331006"
MICROSOFT = "US5949181045"
SHELL = "GB00BP6MXD84"

PORTFOLIOS = (
    "portfolio_id,name,policy,account,base_currency,custodian\n"
    "HOUSE,House book,rpf,own,eur,Custody Bank\n"
    "CL-1,Client one,rpf,client,,\n"
)
HOLDINGS_HEADER = "portfolio_id,isin,quantity,market_value,currency,as_of,position\n"


def days_ago(n: int) -> str:
    return (today() - dt.timedelta(days=n)).isoformat()


class Office:
    def __init__(self, client: httpx.AsyncClient, steward: str, reader: str) -> None:
        self.client = client
        self.steward = steward
        self.reader = reader

    async def holdings(self, body: str, **params: str) -> dict[str, Any]:
        return await load_ok(
            self.client, self.steward, "holdings", HOLDINGS_HEADER + body, **params
        )

    async def get(self, path: str, **params: str) -> httpx.Response:
        return await self.client.get(path, params=params, headers=bearer(self.reader))

    async def portfolio(self, portfolio_id: str, **params: str) -> dict[str, Any]:
        response = await self.get(f"/v1/portfolios/{portfolio_id}", **params)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def rejected(self, kind: str, body: str) -> list[dict[str, Any]]:
        """Load a file that must be rejected whole: 422, and no dataset written."""
        before = len(await datasets(self.client, self.steward))
        problem = assert_problem(await load(self.client, self.steward, kind, body), 422)
        assert "Nothing was loaded" in problem["detail"], problem
        assert len(await datasets(self.client, self.steward)) == before
        errors: list[dict[str, Any]] = problem["errors"]
        return errors


@pytest.fixture
async def office(client: httpx.AsyncClient, make_key: MakeKey) -> Office:
    steward = await make_key(Scope.data_write, name="steward")
    author = await make_key(Scope.policies_write, name="policy-author")
    reader = await make_key(Scope.check, name="oms")
    # A draft is enough: a portfolio may name a policy of any status.
    created = await post_document(client, "rpf", shipped("rpf"), bearer(author))
    assert created.status_code == 201, created.text
    await load_ok(client, steward, "portfolios", PORTFOLIOS)
    return Office(client, steward, reader)


# ---------------------------------------------------------------- loading and reading back


async def test_portfolios_and_holdings_load_and_read_back(office: Office) -> None:
    listed = await office.get("/v1/portfolios")
    assert listed.status_code == 200, listed.text
    portfolios = listed.json()["portfolios"]
    assert [p["portfolio_id"] for p in portfolios] == ["CL-1", "HOUSE"]
    house = portfolios[1]
    assert house == {
        "portfolio_id": "HOUSE",
        "name": "House book",
        "policy": "rpf",
        "account": "own",
        "base_currency": "EUR",
        "custodian": "Custody Bank",
        "dataset_id": house["dataset_id"],
        "source_row": 2,
    }
    assert portfolios[0]["base_currency"] is None
    assert portfolios[0]["custodian"] is None

    loaded = await office.holdings(
        f"HOUSE,{APPLE},100,15000.50,EUR,,\n"
        f"HOUSE,{MICROSOFT},20,7000,,,long\n"
        f"CL-1,{SHELL},5,120,,,\n",
        as_of=days_ago(1),
    )
    assert loaded["kind"] == "holdings"
    assert loaded["rows"] == 3
    read = await office.portfolio("HOUSE")
    assert read["portfolio"]["portfolio_id"] == "HOUSE"
    assert read["data_version"] == loaded["id"]
    assert read["holdings"] == {
        "holdings_version": loaded["id"],
        "as_of": days_ago(1),
        "positions": 2,
        "total_market_value": "22000.5",
        "missing_market_value": 0,
        "items": [
            {
                "isin": APPLE,
                "quantity": "100",
                "market_value": "15000.5",
                "currency": "EUR",
                "position": "long",
                "source_row": 2,
            },
            {
                "isin": MICROSOFT,
                "quantity": "20",
                "market_value": "7000",
                "currency": None,
                "position": "long",
                "source_row": 3,
            },
        ],
    }
    client_one = await office.portfolio("CL-1")
    assert client_one["holdings"]["positions"] == 1
    assert client_one["holdings"]["items"][0]["isin"] == SHELL


async def test_a_portfolio_without_holdings_reads_with_none(office: Office) -> None:
    read = await office.portfolio("CL-1")
    assert read["holdings"] is None


async def test_a_later_portfolios_load_supersedes(office: Office) -> None:
    await load_ok(
        office.client,
        office.steward,
        "portfolios",
        "portfolio_id,name,policy,account\nHOUSE,House book renamed,rpf,client\n",
    )
    read = await office.portfolio("HOUSE")
    assert read["portfolio"]["name"] == "House book renamed"
    assert read["portfolio"]["account"] == "client"
    assert read["portfolio"]["base_currency"] is None
    listed = (await office.get("/v1/portfolios")).json()["portfolios"]
    assert [p["portfolio_id"] for p in listed] == ["CL-1", "HOUSE"]


async def test_unknown_portfolio_is_404_and_the_scope_is_check(
    office: Office, make_key: MakeKey
) -> None:
    assert_problem(await office.get("/v1/portfolios/NOPE"), 404)
    other = await make_key(Scope.lists_read, name="custodian")
    for path in ("/v1/portfolios", "/v1/portfolios/HOUSE"):
        response = await office.client.get(path, headers=bearer(other))
        assert_problem(response, 403)


async def test_as_of_must_be_rfc3339_and_not_in_the_future(office: Office) -> None:
    future = (utcnow() + dt.timedelta(days=2)).isoformat()
    assert_problem(await office.get("/v1/portfolios/HOUSE", as_of=future), 422)
    assert_problem(await office.get("/v1/portfolios/HOUSE", as_of=days_ago(1)), 422)
    # Before the portfolio was loaded it was not known.
    long_ago = (utcnow() - dt.timedelta(days=30)).isoformat()
    assert_problem(await office.get("/v1/portfolios/HOUSE", as_of=long_ago), 404)


# ------------------------------------------------------------------------ bitemporal holdings


async def test_an_older_dated_report_loaded_later_does_not_supersede_a_newer_one(
    office: Office,
) -> None:
    newer = await office.holdings(f"HOUSE,{APPLE},200,2000,,,\n", as_of=days_ago(2))
    older = await office.holdings(f"HOUSE,{APPLE},100,1000,,,\n", as_of=days_ago(10))
    read = await office.portfolio("HOUSE")
    assert read["data_version"] == older["id"]
    assert read["holdings"]["holdings_version"] == newer["id"]
    assert read["holdings"]["as_of"] == days_ago(2)
    assert read["holdings"]["items"][0]["quantity"] == "200"


async def test_holdings_on_a_day_between_two_reports_are_the_earlier_report(
    office: Office, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await office.holdings(f"HOUSE,{APPLE},100,1000,,,\n", as_of=days_ago(10))
    second = await office.holdings(f"HOUSE,{APPLE},200,2000,,,\n", as_of=days_ago(2))
    async with sessionmaker() as session:
        repository = PortfolioRepository(session)
        version = await repository.data_version()
        between = await repository.holdings("HOUSE", today() - dt.timedelta(days=5), version)
        assert between is not None
        assert between.dataset_id == first["id"]
        assert between.as_of == dt.date.fromisoformat(days_ago(10))
        latest = await repository.holdings("HOUSE", today(), version)
        assert latest is not None
        assert latest.dataset_id == second["id"]
        before_any = await repository.holdings("HOUSE", today() - dt.timedelta(days=11), version)
        assert before_any is None
        # Known at the first load's version: the second report did not exist yet.
        then = await repository.holdings("HOUSE", today(), first["id"])
        assert then is not None
        assert then.dataset_id == first["id"]
        exact = await repository.holdings_by_version("HOUSE", first["id"])
        assert exact is not None
        assert [p.quantity for p in exact.positions] == [100]
        assert await repository.holdings_by_version("CL-1", first["id"]) is None


async def test_a_report_loaded_after_a_time_is_not_visible_at_that_time(office: Office) -> None:
    first = await office.holdings(f"HOUSE,{APPLE},100,1000,,,\n", as_of=days_ago(3))
    moment = utcnow()
    second = await office.holdings(f"HOUSE,{APPLE},200,2000,,,\n", as_of=days_ago(1))
    then = await office.portfolio("HOUSE", as_of=moment.isoformat())
    assert then["data_version"] == first["id"]
    assert then["holdings"]["holdings_version"] == first["id"]
    now = await office.portfolio("HOUSE")
    assert now["holdings"]["holdings_version"] == second["id"]


async def test_a_report_may_date_its_rows(office: Office) -> None:
    loaded = await office.holdings(
        f"HOUSE,{APPLE},1,10,,{days_ago(4)},\nHOUSE,{MICROSOFT},1,10,,{days_ago(4)},\n"
        f"CL-1,{SHELL},1,10,,{days_ago(6)},\n"
    )
    assert loaded["as_of"] == today().isoformat()  # the load's own date
    assert (await office.portfolio("HOUSE"))["holdings"]["as_of"] == days_ago(4)
    assert (await office.portfolio("CL-1"))["holdings"]["as_of"] == days_ago(6)


# ------------------------------------------------------------------------ values and positions


async def test_an_empty_market_value_is_reported_as_missing(office: Office) -> None:
    await office.holdings(f"HOUSE,{APPLE},100,,,,\nHOUSE,{MICROSOFT},20,7000,,,\n")
    holdings = (await office.portfolio("HOUSE"))["holdings"]
    assert holdings["missing_market_value"] == 1
    assert holdings["total_market_value"] is None
    assert holdings["items"][0]["market_value"] is None
    assert holdings["items"][1]["market_value"] == "7000"


async def test_a_short_position_is_signed_negative(office: Office) -> None:
    await office.holdings(
        f"HOUSE,{APPLE},-50,-7500.25,EUR,,short\nHOUSE,{APPLE},100,15000,EUR,,long\n"
    )
    holdings = (await office.portfolio("HOUSE"))["holdings"]
    short, long = holdings["items"]
    assert (short["position"], short["quantity"], short["market_value"]) == (
        "short",
        "-50",
        "-7500.25",
    )
    assert long["position"] == "long"
    assert holdings["total_market_value"] == "7499.75"


# ------------------------------------------------------------------------------- row errors


PORTFOLIO_ERRORS = [
    pytest.param(
        "portfolio_id,name,policy,account\nP1,One,rfp,own\n",
        2,
        "policy",
        "unknown policy 'rfp'",
        id="unknown-policy",
    ),
    pytest.param(
        "portfolio_id,name,policy,account\nP1,One,rpf,house\n",
        2,
        "account",
        "own, client",
        id="bad-account",
    ),
    pytest.param(
        "portfolio_id,name,policy,account,base_currency\nP1,One,rpf,own,EUX\n",
        2,
        "base_currency",
        "ISO 4217",
        id="bad-currency",
    ),
    pytest.param(
        "portfolio_id,name,policy,account\nP1,One,rpf,own\nP1,Again,rpf,client\n",
        3,
        "portfolio_id",
        "duplicate portfolio_id: row 2",
        id="duplicate-portfolio",
    ),
    pytest.param(
        "portfolio_id,name,policy,account\nP 1,One,rpf,own\n",
        2,
        "portfolio_id",
        "portfolio id",
        id="bad-portfolio-id",
    ),
]


@pytest.mark.parametrize(("body", "row", "column", "message"), PORTFOLIO_ERRORS)
async def test_portfolio_row_errors_reject_the_file(
    office: Office, body: str, row: int, column: str, message: str
) -> None:
    errors = await office.rejected("portfolios", body)
    assert (errors[0]["row"], errors[0]["column"]) == (row, column), errors
    assert message in errors[0]["msg"], errors


HOLDING_ERRORS = [
    pytest.param(
        f"NOPE,{APPLE},10,100,,,\n",
        2,
        "portfolio_id",
        "unknown portfolio 'NOPE'",
        id="unknown-portfolio",
    ),
    pytest.param(
        f"HOUSE,{APPLE},10,100,,,\nHOUSE,{APPLE_BAD_CHECK_DIGIT},10,100,,,\n",
        3,
        "isin",
        "check digit",
        id="bad-isin-check-digit",
    ),
    pytest.param(
        f"HOUSE,{APPLE},10,-100,,,\n",
        2,
        "market_value",
        "must say position=short",
        id="negative-value-on-a-long",
    ),
    pytest.param(
        f"HOUSE,{APPLE},-10,100,,,long\n",
        2,
        "quantity",
        "must say position=short",
        id="negative-quantity-on-a-long",
    ),
    pytest.param(
        f"HOUSE,{APPLE},-10,100,,,short\n",
        2,
        "market_value",
        "negative",
        id="positive-value-on-a-short",
    ),
    pytest.param(
        f"HOUSE,{APPLE},10,100,,,sideways\n",
        2,
        "position",
        "long, short",
        id="bad-position",
    ),
    pytest.param(
        f"HOUSE,{APPLE},ten,100,,,\n",
        2,
        "quantity",
        "not a number",
        id="bad-quantity",
    ),
    pytest.param(
        f"HOUSE,{APPLE},10,100,EUR,,\nHOUSE,{MICROSOFT},10,100,USD,,\n",
        3,
        "currency",
        "market_value must be in the portfolio's base currency EUR; this row says USD",
        id="not-the-base-currency",
    ),
    pytest.param(
        f"CL-1,{APPLE},10,100,EUR,,\nCL-1,{MICROSOFT},10,100,USD,,\n",
        3,
        "currency",
        "mixed currencies",
        id="mixed-currencies-without-a-base",
    ),
    pytest.param(
        f"HOUSE,{APPLE},10,100,XYZ,,\n",
        2,
        "currency",
        "ISO 4217",
        id="bad-currency",
    ),
    pytest.param(
        f"HOUSE,{APPLE},10,100,,,\nHOUSE,{APPLE},5,50,,,long\n",
        3,
        "portfolio_id",
        "duplicate portfolio_id, isin and position: row 2",
        id="duplicate-position",
    ),
]


@pytest.mark.parametrize(("body", "row", "column", "message"), HOLDING_ERRORS)
async def test_holding_row_errors_reject_the_file(
    office: Office, body: str, row: int, column: str, message: str
) -> None:
    errors = await office.rejected("holdings", HOLDINGS_HEADER + body)
    assert (errors[0]["row"], errors[0]["column"]) == (row, column), errors
    assert message in errors[0]["msg"], errors


async def test_one_portfolio_one_date_per_load(office: Office) -> None:
    errors = await office.rejected(
        "holdings",
        HOLDINGS_HEADER
        + f"HOUSE,{APPLE},10,100,,{days_ago(3)},\nCL-1,{APPLE},1,1,,{days_ago(5)},\n"
        + f"HOUSE,{MICROSOFT},10,100,,{days_ago(4)},\n",
    )
    assert [(e["row"], e["column"]) for e in errors] == [(4, "as_of")]
    assert "row 2" in errors[0]["msg"]
    assert days_ago(3) in errors[0]["msg"]


async def test_a_holdings_date_in_the_future_is_refused(office: Office) -> None:
    future = (today() + dt.timedelta(days=5)).isoformat()
    errors = await office.rejected(
        "holdings", HOLDINGS_HEADER + f"HOUSE,{APPLE},10,100,,{future},\n"
    )
    assert (errors[0]["row"], errors[0]["column"]) == (2, "as_of")
    assert "in the future" in errors[0]["msg"]


async def test_holdings_before_any_portfolio_load_are_refused(
    client: httpx.AsyncClient, steward: str
) -> None:
    response = await load(client, steward, "holdings", HOLDINGS_HEADER + f"P,{APPLE},1,1,,,\n")
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["column"] == "portfolio_id"
    assert await datasets(client, steward) == []


# ------------------------------------------------------------------------- sponsor list entries


async def test_sponsor_list_entries_load(office: Office) -> None:
    await load_universe(office.client, office.steward)
    loaded = await load_ok(
        office.client,
        office.steward,
        "list-entries",
        "policy,issuer_ref,list,reason,decided_on\n"
        f"rpf,SHELL,sponsor,The sponsoring employer,{days_ago(3)}\n",
    )
    assert loaded["summary"]["added"]["examples"] == [
        {"issuer_id": "SHELL", "list": "sponsor", "policy": "rpf"}
    ]
    assert FIXTURES.exists()


async def test_a_sponsor_entry_does_not_change_a_verdict(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    desk = await open_desk(client, make_key)
    await desk.clean("PMI")
    before = await desk.check("US7181721090")
    await load_ok(
        client,
        desk.steward,
        "list-entries",
        f"policy,issuer_ref,list,reason,decided_on\nrpf,PMI,sponsor,Sponsor,{days_ago(3)}\n",
    )
    after = await desk.check("US7181721090")
    assert after["verdict"] == before["verdict"]
