"""What the README tells a user to run, run as written: command lines are read from README.md
itself (so the README and these tests cannot drift) and run in a real shell against real
databases. Both dialects."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.demo import load_demo
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from tests.support.calendar import stable_today, today
from tests.support.databases import DIALECTS, scratch_database
from tests.support.processes import BIN, answering, free_port, mayhold, serve, shell

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(after: str) -> str:
    """The first fenced code block after the line containing ``after``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(after)
    match = re.search(r"^```[a-z]*\n(.*?)^```", text[start:], re.DOTALL | re.MULTILINE)
    assert match, f"no code block after {after!r} in README.md"
    return match.group(1)


def date_shim(directory: Path) -> Path:
    """A directory holding a `date` that answers for the night in $NIGHT (the real `date`,
    told the day): nights are told apart by the file names `date` gives them."""
    shims = directory / "bin"
    shims.mkdir()
    real_date = shutil.which("date")
    assert real_date
    (shims / "date").write_text(f'#!/bin/sh\nexec {real_date} -d "$NIGHT" "$@"\n')
    (shims / "date").chmod(0o755)
    return shims


@dataclass(frozen=True)
class Crontab:
    """A crontab as cron reads it: environment lines, and one job's command."""

    environment: dict[str, str]
    command: str


def parse_crontab(block: str) -> Crontab:
    environment: dict[str, str] = {}
    jobs: list[str] = []
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if assignment:
            environment[assignment.group(1)] = assignment.group(2)
        else:
            fields = line.split(None, 5)
            assert len(fields) == 6, f"not a crontab line: {line!r}"
            jobs.append(fields[5])
    assert len(jobs) == 1, jobs
    # crontab(5): an unescaped % ends the command (the rest is its stdin); \% is a literal %.
    assert not re.search(r"(?<!\\)%", jobs[0]), "an unescaped % in the crontab line"
    return Crontab(environment, jobs[0].replace("\\%", "%"))


# ------------------------------------------------------------------------ the custodian's cron


CRON_DIRECTORY = "/srv/lists"


