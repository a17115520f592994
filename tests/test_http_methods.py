"""HTTP method semantics for every route at once (app/kit/middleware.py): HEAD for every GET,
OPTIONS naming every method of a path, 405 with a complete Allow. Both dialects."""

from __future__ import annotations

import copy
import re

import httpx
import pytest

from app.auth.scopes import Scope
from app.kit.settings import Settings
from app.main import create_app
from tests.conftest import MakeKey, bearer
from tests.support.checks import open_desk
from tests.support.datasets import load_ok
from tests.support.policies import post_document, shipped
from tests.support.problems import assert_problem

# Headers whose value is per response whatever the request (the rest must agree).
PER_RESPONSE = {"x-request-id", "server-timing", "date"}


def _get_operations() -> list[tuple[str, list[str]]]:
    """Every GET of the published OpenAPI document, with its required query parameters."""
    document = create_app(Settings()).openapi()
    return [
        (
            path,
            [
                p["name"]
                for p in ops["get"].get("parameters", ())
                if p["in"] == "query" and p.get("required")
            ],
        )
        for path, ops in document["paths"].items()
        if "get" in ops
    ]


async def _fixture_values(
    client: httpx.AsyncClient, make_key: MakeKey
) -> tuple[str, dict[str, str]]:
    """An admin key and a real value for each path and required query parameter (answers 200
    where the resource exists)."""
    desk = await open_desk(client, make_key)
    admin = await make_key(Scope.admin, name="admin")
    check = await client.get(
        "/v1/check",
        params={"policy": "rpf", "instrument": "US7181721090"},
        headers=bearer(desk.trader),
    )
    assert check.status_code == 200, check.text
    portfolios = "portfolio_id,name,policy,account\nHOUSE,House book,rpf,own\n"
    await load_ok(client, desk.steward, "portfolios", portfolios)
    published = await load_ok(
        client,
        desk.steward,
        "published-exclusions",
        "investor,company,criterion,decision,date\nKLP,Philip Morris,Tobacco,Exclusion,2015\n",
    )
    datasets = (await client.get("/v1/datasets", headers=bearer(admin))).json()
    # A draft version 2, so that a diff (against the previous version) has one to compare with.
    second = copy.deepcopy(shipped("rpf"))
    second["rules"] = second["rules"][1:]
    draft = await post_document(client, "rpf", second, bearer(admin))
    assert draft.json()["version"] == 2, draft.text
    values = {
        "country": "NL",
        "dataset_id": str(datasets[0]["id"]),
        "decision_id": check.json()["decision_id"],
        "entry_id": f"{published['id']}-2",
        "isin": "US7181721090",
        "issuer_id": "PMI",
        "portfolio_id": "HOUSE",
        "key": "rpf",
        "version": "2",
        "policy": "rpf",
        "instrument": "US7181721090",
    }
    return admin, values


async def test_every_get_answers_head_with_its_status_and_headers(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    admin, values = await _fixture_values(client, make_key)
    operations = _get_operations()
    assert len(operations) > 15
    statuses = {}
    for template, required in operations:
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        params = {name: values[name] for name in required}
        if template == "/v1/check":  # policy or portfolio, instrument or issuer: one of each
            params["policy"] = values["policy"]
            params["instrument"] = values["instrument"]
        for headers in (bearer(admin), {}):  # an answer and a problem (401 or the public probe)
            first = await client.get(path, params=params, headers=headers)
            head = await client.head(path, params=params, headers=headers)
            second = await client.get(path, params=params, headers=headers)
            assert head.status_code == first.status_code == second.status_code, template
            assert head.content == b"", template
            assert set(head.headers) == set(first.headers), template
            for name, value in first.headers.items():
                if name not in PER_RESPONSE and second.headers.get(name) == value:
                    assert head.headers[name] == value, (template, name)
            statuses[template, bool(headers)] = head.status_code
    # Real resources behind each GET: no route only tested through its 404.
    assert {t: s for (t, authed), s in statuses.items() if authed and s != 200} == {}


async def test_options_names_every_method_of_a_path(client: httpx.AsyncClient) -> None:
    keys = await client.options("/v1/keys")
    assert keys.status_code == 204
    assert keys.content == b""
    assert keys.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert (await client.options("/v1/checks")).headers["allow"] == "OPTIONS, POST"
    assert_problem(await client.options("/v1/no-such-thing"), 404)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/keys", "GET, HEAD, OPTIONS, POST"),
        ("PUT", "/v1/keys", "GET, HEAD, OPTIONS, POST"),
        ("GET", "/v1/checks", "OPTIONS, POST"),
        ("HEAD", "/v1/checks", "OPTIONS, POST"),
        ("DELETE", "/healthz", "GET, HEAD, OPTIONS"),
    ],
)
async def test_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert_problem(response, 405)
