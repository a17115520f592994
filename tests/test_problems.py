"""Every error is RFC 9457 problem+json, with a request id and no internals."""

import httpx
import pytest
from fastapi import FastAPI

from app.auth.scopes import Scope
from app.kit.errors import Conflict
from tests.conftest import MakeKey, bearer
from tests.support.problems import assert_problem


class _SecretBug(RuntimeError):
    pass


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def boom() -> None:
        raise _SecretBug("password=hunter2 at /srv/app/internal.py line 42")

    async def conflict() -> None:
        raise Conflict("version 3 is already approved")

    app.add_api_route("/test/boom", boom)
    app.add_api_route("/test/conflict", conflict)
    return app


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/no-such-thing"), 404)
    assert body["instance"] == "/v1/no-such-thing"


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/healthz"), 405)


async def test_app_error_maps_to_its_status(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/test/conflict"), 409)
    assert body["type"] == "urn:mayhold:problem:conflict"
    assert body["detail"] == "version 3 is already approved"


async def test_unhandled_error_is_500_problem_without_internals(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/test/boom")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert "internal.py" not in response.text
    assert "Traceback" not in response.text
    assert "request id" in str(body["detail"])


async def test_unknown_query_parameter_is_422(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key(Scope.admin)
    body = assert_problem(await client.get("/v1/whoami?asof=2025-03-12", headers=bearer(key)), 422)
    assert body["errors"] == [
        {"loc": ["query", "asof"], "msg": "unknown query parameter; none are accepted"}
    ]


async def test_unknown_json_field_is_422(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key(Scope.admin)
    response = await client.post(
        "/v1/keys",
        json={"name": "x", "scopes": ["check"], "scope": "admin"},
        headers=bearer(key),
    )
    body = assert_problem(response, 422)
    assert body["errors"] == [
        {
            "loc": ["body", "scope"],
            "msg": "unknown field: remove it, or check its spelling against the API reference",
        }
    ]


async def test_malformed_json_is_422(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key(Scope.admin)
    response = await client.post(
        "/v1/keys",
        content=b'{"name": "x", ',
        headers={**bearer(key), "content-type": "application/json"},
    )
    assert_problem(response, 422)


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/v1/keys", b"[" * 20_000 + b"]" * 20_000, "application/json"),  # past the depth, < 64 KiB
        ("/v1/checks", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
        ("/v1/datasets?kind=issuers", b"--x\r\nbroken", "multipart/form-data"),  # no boundary
        ("/v1/datasets?kind=issuers", b"--x\r\nbroken", "multipart/form-data; boundary="),
    ],
)
async def test_unparseable_body_is_422_not_400(
    client: httpx.AsyncClient, make_key: MakeKey, path: str, body: bytes, content_type: str
) -> None:
    """The framework's own 400s (a body its parser gives up on) are invalid input: 422."""
    key = await make_key(Scope.admin)
    response = await client.post(
        path, content=body, headers={**bearer(key), "content-type": content_type}
    )
    problem = assert_problem(response, 422)
    assert problem["type"] == "urn:mayhold:problem:invalid-input"
    assert problem["errors"][0]["loc"] == ["body"]
    assert "request body cannot be read" in problem["detail"]


async def test_rejected_request_writes_nothing(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key(Scope.admin, name="admin")
    before = (await client.get("/v1/keys", headers=bearer(key))).json()
    response = await client.post(
        "/v1/keys", json={"name": "   ", "scopes": ["check"]}, headers=bearer(key)
    )
    assert_problem(response, 422)
    assert (await client.get("/v1/keys", headers=bearer(key))).json() == before


async def test_caller_request_id_is_echoed_and_bad_ones_replaced(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "order-4711"})
    assert response.headers["x-request-id"] == "order-4711"
    response = await client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_every_response_says_its_server_time(client: httpx.AsyncClient) -> None:
    """Server-Timing (W3C): the server's share of a round trip, e.g. for a pre-trade batch."""
    for response in (
        await client.get("/healthz"),
        await client.get("/v1/whoami"),  # a problem (401) too
    ):
        timing = response.headers["server-timing"]
        assert timing.startswith("app;dur="), timing
        assert 0 <= float(timing.removeprefix("app;dur=")) < 10_000