@asynccontextmanager
async def small_demo(dialect: str, directory: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A migrated database with the shipped policies approved and a small generated universe;
    its URL and the demo's example ISINs."""
    async with scratch_database(dialect, directory) as url:
        settings = Settings(database_url=url)
        await upgrade_to_head_async(settings)
        database = Database.from_settings(settings)
        try:
            async with database.sessionmaker() as session, session.begin():
                examples = await load_demo(session, companies=120)
        finally:
            await database.dispose()
        yield url, examples


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    header = next(reader)
    return header, [dict(zip(header, values, strict=True)) for values in reader]


def apply(held: dict[str, dict[str, str]], delta: list[dict[str, str]]) -> None:
    """What the custodian does with a night's delta."""
    for row in delta:
        row = dict(row)
        if row.pop("change") == "removed":
            del held[row["isin"]]
        else:
            held[row["isin"]] = row


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_readme_crontab_line_night_after_night(dialect: str, tmp_path: Path) -> None:
    """The README's crontab line, run as cron runs it (``/bin/sh -c``, the crontab's
    environment, ``\\%`` unescaped), night after night: the first without a token file, a delta,
    a failed night that changes nothing and exits non-zero, the recovery, a second run on one
    day, and a truncated token file."""
    crontab = parse_crontab(readme_block("Or from the database directly, in a crontab"))
    assert CRON_DIRECTORY in crontab.command
    assert set(crontab.environment) == {"MAYHOLD_DATABASE_URL"}
    lists = tmp_path / "lists"
    lists.mkdir()
    command = crontab.command.replace(CRON_DIRECTORY, str(lists))
    shims = date_shim(tmp_path)
    token_file = lists / "rpf.token"
    today = stable_today(dt.timedelta(minutes=3))  # list tokens carry the day

    async with small_demo(dialect, tmp_path) as (url, examples):
        clean = examples["clean company"]

        def night(day: str, database_url: str = url) -> tuple[int, str]:
            environment = {
                **crontab.environment,
                "MAYHOLD_DATABASE_URL": database_url,
                # cron's own PATH, with mayhold (and the date shim) on it as the README asks
                "PATH": f"{shims}{os.pathsep}{BIN}{os.pathsep}/usr/bin:/bin",
                "NIGHT": day,
                "SHELL": "/bin/sh",
            }
            ran = shell(command, environment, cwd=str(tmp_path))
            return ran.returncode, ran.stderr

        def tobacco(value: str) -> None:
            facts = tmp_path / f"tobacco-{value}.csv"
            facts.write_text(
                f"issuer_ref,metric,value,as_of\n{clean},revenue_pct.tobacco,{value},{today}\n"
            )
            loaded = mayhold(
                url, "ingest", "--kind", "facts", "--provider", "iss", "--as-of", str(today),
                str(facts),
            )  # fmt: skip
            assert loaded.returncode == 0, loaded.stderr

        def files() -> dict[str, bytes]:
            return {path.name: path.read_bytes() for path in sorted(lists.iterdir())}

        # Night 1, no token file: the whole list, and its token.
        code, stderr = night("2031-01-01")
        assert code == 0, stderr
        header, full = read_csv(lists / "rpf-2031-01-01.csv")
        assert header[0] == "issuer_id"  # a whole list: no change column
        assert full
        assert clean not in {row["isin"] for row in full}
        whole = mayhold(url, "lists", "export", "rpf", "--format", "csv")
        assert (lists / "rpf-2031-01-01.csv").read_text() == whole.stdout
        first_token = token_file.read_text().strip()
        assert f"list token: {first_token}" in stderr
        held = {row["isin"]: row for row in full}

        # Night 2: the clean company now makes tobacco: a delta adding it.
        tobacco("99")
        code, stderr = night("2031-01-02")
        assert code == 0, stderr
        header, delta = read_csv(lists / "rpf-2031-01-02.csv")
        assert header[0] == "change"
        # The company's instruments (its shares and bonds), all for tobacco.
        assert {(r["change"], r["rule_ids"]) for r in delta} == {("added", "tobacco")}
        added = {r["isin"] for r in delta}
        assert clean in added
        assert len({r["issuer_id"] for r in delta}) == 1
        second_token = token_file.read_text().strip()
        assert second_token != first_token
        apply(held, delta)

        # Night 3: the data changes again, but the database cannot be reached: exit non-zero,
        # no file for the night (not even an empty or partial one), the token untouched.
        tobacco("1")
        before = files()
        unreachable = (
            "postgresql+asyncpg://postgres@127.0.0.1:1/mayhold"
            if dialect == "postgresql"
            else f"sqlite+aiosqlite:///{tmp_path}/no-such-directory/mayhold.db"
        )
        code, stderr = night("2031-01-03", unreachable)
        assert code != 0
        assert "mayhold: " in stderr
        assert "Traceback" not in stderr
        assert files() == before

        # Night 4: recovered; the delta covers both days (since night 2's list).
        code, stderr = night("2031-01-04")
        assert code == 0, stderr
        _, delta = read_csv(lists / "rpf-2031-01-04.csv")
        assert {(r["change"], r["isin"]) for r in delta} == {("removed", i) for i in added}
        apply(held, delta)
        _, now = read_csv(lists / "rpf-2031-01-01.csv")  # unchanged since night 1
        assert now == full
        current = mayhold(url, "lists", "export", "rpf", "--format", "csv")
        reader = csv.DictReader(io.StringIO(current.stdout, newline=""))
        assert held == {row["isin"]: row for row in reader}  # the deltas add up

        # The same night again: the file exists and is not replaced (its delta may be unread).
        before = files()
        code, stderr = night("2031-01-04")
        assert code == 1
        assert "exists" in stderr
        assert files() == before

        # A truncated (or empty) token file: the whole list, said on standard error.
        token_file.write_text(token_file.read_text()[:20])
        code, stderr = night("2031-01-05")
        assert code == 0, stderr
        assert "cannot be used" in stderr
        assert read_csv(lists / "rpf-2031-01-05.csv")[0][0] == "issuer_id"
        token_file.write_text("")
        code, stderr = night("2031-01-06")
        assert code == 0, stderr
        assert read_csv(lists / "rpf-2031-01-06.csv")[0][0] == "issuer_id"
        assert not [p for p in lists.iterdir() if p.name.startswith(".")]  # no .part left


# ------------------------------------------------------------------- against a running service


@asynccontextmanager
async def served(url: str) -> AsyncIterator[str]:
    """`mayhold serve` on the database; its base URL once it answers."""
    process, port = serve(url)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            await answering(client, process=process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_readme_recipes_against_a_running_service(dialect: str, tmp_path: Path) -> None:
    """The auditor's check of a decision (curl, jq, printf, sha256sum), the custodian's nightly
    curl job, and a loaded file's sha256: each as the README writes it, against `mayhold serve`."""
    for tool in ("curl", "jq", "sha256sum"):
        assert shutil.which(tool), f"the README's recipes need {tool} (apt-get install {tool})"
    async with small_demo(dialect, tmp_path) as (url, examples):
        key = mayhold(url, "keys", "create", "--name", "auditor", "--scopes", "admin")
        assert key.returncode == 0, key.stderr
        auth = {"Authorization": f"Bearer {key.stdout.splitlines()[-1]}"}
        async with served(url) as base, httpx.AsyncClient(base_url=base, headers=auth) as client:
            # A decision, re-hashed by the README's shell recipe.
            checked = await client.post(
                "/v1/checks",
                json={"policy": "rpf", "instruments": sorted(examples.values())},
                headers={"X-Request-ID": "order-17"},
            )
            assert checked.status_code == 200, checked.text
            recipe = readme_block("An auditor can check a decision with nothing but a shell")
            for decision in checked.json()["decisions"][:3]:
                stored = (await client.get(f"/v1/decisions/{decision['decision_id']}")).json()
                environment = {"BASE": base, "KEY": auth["Authorization"].split()[1]}
                ran = shell(recipe, {**environment, "ID": decision["decision_id"]})
                assert ran.returncode == 0, ran.stderr
                assert ran.stdout == f"{stored['audit']['hash']}  -\n"
            verified = (await client.get("/v1/decisions/verify")).json()
            assert verified["ok"], verified

            # A file loaded over HTTP (raw body, multipart): its sha256 is the file's.
            data = Path(__file__).parent / "fixtures" / "datasets" / "msci_esg.csv"
            digest = shell(f"sha256sum {data}").stdout.split()[0]
            raw = await client.post(
                "/v1/datasets",
                params={"kind": "msci-esg", "as_of": "2025-06-30"},
                content=data.read_bytes(),
                headers={"Content-Type": "text/csv"},
            )
            assert raw.status_code in (200, 201), raw.text
            assert raw.json()["sha256"] == digest
            multipart = await client.post(
                "/v1/datasets",
                params={"kind": "msci-esg", "as_of": "2025-06-30"},
                files={"file": ("msci.csv", data.read_bytes(), "text/csv")},
            )
            assert multipart.status_code == 200, multipart.text  # the same bytes: the same load
            assert multipart.json()["sha256"] == digest
            listed = (await client.get(f"/v1/datasets/{raw.json()['id']}")).json()
            assert listed["sha256"] == digest

            # The custodian's nightly curl job: the whole list, a delta, a failed night (the
            # service unreachable) that changes nothing, the recovery.
            job = readme_block("A custodian's nightly job").replace(
                "https://mayhold.internal", base
            )
            custodian = tmp_path / "custodian"
            custodian.mkdir()
            shims = date_shim(tmp_path)

            def night(day: str, job: str = job) -> tuple[int, str]:
                environment = {
                    "KEY": auth["Authorization"].split()[1],
                    "NIGHT": day,
                    "PATH": f"{shims}{os.pathsep}/usr/bin:/bin",
                }
                ran = shell(job, environment, cwd=str(custodian))
                return ran.returncode, ran.stderr

            def visible() -> dict[str, bytes]:
                return {
                    p.name: p.read_bytes()
                    for p in sorted(custodian.iterdir())
                    if not p.name.startswith(".")
                }

            assert night("2031-01-01") == (0, "")
            whole = await client.get("/v1/lists/rpf", params={"level": "instrument"})
            assert (custodian / "rpf-2031-01-01.csv").read_bytes() == whole.content
            assert (custodian / "rpf.token").read_text() == whole.headers["x-list-token"] + "\n"

            clean = examples["clean company"]
            facts = tmp_path / "tobacco.csv"
            facts.write_text(
                f"issuer_ref,metric,value,as_of\n{clean},revenue_pct.tobacco,99,{today()}\n"
            )
            loaded = await client.post(
                "/v1/datasets",
                params={"kind": "facts", "provider": "iss", "as_of": str(today())},
                content=facts.read_bytes(),
            )
            assert loaded.status_code == 201, loaded.text
            assert night("2031-01-02") == (0, "")
            _, delta = read_csv(custodian / "rpf-2031-01-02.csv")
            assert clean in {r["isin"] for r in delta if r["change"] == "added"}

            before = visible()
            code, _ = night("2031-01-03", job.replace(base, f"http://127.0.0.1:{free_port()}"))
            assert code != 0
            assert visible() == before

            assert night("2031-01-04") == (0, "")
            _, nothing = read_csv(custodian / "rpf-2031-01-04.csv")
            assert nothing == []  # nothing changed since night 2's list
            before = visible()
            assert night("2031-01-04")[0] != 0  # that day's file is there: not replaced
            assert visible() == before


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_readme_running_it_for_real_block(dialect: str, tmp_path: Path) -> None:
    """ "Running it for real", as written, but for installing (done) and serving (a server:
    tests/test_cli.py): migrate, then a key printed alone on the last line."""
    block = readme_block("## Running it for real")
    lines = [line.split("#")[0].rstrip() for line in block.splitlines()]
    assert lines[0] == "python3 -m venv .venv && . .venv/bin/activate"
    assert lines[1] == "pip install -e ."
    assert lines[-1].startswith("mayhold serve ")
    assert lines[2].startswith("export MAYHOLD_DATABASE_URL=")
    async with scratch_database(dialect, tmp_path) as url:
        script = "\n".join(["set -e", f"export MAYHOLD_DATABASE_URL={url}", *lines[3:-1]])
        ran = shell(script, {"MAYHOLD_LOG_LEVEL": "WARNING"}, cwd=str(tmp_path))
        assert ran.returncode == 0, ran.stderr
        key = ran.stdout.splitlines()[-1]
        assert re.fullmatch(r"mh_[0-9a-f]+_[A-Za-z0-9_-]+", key), ran.stdout
        listed = mayhold(url, "keys", "list")
        assert listed.stdout.startswith("oms-desk-1\tcheck\t")


# ------------------------------------------------------------------------------- portfolios


def readme_recipes(section: str, end: str) -> list[tuple[str, str]]:
    """The (bash block, text block after it) pairs between two headings: a recipe and the
    output the README says it prints."""
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    part = text[start : text.index(end, start)]
    blocks = re.findall(r"^```([a-z]*)\n(.*?)^```", part, re.DOTALL | re.MULTILINE)
    pairs = []
    for (kind, body), (next_kind, output) in itertools.pairwise(blocks):
        if kind == "bash":
            assert next_kind == "text", f"a recipe without its output: {body[:60]!r}"
            pairs.append((body, output))
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_readme_portfolio_recipes_print_what_it_shows(
    dialect: str, tmp_path: Path
) -> None:
    """The "Portfolios" recipes (curl, jq) against `mayhold serve` on the demo's data, in
    order: each prints exactly the output the README shows after it."""
    recipes = readme_recipes("## Portfolios", "## Lists for custodians")
    assert len(recipes) == 5
    async with small_demo(dialect, tmp_path) as (url, _):
        key = mayhold(url, "keys", "create", "--name", "desk", "--scopes", "admin")
        assert key.returncode == 0, key.stderr
        environment = {"KEY": key.stdout.splitlines()[-1]}
        async with served(url) as base:
            for recipe, output in recipes:
                ran = shell(recipe, {**environment, "BASE": base}, cwd=str(tmp_path))
                assert ran.returncode == 0, ran.stderr
                assert ran.stdout == output, f"{recipe}\nprinted:\n{ran.stdout}"
