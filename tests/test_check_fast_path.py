"""GET /v1/check's fast path (app/screening/fast_path.py) answers exactly as the route does.

Every request here is sent twice to the same app: once as it comes (the fast path answers it
if it can) and once with the fast path declining (the route answers), with the same request
id; status, the headers that matter and the body must be the same (a decision's id and times
aside: each answer is a new logged decision). Each case also says which path answered it.
Both dialects (the conftest's ``client``); the compiled index's path on a demo database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from app.kit.metrics import HTTP_REQUESTS
from app.kit.settings import Settings
from app.screening import fast_path
from app.screening.endpoints import answer_check
from app.screening.index import VerdictIndex
from tests.conftest import MakeKey, bearer
from tests.support.checks import Desk, open_desk
from tests.support.databases import DIALECTS
from tests.support.index import demo_database, running

# Headers whose values must agree (date and server-timing differ by nature).
COMPARED_HEADERS = ("content-type", "x-request-id", "www-authenticate", "retry-after", "allow")
VOLATILE = ("decision_id", "decided_at", "as_of")
PMI = "US7181721090"


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    # Keys stay cached for the whole test (the fast path answers only for a cached key).
    return Settings(database_url=migrated_url, index_enabled=False, auth_cache_seconds=600)


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    desk = await open_desk(client, make_key)
    await desk.clean("PMI")
    await desk.check(PMI)  # the trader's key is now verified and cached
    return desk


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {name: response.headers.get(name, "") for name in COMPARED_HEADERS}
    if response.request.method == "HEAD" or not response.content:
        return response.status_code, headers, response.content
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    if response.status_code == 200:
        body = {k: v for k, v in body.items() if k not in VOLATILE}
    return response.status_code, headers, body


async def both(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, str] | str,
    headers: dict[str, str],
    *,
    method: str = "GET",
    content: bytes | None = None,
) -> tuple[httpx.Response, httpx.Response, bool]:
    """The answer as it comes, the route's answer, and whether the fast path gave the first."""
    calls: list[object] = []
    answer = answer_check

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await answer(*args, **kwargs)

    url = "/v1/check" + (f"?{params}" if isinstance(params, str) else "")
    query = params if isinstance(params, dict) else None
    sent = {**headers, "X-Request-Id": "fast-path-test"}
    with monkeypatch.context() as patched:
        patched.setattr(fast_path, "answer_check", counted)
        fast = await client.request(method, url, params=query, headers=sent, content=content)
    with monkeypatch.context() as patched:
        declining: Callable[[Any], None] = lambda scope: None  # noqa: E731
        patched.setattr(fast_path, "_parameters", declining)
        patched.setattr(fast_path, "answer_check", counted)
        calls_before = len(calls)
        regular = await client.request(method, url, params=query, headers=sent, content=content)
        assert len(calls) == calls_before, "the fast path answered when told to decline"
    assert comparable(fast) == comparable(regular), (fast.text, regular.text)
    return fast, regular, bool(calls)


