"""The policy document's JSON Schema, published as ``openapi/policy.schema.json``."""

from __future__ import annotations

import json
from pathlib import Path

from app.kit.settings import REPO_ROOT
from app.policies.document import policy_json_schema

POLICY_SCHEMA_PATH = REPO_ROOT / "openapi" / "policy.schema.json"


def render_policy_schema() -> str:
    """Stable key order and a trailing newline, so diffs are clean."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_policy_schema(path: Path = POLICY_SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_policy_schema(), encoding="utf-8")
    return path
