"""Write the policy document's JSON Schema to openapi/policy.schema.json (a test fails when stale).

Usage: python scripts/export_policy_schema.py
"""

from app.policies.schema_file import export_policy_schema

if __name__ == "__main__":
    print(f"wrote {export_policy_schema()}")
