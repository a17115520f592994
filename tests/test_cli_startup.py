"""`mayhold --help` and `--version` import nothing heavy, and errors speak in flags.

What a command imports decides how long `mayhold --help` takes (a second with SQLAlchemy,
FastAPI, alembic and pandas loaded; under 0.1 s without, README "Command line"). Timings are
not asserted (they depend on the machine); what is imported is.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TypedDict

import pytest

from app import cli
from app.kit.errors import FieldError, InvalidInput
from app.kit.migrations import declared_heads, head_revisions
from app.kit.settings import Settings
from tests.support.processes import mayhold

HEAVY = ("sqlalchemy", "fastapi", "starlette", "alembic", "pandas", "uvicorn", "asyncpg", "tqdm")

# Runs the command line's main() in a fresh interpreter and reports what it imported.
PROBE = f"""
import contextlib, io, json, sys
import app.cli
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = app.cli.main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"code": code, "out": out.getvalue(), "heavy": heavy}}))
"""


class Probe(TypedDict):
    code: int | str | None  # main()'s return value, or SystemExit's code
    out: str  # what it printed on standard output
    heavy: list[str]  # the HEAVY modules it imported


def probe(*args: str, env: dict[str, str] | None = None) -> Probe:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parents[1],
        env={**os.environ, **(env or {})},
    )
    result: Probe = json.loads(done.stdout)
    return result


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [("--help",), ("--version",), ("ingest", "--help"), ("decisions", "export", "--help")],
)
def test_help_and_version_import_no_database_or_web_library(args: tuple[str, ...]) -> None:
    result = probe(*args)
    assert result["code"] == 0
    assert result["heavy"] == []
    assert result["out"]


@pytest.mark.slow
def test_version_is_the_installed_distributions() -> None:
    assert probe("--version")["out"] == f"mayhold {version('mayhold')}\n"


@pytest.mark.slow
def test_a_bad_flag_is_refused_before_anything_heavy_is_imported() -> None:
    result = probe("decisions", "export", "--from", "yesterday")
    assert result["code"] == 2
    assert result["heavy"] == []


@pytest.mark.slow
def test_ingest_loads_without_the_web_framework_or_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert mayhold(url, "migrate").returncode == 0
    issuers = Path(__file__).parent / "fixtures" / "datasets" / "issuers.csv"
    result = probe("ingest", "--kind", "issuers", str(issuers), env={"MAYHOLD_DATABASE_URL": url})
    assert result["code"] == 0
    assert json.loads(result["out"])["rows"] == 17
    # The load itself needs SQLAlchemy (and pandas, for the file's country names).
    assert set(result["heavy"]) & {"fastapi", "starlette", "alembic", "uvicorn"} == set()


def test_service_errors_name_flags_not_query_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli._print_error(
        InvalidInput(
            "A facts load needs ?provider=: one of iss, msci.",
            errors=[FieldError(loc=("query", "as_of"), msg="required for this kind")],
        )
    )
    err = capsys.readouterr().err
    assert err == "mayhold: A facts load needs --provider : one of iss, msci.\n" + (
        "  --as-of: required for this kind\n"
    )


def test_time_flags_take_a_day_or_a_time_with_an_offset() -> None:
    assert cli._time_or_date("2026-11-30").isoformat() == "2026-11-30T00:00:00+00:00"
    assert cli._time_or_date("2026-11-30T10:00:00+01:00").isoformat() == (
        "2026-11-30T09:00:00+00:00"
    )
    for text in ("yesterday", "2026-11-30T10:00:00", "2026-13-01"):
        with pytest.raises(Exception, match="not a date"):
            cli._time_or_date(text)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_only_on_a_terminal(terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(cli, "_PROGRESS_DELAY_SECONDS", 0)  # as if a second had passed
    with cli._progress("loading issuers", "rows", total=50) as bar:
        bar.update(25)
        bar.refresh()  # tqdm redraws at most every 0.1 s by itself
    shown = stderr.getvalue()
    if terminal:
        assert "loading issuers" in shown
        assert "25/50" in shown
    else:
        assert shown == ""


def test_heads_read_from_the_scripts_are_alembics(tmp_path: Path) -> None:
    settings = Settings(database_url="sqlite+aiosqlite:///unused.db")
    assert declared_heads(settings.migrations_dir) == head_revisions(settings)

    versions = tmp_path / "versions"
    versions.mkdir()
    scripts = {
        "a": 'revision: str = "a"\ndown_revision: str | None = None\n',
        "b": 'revision = "b"\ndown_revision = "a"\n',
        "c": 'revision = "c"\ndown_revision = "a"\n',
        "m": 'revision = "m"\ndown_revision = ("b", "c")\n',  # a merge
        "d": 'revision = "d"\ndown_revision = "a"\n',  # a second head
    }
    for name, text in scripts.items():
        (versions / f"{name}.py").write_text(text)
    assert declared_heads(tmp_path) == frozenset({"m", "d"})
    (versions / "x.py").write_text('revision = make_id()\ndown_revision = "m"\n')
    assert declared_heads(tmp_path) is None  # not a literal: Alembic's own answer is needed


def test_a_loads_as_of_is_a_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli._date("2026-06-30") == dt.date(2026, 6, 30)
    for text in ("30/06/2026", "2026-06-31", "20260630"):
        with pytest.raises(SystemExit) as exit_:
            cli._parser().parse_args(["ingest", "--kind", "facts", "--as-of", text, "f.csv"])
        assert exit_.value.code == 2
        assert f"argument --as-of: not a date (YYYY-MM-DD): {text!r}" in capsys.readouterr().err
