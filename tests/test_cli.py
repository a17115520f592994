"""The command line as an operator uses it: real processes, real databases."""

import json
import signal
import socket
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.auth.scopes import Scope
from app.cli import _create_key, _prepare_demo
from app.kit.db import create_engine
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from tests.support.databases import DIALECTS, scratch_database
from tests.support.processes import answering, mayhold, serve, shell


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_migrate_then_keys_create_prints_a_working_key_last(
    dialect: str, tmp_path: Path
) -> None:
    async with scratch_database(dialect, tmp_path) as url:
        refused = mayhold(url, "keys", "create", "--name", "early", "--scopes", "check")
        assert refused.returncode != 0
        assert "mayhold migrate" in refused.stderr

        assert mayhold(url, "migrate").returncode == 0
        assert mayhold(url, "migrate").returncode == 0  # idempotent

        created = mayhold(url, "keys", "create", "--name", "oms", "--scopes", "check,lists:read")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("mh_")

        bad = mayhold(url, "keys", "create", "--name", "x", "--scopes", "check,root")
        assert bad.returncode == 2
        assert "unknown scope(s): root" in bad.stderr

        engine = create_engine(url)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT name, secret_hash FROM api_keys"))).all()
        await engine.dispose()
        assert [r.name for r in rows] == ["oms"]
        assert key not in rows[0].secret_hash

        listed = mayhold(url, "keys", "list")
        assert "oms\tcheck,lists:read" in listed.stdout
        assert key not in listed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_serve_migrates_answers_and_logs_json_with_request_ids(
    dialect: str, tmp_path: Path
) -> None:
    async with scratch_database(dialect, tmp_path) as url:
        process, port = serve(url, log_level="INFO", capture=True)
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base) as client:
                await answering(client, process=process)
                ready = await client.get("/readyz", headers={"x-request-id": "probe-1"})
                assert ready.status_code == 200, ready.text  # serve migrated the database
                assert (await client.get("/v1/whoami")).status_code == 401
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=20)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.returncode in (0, -signal.SIGTERM), stderr
        assert "Application shutdown complete." in stderr

    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "no log output"
    requests = [entry for entry in lines if entry.get("event") == "request"]
    readyz = next(entry for entry in requests if entry["path"] == "/readyz")
    assert readyz["request_id"] == "probe-1"
    assert readyz["status"] == 200
    assert readyz["route"] == "/readyz"
    assert all("request_id" in entry for entry in requests)
    assert all({"timestamp", "level", "event"} <= entry.keys() for entry in lines)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_ingest_loads_like_the_endpoint_and_reports_row_errors(
    dialect: str, tmp_path: Path
) -> None:
    fixtures = Path(__file__).parent / "fixtures" / "datasets"
    async with scratch_database(dialect, tmp_path) as url:
        assert mayhold(url, "migrate").returncode == 0
        loaded = mayhold(url, "ingest", "--kind", "issuers", str(fixtures / "issuers.csv"))
        assert loaded.returncode == 0, loaded.stderr
        dataset = json.loads(loaded.stdout)
        assert dataset["rows"] == 17
        assert dataset["loaded_by"].startswith("cli:")

        again = mayhold(url, "ingest", "--kind", "issuers", str(fixtures / "issuers.csv"))
        assert again.returncode == 0
        assert json.loads(again.stdout)["id"] == dataset["id"]
        assert "loaded before" in again.stderr

        bad = tmp_path / "bad.csv"
        bad.write_text("isin,issuer_id,asset_class\nUS7181721091,PMI,equity\n")
        rejected = mayhold(url, "ingest", "--kind", "instruments", str(bad))
        assert rejected.returncode == 1
        assert "row 2, isin: 'US7181721091' is not a valid ISIN" in rejected.stderr


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_ingest_appends_or_replaces_a_policys_list(dialect: str, tmp_path: Path) -> None:
    fixtures = Path(__file__).parent / "fixtures" / "datasets"
    async with scratch_database(dialect, tmp_path) as url:
        assert mayhold(url, "migrate").returncode == 0
        for kind in ("issuers", "instruments"):
            universe = mayhold(url, "ingest", "--kind", kind, str(fixtures / f"{kind}.csv"))
            assert universe.returncode == 0, universe.stderr
        for key in ("rpf", "asr"):  # a list entry's policy must exist (a draft will do)
            policy = Path(__file__).parents[1] / "policies" / f"{key}.yaml"
            loaded = mayhold(url, "policies", "load", str(policy))
            assert loaded.returncode == 0, loaded.stderr
        lists = fixtures / "list_entries.csv"
        appended = mayhold(url, "ingest", "--kind", "list-entries", str(lists))
        assert appended.returncode == 0, appended.stderr
        assert json.loads(appended.stdout)["mode"] == "append"

        header = tmp_path / "revoked.csv"
        header.write_text("policy,issuer_ref,list,reason,decided_on\n")
        args = ("--kind", "list-entries", "--mode", "replace", "--policy", "rpf", str(header))
        emptied = mayhold(url, "ingest", *args)
        assert emptied.returncode == 0, emptied.stderr
        dataset = json.loads(emptied.stdout)
        assert (dataset["rows"], dataset["mode"], dataset["policy"]) == (0, "replace", "rpf")
        assert dataset["summary"]["removed"]["count"] == 2  # rpf's two entries; asr's stay

        wrong = mayhold(url, "ingest", "--kind", "issuers", "--mode", "replace", str(header))
        assert wrong.returncode == 1
        assert "list-entries loads only" in wrong.stderr


