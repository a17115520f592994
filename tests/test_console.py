"""The auditor's console over HTTP (httpx against the ASGI app, both dialects): sign-in and the
session cookie, form tokens (CSRF), scopes, and what each page shows of real decisions.

The browser drives the same pages in ``tests/test_console_browser.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from html import unescape
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.console.sessions import SESSION_COOKIE, SESSION_LIFETIME, SIGN_IN_COOKIE
from app.models import ConsoleSession
from tests.conftest import MakeKey, bearer
from tests.support.checks import Desk, open_desk
from tests.support.datasets import load_ok
from tests.support.policies import approve, post_document, shipped

PMI = "US7181721090"
BATS = "GB0002875804"
PORTFOLIOS = "portfolio_id,name,policy,account\nHOUSE,House book,rpf,own\n"

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html
    return found.group(1)


def text_of(html: str) -> str:
    """The page's text, tags dropped and whitespace collapsed (what a reader sees)."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


async def sign_in(client: httpx.AsyncClient, key: str, next_path: str = "") -> httpx.Response:
    page = await client.get("/console/sign-in", params={"next": next_path} if next_path else {})
    assert page.status_code == 200, page.text
    return await client.post(
        "/console/sign-in",
        data={"csrf_token": form_token(page.text), "api_key": key, "next": next_path},
    )


