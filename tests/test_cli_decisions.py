"""`mayhold decisions export` and `mayhold decisions verify`, as an auditor runs them: real
processes on a database of the test's own, both dialects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.kit.db import Database
from tests.support.databases import DIALECTS
from tests.support.decisions import entry, migrated_database, running_log
from tests.support.processes import mayhold
from tests.test_decisions_api import tamper


@pytest.fixture(params=DIALECTS)
async def logged(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Database, list[dict[str, Any]]]]:
    """Six committed decisions (every third one a watch) in a database of the test's own."""
    async with migrated_database(request.param, tmp_path) as (url, database):
        async with running_log(database) as log:
            decisions: list[dict[str, Any]] = []
            for n in range(6):
                decisions += await log.append([entry(n, verdict="watch" if n % 3 else "excluded")])
        yield url, database, decisions


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
async def test_export_writes_each_decision_as_stored_one_per_line(
    logged: tuple[str, Database, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, _, decisions = logged
    done = mayhold(url, "decisions", "export", "--format", "ndjson")
    assert done.returncode == 0, done.stderr
    exported = lines(done.stdout)
    assert [d.pop("audit")["seq"] for d in exported] == [1, 2, 3, 4, 5, 6]
    assert exported == decisions  # each payload exactly as returned to the client
    assert "exported 6 decision(s)" in done.stderr

    # The listing's filters, by flag; the file appears once written and is never replaced.
    out = tmp_path / "watch.ndjson"
    done = mayhold(url, "decisions", "export", "--verdict", "watch", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    watch = lines(out.read_text())
    assert [d["decision_id"] for d in watch] == [
        d["decision_id"] for d in decisions if d["verdict"] == "watch"
    ]
    again = mayhold(url, "decisions", "export", "--output", str(out))
    assert again.returncode == 1
    assert "exists; not replacing it" in again.stderr
    assert lines(out.read_text()) == watch

    one = decisions[2]["instrument"]["isin"].lower()  # as the API: case does not matter
    done = mayhold(url, "decisions", "export", "--instrument", one)
    assert [d["decision_id"] for d in lines(done.stdout)] == [decisions[2]["decision_id"]]

    later = mayhold(url, "decisions", "export", "--from", "2999-01-01")
    assert (later.returncode, later.stdout) == (0, "")


@pytest.mark.slow
async def test_export_refuses_bad_flags_in_flag_terms(
    logged: tuple[str, Database, list[dict[str, Any]]],
) -> None:
    url, _, _ = logged
    bad_time = mayhold(url, "decisions", "export", "--from", "last week")
    assert bad_time.returncode == 2
    assert "argument --from: not a date (YYYY-MM-DD) or an RFC 3339 time" in bad_time.stderr
    bad_verdict = mayhold(url, "decisions", "export", "--verdict", "maybe")
    assert bad_verdict.returncode == 2
    assert "--verdict: must be one of allowed, watch, excluded, unknown" in bad_verdict.stderr
    backwards = mayhold(url, "decisions", "verify", "--from", "2026-12-01", "--to", "2026-11-01")
    assert backwards.returncode == 2
    assert "--from must be before --to" in backwards.stderr
    assert "query" not in bad_time.stderr + bad_verdict.stderr + backwards.stderr


@pytest.mark.slow
async def test_verify_passes_a_sound_chain_and_names_the_first_bad_decision(
    logged: tuple[str, Database, list[dict[str, Any]]],
) -> None:
    url, database, decisions = logged
    sound = mayhold(url, "decisions", "verify")
    assert sound.returncode == 0, sound.stderr
    result = json.loads(sound.stdout)
    assert (result["ok"], result["checked"], result["from_seq"], result["to_seq"]) == (
        True,
        6,
        1,
        6,
    )

    await tamper(
        database,
        "UPDATE decisions SET payload = replace(payload, '\"watch\"', '\"allowed\"') WHERE seq = 5",
    )
    broken = mayhold(url, "decisions", "verify")
    assert broken.returncode == 3
    result = json.loads(broken.stdout)
    assert (result["ok"], result["first_bad_seq"]) == (False, 5)
    assert result["first_bad_id"] == decisions[4]["decision_id"]
    assert f"broken at decision seq 5 ({decisions[4]['decision_id']})" in broken.stderr
    assert '"verdict": "allowed"' in broken.stderr  # the forged record, shown to the auditor

    # A range after the forged decision is sound; a range holding it is not.
    after = mayhold(url, "decisions", "verify", "--from", decisions[5]["decided_at"])
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["checked"] == 1