@pytest.mark.slow
async def test_demo_refuses_a_port_in_use_before_printing_a_key(tmp_path: Path) -> None:
    """A demo that cannot serve must not issue and print a key first, then die in a log line."""
    async with scratch_database("sqlite", tmp_path) as url:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            refused = mayhold(url, "demo", "--port", str(port))
        assert refused.returncode == 2, refused.stderr
        assert f"--port {port}" in refused.stderr
        assert "MAYHOLD_KEY" not in refused.stdout
        engine = create_engine(url)
        async with engine.connect() as conn:
            tables = (
                await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            ).all()
        await engine.dispose()
        assert tables == []  # nothing migrated, nothing loaded, no key


async def test_each_demo_run_revokes_the_earlier_demo_keys(tmp_path: Path) -> None:
    """One demo key works at a time (runs used to pile admin keys up); other keys stay."""
    async with scratch_database("sqlite", tmp_path) as url:
        settings = Settings(database_url=url)
        await upgrade_to_head_async(settings)
        first, _, revoked = await _prepare_demo(settings, companies=120)
        assert revoked == []
        operator = await _create_key(settings, "operator", frozenset({Scope.admin}))
        second, _, revoked = await _prepare_demo(settings, companies=120)
        assert revoked == [first.principal.name]
        engine = create_engine(url)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT name, revoked_at IS NULL FROM api_keys"))).all()
        await engine.dispose()
        active = {name for name, is_active in rows if is_active}
        assert active == {second.principal.name, operator.principal.name}


def test_a_bad_setting_is_named_in_one_line_not_a_traceback() -> None:
    """MAYHOLD_* values are validated at start: each wrong one named, exit 2, no traceback."""
    result = shell(
        "mayhold decisions verify",
        {
            "MAYHOLD_REQUIRE_SIGNED_CHECKPOINTS": "yes-please",
            "MAYHOLD_DECISION_PARTITION_MIN_ROWS": "abc",
        },
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("mayhold: MAYHOLD_REQUIRE_SIGNED_CHECKPOINTS: ") for line in lines)
    assert any(line.startswith("mayhold: MAYHOLD_DECISION_PARTITION_MIN_ROWS: ") for line in lines)


async def test_serve_refuses_a_missing_key_file_before_touching_the_database(
    tmp_path: Path,
) -> None:
    """A wrong MAYHOLD_CHECKPOINT_KEY_FILE stops `mayhold serve` in one line, exit 1, and the
    database is left as it was (not migrated); a command on an unmigrated database names it."""
    async with scratch_database("sqlite", tmp_path) as url:
        missing = tmp_path / "no-such-key.pem"
        result = shell(
            "mayhold serve --port 1",
            {"MAYHOLD_DATABASE_URL": url, "MAYHOLD_CHECKPOINT_KEY_FILE": str(missing)},
        )
        assert result.returncode == 1, result.stderr
        assert str(missing) in result.stderr
        assert "Traceback" not in result.stderr
        verify = shell("mayhold decisions verify", {"MAYHOLD_DATABASE_URL": url})
        assert verify.returncode == 1
        assert "is not migrated" in verify.stderr
        assert url.split("///")[-1] in verify.stderr
