"""`mayhold --help` and `--version` import nothing heavy, and errors speak in flags.

What a command imports decides how long `mayhold --help` takes (a second with SQLAlchemy,
FastAPI, alembic and pandas loaded; under 0.1 s without, README "Command line"). Timings are
not asserted (they depend on the machine); what is imported is.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from app import cli
from app.kit.errors import FieldError, InvalidInput

HEAVY = ("sqlalchemy", "fastapi", "starlette", "alembic", "pandas", "uvicorn", "asyncpg", "tqdm")

# Runs the command line's main() in a fresh interpreter and reports what it imported.
PROBE = """
import contextlib, io, json, sys
import app.cli
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        app.cli.main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"code": code, "out": out.getvalue(), "heavy": heavy}}))
""".format(heavy=HEAVY)


def probe(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    result: dict[str, object] = json.loads(done.stdout)
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
def test_progress_bar_only_on_a_terminal(
    terminal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
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