async def test_valid_checks_are_answered_by_the_fast_path_as_by_the_route(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    await desk.clean("BATS")
    past = dt.datetime.now(dt.UTC).isoformat()  # after the loads: the same data, as of then
    await asyncio.sleep(0.01)
    for params in (
        {"policy": "rpf", "instrument": PMI},
        {"policy": "rpf", "instrument": "GB0002875804"},
        {"policy": "rpf", "instrument": "US0378331005"},  # no such instrument: unknown
        {"policy": "rpf", "instrument": PMI, "as_of": past},
        {"policy": "rpf", "issuer": "PMI"},
        {"policy": "rpf", "issuer": "NOSUCHISSUER"},
    ):
        fast, _, by_fast_path = await both(desk.client, monkeypatch, params, bearer(desk.trader))
        assert fast.status_code == 200, fast.text
        assert by_fast_path, params
    excluded, _, _ = await both(
        desk.client, monkeypatch, {"policy": "rpf", "instrument": PMI}, bearer(desk.trader)
    )
    assert excluded.json()["verdict"] in {"allowed", "excluded"}
    assert excluded.json()["requested_isin"] == PMI


BAD_QUERIES: list[tuple[str, int, bool]] = [
    # (query string, status, whether the fast path answers: the errors answer_check raises,
    # after the parameters' own validation, which only the route reports)
    ("", 422, True),
    ("instrument=US7181721090", 422, True),  # neither policy nor portfolio
    ("policy=rpf", 422, True),  # neither instrument nor issuer
    ("policy=rpf&instrument=US7181721090&issuer=PMI", 422, True),
    ("policy=rpf&instrument=", 422, False),
    ("policy=&instrument=US7181721090", 422, False),
    ("policy=rpf&instrument=" + "X" * 65, 422, False),
    ("policy=rpf&instrument=US71817%0021090", 422, False),
    ("policy=rp%01f&instrument=US7181721090", 422, False),
    ("policy=rpf&instrument=%ED%A0%80", 422, True),  # not UTF-8: U+FFFD, no ISIN
    ("policy=rpf&instrument=US7181721090&as_of=2025", 422, False),
    ("policy=rpf&instrument=US7181721090&as_of=2025-02-30T00:00:00Z", 422, False),
    ("policy=rpf&instrument=US7181721090&as_of=2025-03-12T09:30:00", 422, False),
    ("policy=rpf&instrument=US7181721090&as_of=2999-01-01T00:00:00Z", 422, True),
    ("policy=rpf&instrument=US7181721090&asof=2025-03-12T09:30:00Z", 422, False),
    ("policy=rpf&instrument=US7181721090&instrument=GB0002875804", 200, False),
    ("policy=rpf&policy=rpf&instrument=US7181721090", 200, False),
    ("policy=rpf&instrument=US7181721091", 422, True),  # check digit
    ("policy=nosuchpolicy&instrument=US7181721090", 404, True),
    ("portfolio=NOSUCHPORTFOLIO&instrument=US7181721090", 404, True),
    ("policy=rpf&issuer=5493001KJTIIGC8Y1R13", 422, True),  # LEI-shaped, bad check digits
]


@pytest.mark.parametrize(("query", "status", "fast"), BAD_QUERIES)
async def test_bad_input_is_refused_exactly_as_by_the_route(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, query: str, status: int, fast: bool
) -> None:
    response, _, by_fast_path = await both(desk.client, monkeypatch, query, bearer(desk.trader))
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == "fast-path-test"
    assert by_fast_path is fast


async def test_keys_the_route_refuses_are_the_routes_to_refuse(
    desk: Desk, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = {"policy": "rpf", "instrument": PMI}
    lists_only = await make_key(Scope.lists_read, name="custodian")
    await desk.client.get("/v1/lists/rpf", headers=bearer(lists_only))  # cached, wrong scope
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": f"Basic {desk.trader}"}, 401),
        ({"Authorization": "Bearer mh_000000000000_nope"}, 401),
        ({"Authorization": f"Bearer {desk.trader}x"}, 401),
        (bearer(lists_only), 403),
        (bearer(desk.auditor), 403),
    ):
        response, _, by_fast_path = await both(desk.client, monkeypatch, query, headers)
        assert response.status_code == status, (headers, response.text)
        assert not by_fast_path
    # Scheme in any case, extra spaces: read as HTTPBearer reads them, answered fast.
    for header in (f"bearer {desk.trader}", f"BEARER  {desk.trader} "):
        response, _, by_fast_path = await both(
            desk.client, monkeypatch, query, {"Authorization": header}
        )
        assert response.status_code == 200, response.text
        assert by_fast_path


async def test_a_revoked_key_is_refused_at_once(
    desk: Desk, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_key(Scope.admin, name="admin")
    query = {"policy": "rpf", "instrument": PMI}
    revoked = await desk.client.post("/v1/keys/oms/revoke", headers=bearer(admin))
    assert revoked.status_code in {200, 204}, revoked.text
    response, _, by_fast_path = await both(desk.client, monkeypatch, query, bearer(desk.trader))
    assert response.status_code == 401, response.text
    assert not by_fast_path


async def test_head_and_a_request_with_a_body(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    query = {"policy": "rpf", "instrument": PMI}
    head, _, by_fast_path = await both(
        desk.client, monkeypatch, query, bearer(desk.trader), method="HEAD"
    )
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert by_fast_path
    bad_head, _, _ = await both(
        desk.client, monkeypatch, "policy=rpf", bearer(desk.trader), method="HEAD"
    )
    assert bad_head.status_code == 422
    assert bad_head.content == b""
    # A body on a GET is the route's business (its size limit): passed on.
    with_body, _, by_fast_path = await both(
        desk.client, monkeypatch, query, bearer(desk.trader), content=b"x" * 100
    )
    assert with_body.status_code == 200
    assert not by_fast_path


async def test_access_metrics_name_the_route_and_the_method(desk: Desk) -> None:
    def count(method: str) -> float:
        return float(HTTP_REQUESTS.labels(method, "/v1/check", "200")._value.get())

    before_get, before_head = count("GET"), count("HEAD")
    query = {"policy": "rpf", "instrument": PMI}
    assert (
        await desk.client.get("/v1/check", params=query, headers=bearer(desk.trader))
    ).is_success
    assert (
        await desk.client.head("/v1/check", params=query, headers=bearer(desk.trader))
    ).is_success
    assert (count("GET"), count("HEAD")) == (before_get + 1, before_head + 1)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_compiled_index_answers_through_the_fast_path_as_through_the_route(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with demo_database(dialect, tmp_path) as (url, key, isins), running(url) as (app, client):
        index: VerdictIndex = app.state.verdict_index
        deadline = time.monotonic() + 60
        while index.builds == 0:  # the first checks start the build
            response, _, _ = await both(
                client, monkeypatch, {"policy": "rpf", "instrument": isins[0]}, bearer(key)
            )
            assert response.status_code == 200, response.text
            assert time.monotonic() < deadline, "the index was never compiled"
            await asyncio.sleep(0.1)
        verdicts = set()
        for isin in isins:
            response, _, by_fast_path = await both(
                client, monkeypatch, {"policy": "rpf", "instrument": isin}, bearer(key)
            )
            if not by_fast_path:  # the key's cache entry expired (5 s): the route renewed it
                response, _, by_fast_path = await both(
                    client, monkeypatch, {"policy": "rpf", "instrument": isin}, bearer(key)
                )
            assert response.status_code == 200, response.text
            assert by_fast_path
            verdicts.add(response.json()["verdict"])
        assert verdicts == {"allowed", "watch", "excluded", "unknown"}
