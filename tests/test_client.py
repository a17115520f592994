"""The Python client (client/, ``mayhold_client``) against the real app, on both dialects:
``AsyncClient`` over the ASGI app in the test's transaction, ``Client`` against `mayhold serve`
in a process of its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import mayhold_client
import pytest
from fastapi import FastAPI
from mayhold_client import (
    AsyncClient,
    Client,
    Conflict,
    MayholdError,
    NotAuthenticated,
    NotFound,
    Order,
    PermissionDenied,
    ServiceUnavailable,
    ValidationError,
)
from mayhold_client.errors import error_from_response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.demo import SPONSOR_BOND, load_demo
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from tests.conftest import MakeKey, bearer
from tests.support.databases import DIALECTS, scratch_database
from tests.support.processes import serve

BASE = "http://mayhold.test"
COMPANIES = 120  # the demo universe, small: every rule still has an example


@pytest.fixture
async def examples(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessionmaker() as session:
        loaded = await load_demo(session, COMPANIES)
        await session.commit()
    return loaded


@pytest.fixture
async def mayhold(
    app: FastAPI, examples: dict[str, str], make_key: MakeKey
) -> AsyncIterator[AsyncClient]:
    key = await make_key(Scope.check, Scope.lists_read, Scope.decisions_read, name="oms")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http,
        AsyncClient(BASE, key, http=http) as client,
    ):
        yield client


async def test_check_answers_a_typed_decision(
    mayhold: AsyncClient, examples: dict[str, str]
) -> None:
    tobacco = await mayhold.check("rpf", instrument=examples["tobacco producer"])
    assert (tobacco.verdict, tobacco.may_hold) == ("excluded", False)
    assert tobacco.isin == examples["tobacco producer"]
    assert tobacco.policy.key == "rpf"
    assert tobacco.decided_at.tzinfo is not None
    evidence = [e for r in tobacco.reasons for e in r.evidence]
    assert any(e.metric == "revenue_pct.tobacco" and e.value for e in evidence)
    assert tobacco.raw["decision_id"] == tobacco.decision_id

    clean = await mayhold.check("rpf", instrument=examples["clean company"].lower())
    assert (clean.verdict, clean.may_hold, clean.reasons) == ("allowed", True, ())

    with pytest.raises(ValueError, match="timezone"):
        await mayhold.check("rpf", instrument=clean.isin or "", as_of=dt.datetime(2026, 1, 1))


async def test_batch_checks_keep_the_order_asked_and_judge_orders_in_a_portfolio(
    mayhold: AsyncClient, examples: dict[str, str]
) -> None:
    asked = [examples["clean company"], examples["tobacco producer"], examples["clean company"]]
    decisions = await mayhold.check_batch("dk-pension", instruments=asked)
    assert [d.isin for d in decisions] == asked
    assert len({d.decision_id for d in decisions}) == 3

    # The demo's sponsor limit (5 %): a small buy fits under it, a large one breaches it.
    small, large = await mayhold.check_batch(
        portfolio="PENSURA-DB",
        orders=[
            Order(SPONSOR_BOND, "buy", Decimal("150000")),
            Order(SPONSOR_BOND, "buy", 500_000),
        ],
    )
    assert small.may_hold is True
    assert large.may_hold is False
    assert small.raw["order"]["market_value"] is not None

    with pytest.raises(TypeError):
        await mayhold.check_batch("rpf", instruments=examples["clean company"])


async def test_problems_become_exceptions_with_the_problems_members(
    mayhold: AsyncClient, app: FastAPI, examples: dict[str, str], make_key: MakeKey
) -> None:
    with pytest.raises(NotFound) as missing:
        await mayhold.check("no-such-policy", instrument=examples["clean company"])
    assert missing.value.status == 404
    assert missing.value.title
    assert "no-such-policy" in missing.value.detail
    assert missing.value.type == "urn:mayhold:problem:not-found"

    with pytest.raises(ValidationError) as invalid:
        await mayhold.check("rpf", instrument="not an identifier")
    assert invalid.value.status == 422
    assert ("query", "instrument") in [e.loc for e in invalid.value.errors]

    with pytest.raises(NotFound):
        await mayhold.decision("00000000-0000-4000-8000-000000000000")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        wrong = AsyncClient(BASE, "mh_wrong", http=http)
        with pytest.raises(NotAuthenticated) as unauthenticated:
            await wrong.check("rpf", instrument=examples["clean company"])
        assert unauthenticated.value.status == 401
        reader = AsyncClient(BASE, await make_key(Scope.lists_read), http=http)
        with pytest.raises(PermissionDenied):
            await reader.check("rpf", instrument=examples["clean company"])
        with pytest.raises(ValidationError):  # a token that is not the service's
            await reader.download_list("rpf", since_token="not-a-token")


def test_status_picks_the_exception_and_any_body_is_kept() -> None:
    conflict = error_from_response(
        409, "Conflict", {"type": "t", "title": "Conflict", "status": 409, "detail": "stale"}, ""
    )
    assert isinstance(conflict, Conflict)
    assert (conflict.status, conflict.detail, conflict.errors) == (409, "stale", ())
    assert isinstance(error_from_response(503, "Unavailable", None, ""), ServiceUnavailable)
    proxy = error_from_response(502, "Bad Gateway", None, "<html>upstream down</html>")
    assert type(proxy) is MayholdError
    assert (proxy.status, proxy.type, proxy.detail) == (
        502,
        "about:blank",
        "<html>upstream down</html>",
    )


async def test_the_custodians_night_full_list_then_304_then_the_delta(
    mayhold: AsyncClient, client: httpx.AsyncClient, examples: dict[str, str], make_key: MakeKey
) -> None:
    first = await mayhold.download_list("rpf")
    assert not first.not_modified
    assert not first.delta
    assert first.rows
    assert all(r.change is None for r in first.rows)
    assert examples["tobacco producer"] in {r.isin for r in first.rows}
    assert all(r.verdict in ("excluded", "watch") and r.rule_ids for r in first.rows)
    issuers = await mayhold.download_list("rpf", level="issuer")
    assert issuers.rows
    assert all(r.isin is None for r in issuers.rows)

    unchanged = await mayhold.download_list("rpf", etag=first.token, since_token=first.token)
    assert (unchanged.not_modified, unchanged.rows, unchanged.token) == (True, (), first.token)
    assert (await mayhold.download_list("rpf", etag=first.etag)).not_modified

    # The policy owner excludes the clean company: the next night's delta has just that.
    clean = await mayhold.check("rpf", instrument=examples["clean company"])
    assert clean.issuer_id is not None
    entries = (
        "policy,issuer_ref,list,reason,decided_on\n"
        f"rpf,{clean.issuer_id},exclusion,Board decision,{dt.date.today().isoformat()}\n"
    )
    loaded = await client.post(
        "/v1/datasets",
        params={"kind": "list-entries"},
        content=entries,
        headers={**bearer(await make_key(Scope.data_write)), "Content-Type": "text/csv"},
    )
    assert loaded.status_code == 201, loaded.text

    delta = await mayhold.download_list("rpf", etag=first.token, since_token=first.token)
    assert (delta.not_modified, delta.delta) == (False, True)
    assert delta.token != first.token
    added = [r for r in delta.rows if r.change == "added"]
    assert examples["clean company"] in {r.isin for r in added}
    assert all(r.change in ("added", "removed", "changed") for r in delta.rows)
    assert len(delta.rows) < len(first.rows)


async def test_decisions_follow_the_cursor_and_match_what_was_answered(
    mayhold: AsyncClient, examples: dict[str, str]
) -> None:
    asked = [examples["tobacco producer"]] * 5
    answered = await mayhold.check_batch("rpf", instruments=asked)
    stored = [
        s async for s in mayhold.decisions(instrument=examples["tobacco producer"], page_size=2)
    ]
    assert [s.decision.decision_id for s in stored] == [d.decision_id for d in answered]
    assert [s.audit.seq for s in stored] == sorted(s.audit.seq for s in stored)
    assert stored[0].decision.raw == answered[0].raw  # exactly as returned
    assert stored[1].audit.prev_hash == stored[0].audit.hash or stored[1].audit.seq > (
        stored[0].audit.seq + 1
    )

    one = await mayhold.decision(answered[2].decision_id)
    assert one == stored[2]
    assert [s async for s in mayhold.decisions(verdict="allowed", policy="asr")] == []

    verified = await mayhold.verify_decisions()
    assert verified.ok
    assert verified.checked >= 5


# -- the blocking client against `mayhold serve` -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_blocking_client_against_the_running_service(
    dialect: str, tmp_path: Path
) -> None:
    async with scratch_database(dialect, tmp_path) as url:
        settings = Settings(database_url=url)
        await upgrade_to_head_async(settings)
        database = Database.from_settings(settings)
        try:
            async with database.sessionmaker() as session, session.begin():
                examples = await load_demo(session, COMPANIES)
                issued = await auth_service.create_key(
                    session,
                    name="custodian",
                    scopes=frozenset({Scope.check, Scope.lists_read, Scope.decisions_read}),
                )
        finally:
            await database.dispose()
        process, port = serve(url)
        try:
            # The blocking client blocks: in a thread, as an OMS would run it.
            await asyncio.to_thread(
                use_the_blocking_client, process, port, issued.key, examples, tmp_path
            )
        finally:
            process.terminate()
            process.wait(timeout=20)


def use_the_blocking_client(
    process: subprocess.Popen[Any],
    port: int,
    key: str,
    examples: dict[str, str],
    directory: Path,
) -> None:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        assert process.poll() is None, "server exited"
        time.sleep(0.2)

    with Client(base, key) as mayhold:
        decision = mayhold.check("rpf", instrument=examples["tobacco producer"])
        assert (decision.verdict, decision.may_hold) == ("excluded", False)
        batch = mayhold.check_batch(
            "rpf", instruments=[examples["clean company"], examples["tobacco producer"]]
        )
        assert [d.verdict for d in batch] == ["allowed", "excluded"]

        tonight = mayhold.download_list("rpf")
        assert examples["tobacco producer"] in {r.isin for r in tonight.rows}
        tomorrow = mayhold.download_list("rpf", etag=tonight.token, since_token=tonight.token)
        assert (tomorrow.not_modified, tomorrow.rows) == (True, ())

        stored = list(mayhold.decisions(page_size=1))
        assert [s.decision.decision_id for s in stored] == [
            decision.decision_id,
            *(d.decision_id for d in batch),
        ]
        assert mayhold.decision(decision.decision_id) == stored[0]
        assert mayhold.verify_decisions().ok
        with pytest.raises(NotFound):
            mayhold.download_list("no-such-policy")

    # The README's two Python blocks, as written, against this service.
    # mayhold_client from where this test imported it (installed, or client/ on the path).
    path = os.pathsep.join([str(Path(mayhold_client.__file__).parents[1]), *sys.path])
    env = {**os.environ, "PYTHONPATH": path, "MAYHOLD_URL": base, "MAYHOLD_KEY": key}
    oms = run_python(readme_block("The order-management system's pre-trade call"), env, directory)
    answers = [line for line in oms.splitlines() if not line.startswith(" ")]
    assert answers == ["True", "False", "excluded"]
    assert "  excluded: Sponsoring companies at most 5 %" in oms  # the breached limit, named
    custodian = readme_block("The custodian's night, in Python")
    first = run_python(custodian, env, directory)
    assert first.startswith(f"whole list: {len(tonight.rows)} rows")
    assert (directory / "rpf-list.json").exists()
    assert run_python(custodian, env, directory) == (
        f"unchanged: holding {len(tonight.rows)} instruments\n"
    )


def readme_block(after: str) -> str:
    """The first fenced code block after the line containing ``after`` in README.md."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    match = re.search(re.escape(after) + r".*?^```[a-z]*\n(.*?)^```", readme, re.S | re.M)
    assert match, f"no code block after {after!r}"
    return match.group(1)


def run_python(code: str, env: dict[str, str], directory: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
