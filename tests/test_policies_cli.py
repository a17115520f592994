"""``mayhold policies load`` and ``export`` as an operator runs them: real processes, databases."""

import hashlib
import json
from pathlib import Path

import pytest

from app.policies.document import document_sha256, parse_document
from tests.support.databases import DIALECTS, scratch_database
from tests.support.policies import SHIPPED, shipped, shipped_path
from tests.support.processes import mayhold, shell


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_load_and_export_the_shipped_policies(dialect: str, tmp_path: Path) -> None:
    async with scratch_database(dialect, tmp_path) as url:
        assert mayhold(url, "migrate").returncode == 0
        for key in SHIPPED:
            loaded = mayhold(url, "policies", "load", str(shipped_path(key)))
            assert loaded.returncode == 0, loaded.stderr
            sha = document_sha256(parse_document(shipped(key)))
            fields = dict(part.split("=", 1) for part in loaded.stdout.split())
            assert fields == {"key": key, "version": "1", "status": "draft", "sha256": sha}

        exported = mayhold(url, "policies", "export", "rpf", "1")
        assert exported.returncode == 0, exported.stderr
        canonical = exported.stdout.encode("utf-8")
        sha = document_sha256(parse_document(shipped("rpf")))
        assert hashlib.sha256(canonical).hexdigest() == sha
        assert json.loads(canonical)["key"] == "rpf"

        # Round trip: the exported JSON loaded again is the same document (same hash).
        again_path = tmp_path / "rpf.json"
        again_path.write_bytes(canonical)
        again = mayhold(url, "policies", "load", str(again_path))
        assert again.returncode == 0, again.stderr
        assert f"sha256={sha}" in again.stdout
        assert "same document" in again.stdout

        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "key: bad\ntitle: Bad\nrules:\n  - id: x\n    title: x\n    source: s\n"
            "    when: {metric: revenue_pct.tobacco, op: '>', value: 500}\n    outcome: exclude\n"
        )
        rejected = mayhold(url, "policies", "load", str(bad))
        assert rejected.returncode == 1
        assert "body.rules.0.when.value: 500 is above 100" in rejected.stderr


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_export_piped_to_sha256sum_is_the_versions_hash(dialect: str, tmp_path: Path) -> None:
    """The README's check, as an auditor types it: the export's bytes are exactly those the
    version's sha256 covers (no newline or anything else added)."""
    async with scratch_database(dialect, tmp_path) as url:
        assert mayhold(url, "migrate").returncode == 0
        loaded = mayhold(url, "policies", "load", str(shipped_path("rpf")))
        assert loaded.returncode == 0, loaded.stderr
        published = dict(part.split("=", 1) for part in loaded.stdout.split())["sha256"]

        piped = shell("mayhold policies export rpf 1 | sha256sum", {"MAYHOLD_DATABASE_URL": url})
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == f"{published}  -\n"
