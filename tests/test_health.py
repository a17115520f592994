"""Liveness, readiness (reachable and migrated), recovery, metrics."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.main import create_app
from tests.conftest import MakeKey, bearer
from tests.support.databases import POSTGRES_ADMIN_URL, scratch_database
from tests.support.problems import assert_problem
from tests.support.tcp_proxy import TcpProxy


async def _client_for(url: str) -> tuple[httpx.AsyncClient, Database]:
    settings = Settings(database_url=url, readiness_timeout=2.0, database_connect_timeout=1.0)
    database = Database.from_settings(settings)
    app = create_app(settings, database)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"), database


async def test_healthz_needs_no_key_and_no_database(tmp_path: Path) -> None:
    client, database = await _client_for(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    async with client:
        response = await client.get("/healthz")
    await database.dispose()
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_ok_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] in {"postgresql", "sqlite"}
    assert body["revision"]


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
async def test_readyz_503_when_not_migrated(dialect: str, tmp_path: Path) -> None:
    async with scratch_database(dialect, tmp_path) as url:
        client, database = await _client_for(url)
        async with client:
            body = assert_problem(await client.get("/readyz"), 503)
        await database.dispose()
    assert "mayhold migrate" in str(body["detail"])


async def test_readyz_503_when_sqlite_file_unreachable(tmp_path: Path) -> None:
    client, database = await _client_for(f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db")
    async with client:
        assert_problem(await client.get("/readyz"), 503)
    await database.dispose()


@pytest.fixture
async def proxied_postgres(tmp_path: Path) -> AsyncIterator[tuple[TcpProxy, str, str]]:
    """A migrated Postgres database reached through a proxy the test can switch off."""
    async with scratch_database("postgresql", tmp_path) as direct_url:
        await upgrade_to_head_async(Settings(database_url=direct_url))
        setup = Database.from_settings(Settings(database_url=direct_url))
        async with setup.sessionmaker() as session, session.begin():
            issued = await auth_service.create_key(
                session, name="probe", scopes=frozenset({Scope.check})
            )
        await setup.dispose()
        target = make_url(POSTGRES_ADMIN_URL)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
        await proxy.start()
        proxied = make_url(direct_url).set(host="127.0.0.1", port=proxy.port)
        try:
            yield proxy, proxied.render_as_string(hide_password=False), issued.key
        finally:
            await proxy.stop()


async def test_database_outage_gives_503_and_the_service_recovers(
    proxied_postgres: tuple[TcpProxy, str, str],
) -> None:
    proxy, url, key = proxied_postgres
    client, database = await _client_for(url)
    async with client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/whoami", headers=bearer(key))).status_code == 200

        await proxy.stop()  # the database goes away, with connections already in the pool
        body = assert_problem(await client.get("/readyz"), 503)
        assert "unreachable" in str(body["detail"])
        # (whoami may answer from the short-lived key cache; a data endpoint must read)
        body = assert_problem(await client.get("/v1/datasets", headers=bearer(key)), 503)
        assert body["type"] == "urn:mayhold:problem:database-unavailable"
        assert (await client.get("/healthz")).status_code == 200  # the process is still up

        await proxy.start()  # it comes back on the same port: no restart of the service
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/datasets", headers=bearer(key))).status_code == 200
    await database.dispose()


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    await client.get("/healthz")
    await client.get("/v1/no-such-thing")
    response = await client.get("/metrics", headers=bearer(await make_key(Scope.metrics_read)))
    assert response.status_code == 200
    text = response.text
    assert 'mayhold_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "mayhold_http_request_duration_seconds_bucket" in text
    assert "/v1/no-such-thing" not in text  # raw paths never become labels
