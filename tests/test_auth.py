from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.dependencies import Authorize
from app.auth.schemas import Principal
from app.auth.scopes import Scope, parse_scopes
from tests.conftest import MakeKey, bearer
from tests.support.problems import assert_problem

SCOPED = [s for s in Scope if s is not Scope.admin]


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    """The real app plus one probe route per scope, to exercise the scope check for each."""
    probes = APIRouter(prefix="/probe")
    for scope in Scope:

        def make_probe(s: Scope) -> None:
            @probes.get(f"/{s.value}")
            async def probe(principal: Annotated[Principal, Depends(Authorize(s))]) -> str:
                return principal.name

        make_probe(scope)
    app.include_router(probes)
    return app


async def test_no_key_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/whoami")
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in str(body["detail"])


@pytest.mark.parametrize(
    "header",
    [
        "Bearer mh_000000000000_not-the-secret",  # well-formed, unknown key
        "Bearer not-a-mayhold-key",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
async def test_wrong_key_is_401(client: httpx.AsyncClient, header: str) -> None:
    assert_problem(await client.get("/v1/whoami", headers={"Authorization": header}), 401)


async def test_right_public_id_wrong_secret_is_401(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key(Scope.check)
    prefix, public_id, secret = key.split("_", 2)
    forged = f"{prefix}_{public_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    assert_problem(await client.get("/v1/whoami", headers=bearer(forged)), 401)
    assert (await client.get("/v1/whoami", headers=bearer(key))).status_code == 200


async def test_right_key_identifies_the_caller(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key(Scope.check, Scope.lists_read, name="oms-desk-1")
    response = await client.get("/v1/whoami", headers=bearer(key))
    assert response.status_code == 200
    assert response.json()["name"] == "oms-desk-1"
    assert response.json()["scopes"] == ["check", "lists:read"]


@pytest.mark.parametrize("held", SCOPED, ids=[s.value for s in SCOPED])
async def test_each_scope_opens_only_its_own_endpoints(
    client: httpx.AsyncClient, make_key: MakeKey, held: Scope
) -> None:
    key = await make_key(held)
    for wanted in Scope:
        response = await client.get(f"/probe/{wanted.value}", headers=bearer(key))
        if wanted is held:
            assert response.status_code == 200, response.text
        else:
            body = assert_problem(response, 403)
            assert wanted.value in str(body["detail"])


async def test_admin_implies_every_scope(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key(Scope.admin)
    for wanted in Scope:
        assert (await client.get(f"/probe/{wanted.value}", headers=bearer(key))).status_code == 200


async def test_revoked_key_stops_working(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    admin = await make_key(Scope.admin, name="admin")
    victim = await make_key(Scope.check, name="to-revoke")
    assert (await client.get("/v1/whoami", headers=bearer(victim))).status_code == 200
    response = await client.post("/v1/keys/to-revoke/revoke", headers=bearer(admin))
    assert response.status_code == 204
    body = assert_problem(await client.get("/v1/whoami", headers=bearer(victim)), 401)
    assert "revoked" in str(body["detail"])


async def test_keys_endpoints_need_admin(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key(Scope.check, Scope.data_write, Scope.policies_approve)
    assert_problem(await client.get("/v1/keys", headers=bearer(key)), 403)
    assert_problem(
        await client.post("/v1/keys", json={"name": "x", "scopes": ["check"]}, headers=bearer(key)),
        403,
    )


async def test_created_key_works_and_is_stored_only_as_a_hash(
    client: httpx.AsyncClient, make_key: MakeKey, connection: AsyncConnection
) -> None:
    admin = await make_key(Scope.admin)
    response = await client.post(
        "/v1/keys", json={"name": "custodian", "scopes": ["lists:read"]}, headers=bearer(admin)
    )
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["key"]
    assert created["scopes"] == ["lists:read"]
    assert (await client.get("/v1/whoami", headers=bearer(key))).json()["name"] == "custodian"

    # The plain key, or its secret part, must appear nowhere in the database.
    secret = key.split("_", 2)[2]
    tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert "api_keys" in tables
    seen_rows = 0
    for table in tables:
        for row in await connection.execute(text(f'SELECT * FROM "{table}"')):
            seen_rows += 1
            dumped = " ".join(str(value) for value in row)
            assert key not in dumped
            assert secret not in dumped
    assert seen_rows >= 2

    listed = (await client.get("/v1/keys", headers=bearer(admin))).json()
    assert {k["name"] for k in listed} >= {"custodian"}
    assert all("key" not in k and "secret_hash" not in k for k in listed)


async def test_duplicate_key_name_is_409(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    admin = await make_key(Scope.admin, name="root")
    response = await client.post(
        "/v1/keys", json={"name": "root", "scopes": ["check"]}, headers=bearer(admin)
    )
    assert_problem(response, 409)


async def test_unknown_scope_is_422(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    admin = await make_key(Scope.admin)
    response = await client.post(
        "/v1/keys", json={"name": "x", "scopes": ["superuser"]}, headers=bearer(admin)
    )
    body = assert_problem(response, 422)
    assert body["errors"]


def test_parse_scopes_rejects_unknown_names() -> None:
    assert parse_scopes("check, lists:read") == {Scope.check, Scope.lists_read}
    with pytest.raises(ValueError, match="superuser"):
        parse_scopes("check,superuser")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")


async def test_a_revocation_elsewhere_takes_effect_within_the_cache_time(
    app: FastAPI, client: httpx.AsyncClient, make_key: MakeKey, sessionmaker: Any
) -> None:
    """Another process revokes the key in the database: honoured once the cache entry ages out."""
    import asyncio

    from app.auth import service as auth_service

    app.state.key_cache = auth_service.KeyCache(0.3)
    key = await make_key(Scope.check, name="desk-to-revoke")
    assert (await client.get("/v1/whoami", headers=bearer(key))).status_code == 200
    async with sessionmaker() as session:
        await auth_service.revoke_key(session, "desk-to-revoke")  # not through this app
        await session.commit()
    assert (await client.get("/v1/whoami", headers=bearer(key))).status_code == 200  # cached
    await asyncio.sleep(0.35)
    assert_problem(await client.get("/v1/whoami", headers=bearer(key)), 401)


async def test_the_last_active_admin_key_cannot_be_revoked(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    root = bearer(await make_key(Scope.admin, name="root"))
    await make_key(Scope.check, name="desk")
    body = assert_problem(await client.post("/v1/keys/root/revoke", headers=root), 409)
    assert "last active admin key" in str(body["detail"])
    assert (await client.get("/v1/whoami", headers=root)).status_code == 200  # still works
    # With another admin key, an admin key may revoke itself...
    second = bearer(await make_key(Scope.admin, name="second"))
    assert (await client.post("/v1/keys/root/revoke", headers=root)).status_code == 204
    assert (await client.get("/v1/whoami", headers=root)).status_code == 401
    # ...but the remaining one is the last again, while other keys may still go.
    body = assert_problem(await client.post("/v1/keys/second/revoke", headers=second), 409)
    assert "Create another admin key first" in str(body["detail"])
    assert (await client.post("/v1/keys/desk/revoke", headers=second)).status_code == 204
    assert (await client.get("/v1/whoami", headers=second)).status_code == 200