async def signed_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign in; the session's form token (from the console's home page)."""
    response = await sign_in(client, key)
    assert response.status_code == 303, response.text
    home = await client.get("/console")
    assert home.status_code == 200, home.text
    return form_token(home.text)


async def session_rows(sessions: async_sessionmaker[AsyncSession]) -> list[ConsoleSession]:
    async with sessions() as session:
        return list((await session.execute(select(ConsoleSession))).scalars())


class Audit:
    def __init__(self, desk: Desk, auditor: str, excluded: dict[str, Any], tobacco: int) -> None:
        self.desk = desk
        self.auditor = auditor
        self.excluded = excluded
        self.tobacco = tobacco


@pytest.fixture
async def audit(client: httpx.AsyncClient, make_key: MakeKey) -> Audit:
    desk = await open_desk(client, make_key)
    await desk.clean("PMI")
    tobacco = await desk.facts("PMI", "iss", {"revenue_pct.tobacco": "96.4"})
    await desk.clean("BATS")
    excluded = await desk.check(PMI)
    assert excluded["verdict"] == "excluded"
    assert (await desk.check(BATS))["verdict"] == "allowed"
    auditor = await make_key(Scope.decisions_read, Scope.lists_read, name="console-auditor")
    return Audit(desk, auditor, excluded, tobacco)


# -- sessions --------------------------------------------------------------------------------


async def test_without_a_session_every_page_sends_to_sign_in(client: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/decisions", "/console/lists", "/console/verify"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/sign-in"), path
    response = await client.get("/console/decisions")
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fdecisions"
    # A forged cookie is no session either.
    client.cookies.set(SESSION_COOKIE, "forged", path="/console")
    assert (await client.get("/console/decisions")).status_code == 303


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    key = await make_key(Scope.decisions_read, name="auditor")
    response = await sign_in(client, key, "/console/decisions")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/decisions"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "path=/console" in cookie.lower()
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    token = cookie.split(";")[0].split("=", 1)[1]
    (row,) = await session_rows(sessionmaker)
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()  # only the hash
    assert row.key_name == "auditor"
    assert row.ended_at is None

    page = await client.get("/console/decisions")
    assert page.status_code == 200
    assert "Signed in as auditor" in text_of(page.text)
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"]  # no script at all

    signed_out = await client.post("/console/sign-out", data={"csrf_token": form_token(page.text)})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/console/sign-in?signed_out=1"
    (row,) = await session_rows(sessionmaker)
    assert row.ended_at is not None
    assert row.ended_why == "signed-out"
    # The old cookie, sent again, is no session.
    client.cookies.set(SESSION_COOKIE, token, path="/console")
    assert (await client.get("/console/decisions")).status_code == 303


async def test_over_https_the_cookie_is_secure(app: FastAPI, make_key: MakeKey) -> None:
    key = await make_key(Scope.decisions_read, name="auditor")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://mayhold.test"
        ) as secure,
    ):
        response = await sign_in(secure, key)
        assert response.status_code == 303, response.text
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
        )
        assert "secure" in {part.strip().lower() for part in cookie.split(";")}


async def test_a_wrong_key_is_told_on_the_sign_in_page_and_opens_no_session(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await make_key(Scope.decisions_read, name="auditor")
    for wrong in ("mh_000000000000_nope", "not a key", "mh_" + "\x00" * 5):
        response = await sign_in(client, wrong)
        assert response.status_code == 401, wrong
        assert "The API key is not valid." in text_of(response.text)
        assert "<h1>Sign in" in response.text
        assert SESSION_COOKIE + "=" not in response.headers.get("set-cookie", "")
    blank = await sign_in(client, "")
    assert blank.status_code == 422
    assert "Enter your API key." in blank.text
    assert await session_rows(sessionmaker) == []


async def test_a_revoked_key_ends_its_sessions_at_the_next_request(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    key = await make_key(Scope.decisions_read, name="auditor")
    await signed_in(client, key)
    async with sessionmaker() as session:
        await auth_service.revoke_key(session, "auditor")
        await session.commit()
    response = await client.get("/console/decisions")
    assert response.status_code == 303
    (row,) = await session_rows(sessionmaker)
    assert row.ended_why == "key-revoked"
    # And it cannot sign in again.
    again = await sign_in(client, key)
    assert again.status_code == 401
    assert "revoked" in again.text


async def test_every_post_needs_this_sessions_form_token(
    client: httpx.AsyncClient, audit: Audit, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = await signed_in(client, audit.auditor)
    decision = audit.excluded["decision_id"]
    for data in ({}, {"csrf_token": "x" * 43}, {"csrf_token": token[:-1]}):
        for path in ("/console/sign-out", f"/console/decisions/{decision}/replay"):
            refused = await client.post(path, data=data)
            assert refused.status_code == 403, (path, data)
            assert "Form expired or not ours" in refused.text
    (row,) = await session_rows(sessionmaker)
    assert row.ended_at is None  # the refused sign-out did nothing

    # Sign-in's own form: the value in its cookie and in the form must agree.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://mayhold.test")
    async with other:
        forged = await other.post(
            "/console/sign-in", data={"csrf_token": "forged", "api_key": audit.auditor}
        )
        assert forged.status_code == 403
        other.cookies.set(SIGN_IN_COOKIE, "a" * 43, path="/console")
        forged = await other.post(
            "/console/sign-in", data={"csrf_token": "b" * 43, "api_key": audit.auditor}
        )
        assert forged.status_code == 403
    assert len(await session_rows(sessionmaker)) == 1


async def test_the_keys_scopes_decide_what_is_shown(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key(Scope.check, name="desk")
    await signed_in(client, key)
    home = text_of((await client.get("/console")).text)
    assert "Policies" in home
    assert "Datasets" in home
    assert "Verify" not in home
    assert "Lists" not in home
    assert "no decisions:read scope" in home
    for path in ("/console/decisions", "/console/verify", "/console/lists"):
        refused = await client.get(path)
        assert refused.status_code == 403, path
        assert "lacks the scope" in text_of(refused.text)


# -- decisions -------------------------------------------------------------------------------


async def test_search_finds_decisions_newest_first_by_each_filter(
    client: httpx.AsyncClient, audit: Audit, make_key: MakeKey
) -> None:
    desk = audit.desk
    tagged = await client.get(
        "/v1/check",
        params={"policy": "rpf", "instrument": BATS},
        headers={**bearer(desk.trader), "X-Request-ID": "trade-4711"},
    )
    assert tagged.status_code == 200
    await load_ok(client, desk.steward, "portfolios", PORTFOLIOS)
    in_portfolio = await client.get(
        "/v1/check", params={"portfolio": "HOUSE", "instrument": PMI}, headers=bearer(desk.trader)
    )
    assert in_portfolio.status_code == 200, in_portfolio.text
    await signed_in(client, audit.auditor)

    def ids(html: str) -> list[str]:
        return re.findall(r'href="/console/decisions/([0-9a-f-]{36})"', html)

    everything = await client.get("/console/decisions")
    assert everything.status_code == 200
    found = ids(everything.text)
    assert len(found) == 4
    assert found[-1] == audit.excluded["decision_id"]  # the oldest last
    assert found[0] == in_portfolio.json()["decision_id"]  # the newest first

    async def search(**params: str) -> list[str]:
        response = await client.get("/console/decisions", params=params)
        assert response.status_code == 200, response.text
        return ids(response.text)

    assert await search(instrument=PMI.lower()) == [found[0], found[3]]
    assert await search(issuer="BATS") == [found[1], found[2]]
    assert await search(verdict="excluded") == [found[0], found[3]]
    assert await search(request_id="trade-4711") == [tagged.json()["decision_id"]]
    assert await search(portfolio="HOUSE") == [found[0]]
    assert await search(portfolio="HOUSE%") == []  # a pattern character is only a character
    assert await search(policy="asr") == []
    assert await search(**{"from": "2000-01-01T00:00", "to": "2100-01-01T00:00"}) == found

    refused = await client.get("/console/decisions", params={"from": "yesterday"})
    assert refused.status_code == 422
    assert "from: not a time" in text_of(refused.text)
    assert (await client.get("/console/decisions", params={"verdict": "maybe"})).status_code == 422
    unknown_param = await client.get("/console/decisions", params={"isin": PMI})
    assert unknown_param.status_code == 404  # an address this page does not have


async def test_search_pages_with_a_cursor(
    client: httpx.AsyncClient, audit: Audit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.console import service

    monkeypatch.setattr(service, "SEARCH_PAGE", 1)
    await signed_in(client, audit.auditor)
    first = await client.get("/console/decisions")
    assert "Older decisions" in first.text
    link = re.search(r'href="(/console/decisions\?before=\d+)"', first.text)
    assert link is not None
    second = await client.get(link.group(1).replace("&amp;", "&"))
    assert audit.excluded["decision_id"] in second.text
    assert "Older decisions" not in second.text


async def test_a_decision_page_explains_the_decision(
    client: httpx.AsyncClient, audit: Audit
) -> None:
    await signed_in(client, audit.auditor)
    decision_id = audit.excluded["decision_id"]
    response = await client.get(f"/console/decisions/{decision_id}")
    assert response.status_code == 200, response.text
    page = text_of(response.text)
    rule = next(r for r in shipped("rpf")["rules"] if r["id"] == "tobacco")
    assert "EXCLUDED" in page.upper()
    assert "May hold: no" in page
    assert rule["title"] in page
    assert rule["source"] in page
    assert rule["note"] in page
    assert "rpf version 1" in page
    assert 'href="/console/policies/rpf/versions/1"' in response.text
    assert "PMI the issuer itself" in page  # the via chain
    assert f'href="/console/datasets/{audit.tobacco}"' in response.text
    assert "iss revenue_pct.tobacco 96.4 > 50" in page
    assert "This record is intact" in page
    assert response.text.count("<h1") == 1

    missing = await client.get(f"/console/decisions/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "There is no decision" in missing.text
    assert (await client.get("/console/decisions/not-an-id")).status_code == 404


async def test_replay_shows_the_recomputation(client: httpx.AsyncClient, audit: Audit) -> None:
    token = await signed_in(client, audit.auditor)
    decision_id = audit.excluded["decision_id"]
    replayed = await client.post(
        f"/console/decisions/{decision_id}/replay", data={"csrf_token": token}
    )
    assert replayed.status_code == 200, replayed.text
    page = text_of(replayed.text)
    assert "Replay matches" in page
    assert "Stored hash matches the stored content" in page


async def test_the_audit_pack_checks_out_with_standard_tools(
    client: httpx.AsyncClient, audit: Audit
) -> None:
    await signed_in(client, audit.auditor)
    decision_id = audit.excluded["decision_id"]
    response = await client.get(f"/console/decisions/{decision_id}/audit-pack")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    pack = response.json()
    record = pack["record"]
    # The recipe of the "how to verify" page, with the standard library only.
    header = json.dumps(
        {
            k: record[k]
            for k in ("seq", "decision_id", "requested_by", "requested_by_key_id", "request_id")
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    text = "\n".join([record["prev_hash"], header, record["request"], record["payload"]])
    assert hashlib.sha256(text.encode()).hexdigest() == record["hash"]
    assert json.loads(record["payload"]) == audit.excluded
    chain = pack["chain"]
    assert chain["anchor"] == {"kind": "genesis", "seq": 0, "hash": "0" * 64}
    assert chain["complete"]
    assert chain["links"][-1]["hash"] == record["hash"]
    previous = chain["anchor"]["hash"]
    for link in chain["links"]:
        assert link["prev_hash"] == previous
        previous = link["hash"]
    policy = pack["policy"]
    assert hashlib.sha256(policy["document"].encode()).hexdigest() == policy["sha256"]
    assert policy["sha256"] == audit.excluded["policy"]["sha256"]
    assert [e["dataset_id"] for e in pack["evidence"]] == [audit.tobacco]

    how = await client.get("/console/audit-packs")
    assert how.status_code == 200
    assert "sha256sum" in how.text


async def test_verify_names_the_range_checked(client: httpx.AsyncClient, audit: Audit) -> None:
    await signed_in(client, audit.auditor)
    idle = await client.get("/console/verify")
    assert idle.status_code == 200
    assert "The chain is" not in idle.text
    ran = await client.get("/console/verify", params={"run": "1"})
    page = text_of(ran.text)
    assert "The chain is intact" in page
    assert "2 decision(s) checked" in page
    empty = await client.get(
        "/console/verify", params={"run": "1", "from": "2000-01-01T00:00", "to": "2000-01-02T00:00"}
    )
    assert "0 decision(s) checked" in text_of(empty.text)
    bad = await client.get(
        "/console/verify", params={"run": "1", "from": "2000-01-02T00:00", "to": "2000-01-01T00:00"}
    )
    assert bad.status_code == 422
    assert "from must be before to" in bad.text


# -- policies, lists, datasets ---------------------------------------------------------------


async def test_policies_show_versions_approvals_and_differences(
    client: httpx.AsyncClient, audit: Audit, make_key: MakeKey
) -> None:
    author = await make_key(Scope.policies_write, name="author-2")
    draft = shipped("rpf")
    draft["rules"] = [r for r in draft["rules"] if r["id"] != "tobacco"]
    created = await post_document(client, "rpf", draft, bearer(author))
    assert created.status_code == 201, created.text
    token = await signed_in(client, author)

    listed = text_of((await client.get("/console/policies")).text)
    assert "rpf" in listed
    assert "dk-pension" in listed

    page = await client.get("/console/policies/rpf")
    text = text_of(page.text)
    # Version 1: approved, and by whom; version 2 a draft, by its author.
    assert re.search(r"1 approved policy-author, \S+ \S+ committee", text), text
    assert "2 draft author-2" in text
    diff = await client.get("/console/policies/rpf", params={"a": "1", "b": "2"})
    assert "Removed: tobacco" in text_of(diff.text)
    same = await client.get("/console/policies/rpf", params={"a": "1", "b": "1"})
    assert "The two versions say the same" in same.text
    assert (await client.get("/console/policies/rpf", params={"a": "x"})).status_code == 422
    assert (await client.get("/console/policies/nope")).status_code == 404

    impact = await client.post(
        "/console/policies/rpf/versions/2/impact", data={"csrf_token": token}
    )
    assert impact.status_code == 200, impact.text
    shown = text_of(impact.text)
    assert "Impact of approving version 2" in shown
    assert PMI in shown  # no longer excluded for tobacco

    version = await client.get("/console/policies/rpf/versions/1")
    assert version.status_code == 200
    assert audit.excluded["policy"]["sha256"] in version.text


async def test_an_auditor_cannot_preview_impact(client: httpx.AsyncClient, audit: Audit) -> None:
    token = await signed_in(client, audit.auditor)
    refused = await client.post(
        "/console/policies/rpf/versions/1/impact", data={"csrf_token": token}
    )
    assert refused.status_code == 403


async def test_lists_show_the_token_and_download(client: httpx.AsyncClient, audit: Audit) -> None:
    await signed_in(client, audit.auditor)
    page = await client.get("/console/lists")
    assert page.status_code == 200
    api = await client.get("/v1/lists/rpf", headers=bearer(audit.auditor))
    token = api.headers["x-list-token"]
    assert token in page.text
    download = await client.get("/console/lists/rpf/download", params={"level": "instrument"})
    assert download.status_code == 200
    assert download.headers["x-list-token"] == token
    assert "attachment" in download.headers["content-disposition"]
    assert download.text == api.text  # the same list as the API's
    assert PMI in download.text
    issuers = await client.get("/console/lists/rpf/download", params={"level": "issuer"})
    assert issuers.text.splitlines()[0].startswith("issuer_id,")
    assert (await client.get("/console/lists/nope/download")).status_code == 404


async def test_datasets_show_provenance_and_summary(
    client: httpx.AsyncClient, audit: Audit
) -> None:
    await signed_in(client, audit.auditor)
    listed = await client.get("/console/datasets")
    assert listed.status_code == 200
    assert f'href="/console/datasets/{audit.tobacco}"' in listed.text
    one = await client.get(f"/console/datasets/{audit.tobacco}")
    text = text_of(one.text)
    assert "facts from iss" in text
    assert "steward" in text
    api = await client.get(f"/v1/datasets/{audit.tobacco}", headers=bearer(audit.desk.steward))
    assert api.json()["sha256"] in text
    assert (await client.get("/console/datasets/999999")).status_code == 404
    assert (await client.get("/console/datasets/x")).status_code == 404


async def test_the_stylesheet_is_served_here(client: httpx.AsyncClient) -> None:
    css = await client.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert (await client.get("/console/static/other.js")).status_code == 404
    page = await client.get("/console/sign-in")
    assert re.findall(r'(?:href|src)="(https?:)?//', page.text) == []  # nothing external


async def test_console_routes_are_not_in_the_api_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/console")]


async def test_sessions_count_in_the_table(
    client: httpx.AsyncClient, make_key: MakeKey, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(Scope.decisions_read, name="auditor")
    await signed_in(client, key)
    await signed_in(client, key)
    async with sessionmaker() as session:
        count = (await session.execute(select(func.count()).select_from(ConsoleSession))).scalar()
    assert count == 2


async def test_the_demos_admin_key_signs_in_and_sees_every_page(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key(Scope.admin, name="demo-admin")  # what `mayhold demo` prints
    await signed_in(client, key)
    home = text_of((await client.get("/console")).text)
    for page in ("Decisions", "Verify", "Policies", "Lists", "Datasets", "impact of a draft"):
        assert page in home
    for path in ("/console/decisions", "/console/verify", "/console/lists", "/console/datasets"):
        assert (await client.get(path)).status_code == 200, path


async def test_hostile_values_are_pages_not_500s(client: httpx.AsyncClient, audit: Audit) -> None:
    await signed_in(client, audit.auditor)
    hostile = ("%00", "a%00b", "%1F", "%ED%A0%80", "x" * 1000)
    numbers = ("2147483648", "9223372036854775808", "-1", "1e400")
    urls = [
        *(
            f"/console/decisions?{name}={value}"
            for name in (
                "instrument",
                "issuer",
                "portfolio",
                "policy",
                "verdict",
                "from",
                "to",
                "request_id",
            )
            for value in hostile
        ),
        *(f"/console/decisions?before={n}" for n in numbers),
        *(f"/console/verify?run=1&from={value}" for value in hostile),
        *(f"/console/decisions/{value}" for value in hostile),
        *(f"/console/policies/{value}" for value in hostile),
        *(f"/console/policies/rpf?a={value}&b=1" for value in (*hostile, *numbers)),
        *(f"/console/policies/rpf/versions/{n}" for n in numbers),
        *(f"/console/lists/{value}/download" for value in hostile),
        "/console/lists/rpf/download?level=everything",
        *(f"/console/datasets/{n}" for n in numbers),
        *(f"/console/datasets?before={n}" for n in numbers),
        *(f"/console/sign-in?next={value}" for value in hostile),
    ]
    for url in urls:
        response = await client.get(url)
        assert response.status_code in {200, 404, 422}, (url[:80], response.text[:300])
        assert response.headers["content-type"].startswith("text/html"), url[:80]
    shown = await client.get("/console/decisions", params={"issuer": "<script>alert(1)</script>"})
    assert "<script>" not in shown.text
    assert "&lt;script&gt;" in shown.text
    head = await client.head("/console/decisions")
    assert head.status_code == 200
    assert head.content == b""


async def tamper(connection: AsyncConnection, statement: str) -> None:
    """Change the log behind its triggers' back (as one with DDL rights could), inside the
    test's transaction (rolled back afterwards, triggers and all)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(text("ALTER TABLE decisions DISABLE TRIGGER USER"))
        await connection.execute(text(statement))
        await connection.execute(text("ALTER TABLE decisions ENABLE TRIGGER USER"))
        return
    triggers = (
        await connection.execute(
            text(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = 'decisions'"
            )
        )
    ).all()
    for name, _ in triggers:
        await connection.execute(text(f"DROP TRIGGER {name}"))
    await connection.execute(text(statement))
    for _, sql in triggers:
        await connection.execute(text(sql))


