"""The published OpenAPI document passes Spectral's `spectral:oas` ruleset (.spectral.yaml)
with no error and no warning, so code generators and API gateways take it as it is.

Spectral is a node tool, installed pinned into .tools/ by scripts/test.sh (scripts/lib.sh,
ensure_spectral); a missing Spectral fails this test with the command that installs it.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from app.kit.openapi import OPENAPI_PATH
from app.kit.settings import REPO_ROOT

SPECTRAL = REPO_ROOT / ".tools" / "spectral" / "node_modules" / ".bin" / "spectral"
RULESET = REPO_ROOT / ".spectral.yaml"
_SEVERITY = {0: "error", 1: "warning", 2: "info", 3: "hint"}


def test_spectral_finds_no_error_and_no_warning(tmp_path: Path) -> None:
    if not SPECTRAL.is_file():
        pytest.fail(
            f"Spectral is not installed at {SPECTRAL}: run "
            "'bash -c \"source scripts/lib.sh && ensure_spectral\"' (scripts/test.sh does)"
        )
    report = tmp_path / "spectral.json"
    run = subprocess.run(
        [
            str(SPECTRAL),
            "lint",
            str(OPENAPI_PATH),
            "--ruleset",
            str(RULESET),
            "--format",
            "json",
            "--output",
            str(report),
            "--fail-severity",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    assert report.is_file(), run.stdout + run.stderr  # Spectral itself failed
    results = json.loads(report.read_text(encoding="utf-8"))
    counts = Counter(_SEVERITY[result["severity"]] for result in results)
    findings = [
        f"{_SEVERITY[r['severity']]} {r['code']} at {'.'.join(map(str, r['path']))}: {r['message']}"
        for r in results
        if r["severity"] <= 1
    ]
    assert (counts["error"], counts["warning"]) == (0, 0), "\n".join(findings)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_ruleset_is_spectral_oas() -> None:
    # The standard rule set, whole: an empty ruleset, or rules turned off, would pass anything.
    ruleset = yaml.safe_load(RULESET.read_text(encoding="utf-8"))
    assert ruleset == {"extends": ["spectral:oas"]}
