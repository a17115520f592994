"""The console in a real browser: Playwright drives Debian's Chromium against `mayhold serve`.

One dialect (SQLite) only: the pages are the same code on both, and the database-backed
behaviour of every console route runs on Postgres and SQLite in ``tests/test_console.py``;
here what is tested is what only a browser shows (cookies kept and sent, forms submitted,
redirects followed, downloads, focus and keyboard). The server is the real one, started as an
operator starts it, on a demo database (``app.demo``, a small universe) with a few checks
logged through the API.

Chromium is the system's (``/usr/bin/chromium``; ``scripts/test.sh`` installs it when missing):
Playwright never downloads a browser here. Assertions are on what the page says, never on
screenshots.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.demo import load_demo
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from tests.support.databases import scratch_database
from tests.support.processes import answering, serve

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("MAYHOLD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Console:
    base: str
    auditor: str  # decisions:read, lists:read
    tobacco: str  # an ISIN the rpf policy excludes
    tobacco_decision: str
    list_token: str


async def _started(process: subprocess.Popen[Any], base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        await answering(client, process=process)


@pytest.fixture(scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    async with scratch_database("sqlite", tmp_path_factory.mktemp("console")) as url:
        settings = Settings(database_url=url)
        await upgrade_to_head_async(settings)
        database = Database.from_settings(settings)
        async with database.sessionmaker() as session, session.begin():
            examples = await load_demo(session, companies=300)
            auditor = await auth_service.create_key(
                session, name="auditor", scopes=frozenset({Scope.decisions_read, Scope.lists_read})
            )
            trader = await auth_service.create_key(
                session, name="oms", scopes=frozenset({Scope.check})
            )
        await database.dispose()
        process, port = serve(url)
        try:
            base = f"http://127.0.0.1:{port}"
            await _started(process, base)
            tobacco = examples["tobacco producer"]
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {trader.key}"}
            ) as client:
                asked = await client.get(
                    "/v1/check",
                    params={"policy": "rpf", "instrument": tobacco},
                    headers={"X-Request-ID": "desk-42"},
                )
                assert asked.status_code == 200, asked.text
                assert asked.json()["verdict"] == "excluded"
                for name in ("clean company", "coal miner"):
                    other = await client.get(
                        "/v1/check", params={"policy": "rpf", "instrument": examples[name]}
                    )
                    assert other.status_code == 200, other.text
                listed = await client.head(
                    "/v1/lists/rpf", headers={"Authorization": f"Bearer {auditor.key}"}
                )
                assert listed.status_code == 200
            yield Console(
                base,
                auditor.key,
                tobacco,
                asked.json()["decision_id"],
                listed.headers["x-list-token"],
            )
        finally:
            process.terminate()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: install Chromium (scripts/test.sh does: apt-get install chromium)"
    )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(accept_downloads=True)
    opened = await context.new_page()
    yield opened
    await context.close()


async def sign_in(page: Page, console: Console, path: str = "/console") -> None:
    await page.goto(console.base + path)
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sign in to the mayhold console"
    )
    await page.get_by_label("API key").fill(console.auditor)
    await page.get_by_role("button", name="Sign in").click()


async def one_h1_and_every_field_labelled(page: Page) -> None:
    """One h1; every visible input and select has a label naming it; every button a name."""
    await expect(page.locator("h1")).to_have_count(1)
    fields = page.locator("input:not([type=hidden]), select")
    for index in range(await fields.count()):
        field = fields.nth(index)
        field_id = await field.get_attribute("id")
        assert field_id, await field.evaluate("e => e.outerHTML")
        label = page.locator(f'label[for="{field_id}"]')
        await expect(label).to_have_count(1)
        assert (await label.inner_text()).strip()
    buttons = page.get_by_role("button")
    for index in range(await buttons.count()):
        assert (await buttons.nth(index).inner_text()).strip()


async def test_sign_in_search_open_replay_and_sign_out(page: Page, console: Console) -> None:
    # The address the demo prints: the console sends an unsigned browser to sign in.
    await sign_in(page, console)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Console")
    await expect(page.locator("header .who")).to_have_text("Signed in as auditor")
    await one_h1_and_every_field_labelled(page)

    await page.get_by_role("navigation").get_by_role("link", name="Decisions").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Decisions")
    await one_h1_and_every_field_labelled(page)
    rows = page.locator("table tbody tr")
    await expect(rows).to_have_count(3)  # every decision, newest first

    # Keyboard only: type the ISIN, Tab through the form to the Search button, Enter.
    await page.get_by_label("Instrument (ISIN)").fill(console.tobacco)
    await page.get_by_label("Request id").focus()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Search")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"instrument=" + console.tobacco))
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("excluded")
    await expect(rows.first).to_contain_text("rpf v1")

    await rows.first.get_by_role("link", name=re.compile("Open")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Decision {console.tobacco_decision}"
    )
    await one_h1_and_every_field_labelled(page)
    await expect(page.locator("#may-hold")).to_have_text(
        "May hold: no, the policy does not let it be held."
    )
    await expect(page.get_by_role("heading", level=3)).to_have_text(
        "Tobacco producers (more than 50 % of revenue) (tobacco: exclude)"
    )
    evidence = page.get_by_role("table").filter(has_text="Evidence")
    await expect(evidence).to_contain_text("revenue_pct.tobacco")
    await expect(evidence.get_by_role("link", name=re.compile(r"dataset \d+"))).to_be_visible()
    await expect(page.locator("#chain-status")).to_have_text(re.compile("This record is intact"))
    await expect(page.locator("section.answer")).to_contain_text("request id desk-42")

    await page.get_by_role("button", name="Replay").click()
    await expect(page.locator("#replay-result")).to_contain_text("Replay matches")
    await expect(page.locator("#replay-result")).to_contain_text(
        "Stored hash matches the stored content"
    )

    # The search by request id finds the same decision.
    await page.goto(console.base + "/console/decisions?request_id=desk-42")
    await expect(rows).to_have_count(1)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    await page.goto(console.base + "/console/decisions")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sign in to the mayhold console"
    )


async def test_a_link_to_a_decision_survives_signing_in(page: Page, console: Console) -> None:
    await sign_in(page, console, f"/console/decisions/{console.tobacco_decision}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Decision {console.tobacco_decision}"
    )


async def test_a_wrong_key_is_told_on_the_sign_in_page(page: Page, console: Console) -> None:
    await page.goto(console.base + "/console/sign-in")
    await page.get_by_label("API key").fill("mh_000000000000_wrong")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_have_text("The API key is not valid.")
    await one_h1_and_every_field_labelled(page)
    cookies = await page.context.cookies()
    assert [c["name"] for c in cookies if c["name"] == "mayhold_console"] == []


async def test_download_a_list(page: Page, console: Console) -> None:
    await sign_in(page, console)
    await page.get_by_role("link", name="Lists").first.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Lists")
    await one_h1_and_every_field_labelled(page)
    row = page.get_by_role("row").filter(has_text="rpf").first
    await expect(row).to_contain_text(console.list_token)
    async with page.expect_download() as info:
        await row.get_by_role("link", name="Instruments of rpf").click()
    download = await info.value
    assert download.suggested_filename.startswith("rpf-instruments-")
    content = Path(await download.path()).read_text(encoding="utf-8")
    lines = content.splitlines()
    assert lines[0] == "issuer_id,name,country,lei,verdict,rule_ids,since,isin,asset_class"
    assert any(console.tobacco in line and ",excluded," in line for line in lines[1:])


async def test_cookie_is_http_only_and_strict(page: Page, console: Console) -> None:
    await sign_in(page, console)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Console")
    (cookie,) = [c for c in await page.context.cookies() if c["name"] == "mayhold_console"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert cookie["secure"] is False  # plain http on localhost; over TLS it is Secure
    # No script on the page can read it: the page runs no script, and the cookie is HttpOnly.
    assert "mayhold_console" not in await page.evaluate("document.cookie")


async def test_other_pages_read_well(page: Page, console: Console) -> None:
    await sign_in(page, console)
    for path, heading in (
        ("/console/policies", "Policies"),
        ("/console/policies/rpf", "Policy rpf"),
        ("/console/datasets", "Datasets"),
        ("/console/verify", "Verify the decision log"),
        ("/console/audit-packs", "Verifying an audit pack"),
    ):
        await page.goto(console.base + path)
        await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        await one_h1_and_every_field_labelled(page)
    await page.goto(console.base + "/console/verify")
    await page.get_by_role("button", name="Verify").click()
    await expect(page.locator("#verify-result")).to_contain_text("The chain is intact")
    await expect(page.locator("#verify-result")).to_contain_text("3 decision(s) checked")


async def test_the_audit_pack_checks_out_as_its_page_says(
    page: Page, console: Console, tmp_path: Path
) -> None:
    """Download a decision's audit pack, then run the commands of the "how to verify" page,
    as written there, in a shell (python3, jq, sha256sum)."""
    await sign_in(page, console, f"/console/decisions/{console.tobacco_decision}")
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download the audit pack").click()
    download = await info.value
    pack = tmp_path / "decision-ID.audit.json"
    await download.save_as(pack)

    await page.get_by_role("link", name="How to verify an audit pack").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Verifying an audit pack")
    recipes = [await block.inner_text() for block in await page.locator("pre").all()]
    assert len(recipes) == 4

    def run(command: str) -> str:
        done = subprocess.run(
            ["/bin/sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    python_hash, jq_hash, links, policy = recipes
    assert run(python_hash).strip() == "True"
    computed, stored = run(jq_hash).split("\n")[:2]
    assert computed.split()[0] == stored.strip()
    assert run(links).strip() == "linked to genesis complete: True"
    computed, stored = run(policy).split("\n")[:2]
    assert computed.split()[0] == stored.strip()