async def test_an_altered_record_is_named_and_shown(
    client: httpx.AsyncClient, audit: Audit, connection: AsyncConnection
) -> None:
    token = await signed_in(client, audit.auditor)
    victim = audit.excluded["decision_id"]
    await tamper(
        connection,
        "UPDATE decisions SET payload = replace(payload, '\"excluded\"', '\"allowed\"') "
        "WHERE seq = 1",
    )
    verified = text_of((await client.get("/console/verify", params={"run": "1"})).text)
    assert "The chain is broken" in verified
    assert f"First bad record: decision {victim} (seq 1)" in verified
    assert "it was altered" in verified

    page = text_of((await client.get(f"/console/decisions/{victim}")).text)
    assert "This record does not check out" in page
    assert "Content matches hash no" in page

    replayed = await client.post(f"/console/decisions/{victim}/replay", data={"csrf_token": token})
    shown = text_of(replayed.text)
    assert "Replay differs in 1 field(s)" in shown
    assert '/verdict "allowed" "excluded"' in shown
    assert "Stored hash does NOT match the stored content" in shown


async def test_an_expired_session_sends_to_sign_in(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    key = await make_key(Scope.decisions_read, name="auditor")
    await signed_in(client, key)
    assert (await client.get("/console/decisions")).status_code == 200
    async with sessionmaker() as session:
        (row,) = (await session.execute(select(ConsoleSession))).scalars()
        assert row.expires_at - row.created_at == SESSION_LIFETIME
        row.expires_at = row.created_at
        await session.commit()
    assert (await client.get("/console/decisions")).status_code == 303


async def test_a_long_chain_gives_the_links_nearest_the_decision(
    client: httpx.AsyncClient, audit: Audit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.decisions import service as decisions

    newest = await audit.desk.check(PMI)
    monkeypatch.setattr(decisions, "PACK_LINKS_MAX", 2)
    await signed_in(client, audit.auditor)
    pack = (await client.get(f"/console/decisions/{newest['decision_id']}/audit-pack")).json()
    chain = pack["chain"]
    assert [link["seq"] for link in chain["links"]] == [2, 3]
    assert chain["complete"] is False
    assert chain["links"][-1]["hash"] == pack["record"]["hash"]


async def test_an_overlays_decision_shows_its_bases_rules(
    client: httpx.AsyncClient, audit: Audit, make_key: MakeKey
) -> None:
    author = await make_key(Scope.policies_write, name="mandate-author")
    approver = await make_key(Scope.policies_approve, name="mandate-committee")
    mandate = {"key": "mandate", "title": "Client mandate", "extends": "rpf"}
    created = await post_document(client, "mandate", mandate, bearer(author))
    assert created.status_code == 201, created.text
    approved = await approve(client, "mandate", 1, bearer(approver))
    assert approved.status_code == 200, approved.text
    decision = await audit.desk.check(PMI, "mandate")
    assert decision["policy"]["base"]["key"] == "rpf"
    assert decision["verdict"] == "excluded"

    await signed_in(client, audit.auditor)
    response = await client.get(f"/console/decisions/{decision['decision_id']}")
    page = text_of(response.text)
    rule = next(r for r in shipped("rpf")["rules"] if r["id"] == "tobacco")
    assert "mandate version 1" in page
    assert "an overlay of rpf version 1" in page
    assert rule["source"] in page
    assert rule["note"] in page
    pack = (await client.get(f"/console/decisions/{decision['decision_id']}/audit-pack")).json()
    assert pack["policy"]["key"] == "mandate"
    base = pack["policy"]["base"]
    assert hashlib.sha256(base["document"].encode()).hexdigest() == base["sha256"]
    assert base["sha256"] == decision["policy"]["base"]["sha256"]
