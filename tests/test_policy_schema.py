import json

from app.policies.document import PolicyDocument
from app.policies.schema_file import POLICY_SCHEMA_PATH, render_policy_schema


def test_exported_policy_schema_is_current() -> None:
    exported = POLICY_SCHEMA_PATH.read_text(encoding="utf-8") if POLICY_SCHEMA_PATH.exists() else ""
    assert exported == render_policy_schema(), (
        "openapi/policy.schema.json is stale: run 'python scripts/export_policy_schema.py' "
        "and commit it"
    )


def test_policy_schema_names_the_vocabulary() -> None:
    schema = json.loads(render_policy_schema())
    assert schema["title"] == "PolicyDocument"
    assert schema["properties"].keys() == PolicyDocument.model_fields.keys()
    threshold = schema["$defs"]["Threshold"]
    assert "revenue_pct.tobacco" in threshold["properties"]["metric"]["enum"]
    assert "msci" in threshold["properties"]["providers"]["anyOf"][0]["items"]["enum"]
    assert threshold["additionalProperties"] is False
