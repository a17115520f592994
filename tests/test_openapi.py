import json

from app.kit.openapi import OPENAPI_PATH, render_openapi
from app.kit.settings import Settings
from app.main import create_app


def test_exported_openapi_is_current() -> None:
    current = render_openapi(create_app(Settings()))
    exported = OPENAPI_PATH.read_text(encoding="utf-8") if OPENAPI_PATH.exists() else ""
    assert exported == current, (
        "openapi/openapi.json is stale: run 'python scripts/export_openapi.py' and commit it"
    )


def test_openapi_documents_auth_and_problem_responses() -> None:
    document = json.loads(render_openapi(create_app(Settings())))
    assert "Problem" in document["components"]["schemas"]
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    keys = document["paths"]["/v1/keys"]["get"]
    assert "application/problem+json" in keys["responses"]["403"]["content"]
    assert keys["security"] == [{"HTTPBearer": []}]


def test_openapi_publishes_the_policy_document_for_both_body_types() -> None:
    document = json.loads(render_openapi(create_app(Settings())))
    assert "rules" in document["components"]["schemas"]["PolicyDocument"]["properties"]
    post = document["paths"]["/v1/policies/{key}/versions"]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "application/yaml"}
    assert content["application/yaml"]["schema"] == {"$ref": "#/components/schemas/PolicyDocument"}
    assert "415" in post["responses"]


def test_every_operation_lists_the_problems_the_service_can_give() -> None:
    """422 everywhere (unknown query parameters), 503 wherever the database is used: as
    problem+json, whatever a route declares itself."""
    document = json.loads(render_openapi(create_app(Settings())))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected = {"422"} if path == "/healthz" else {"422", "503"}
            for status in expected:
                response = operation["responses"].get(status)
                assert response is not None, (method, path, status)
                assert "application/problem+json" in response["content"], (method, path)
