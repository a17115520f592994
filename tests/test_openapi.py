import json
import re
from pathlib import Path
from typing import Any

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


_CAMEL_CASE = re.compile(r"[a-z]+(?:[A-Z][a-z0-9]*)*")
OPERATION_IDS = Path(__file__).parent / "fixtures" / "openapi" / "operation_ids.txt"


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_operation_is_described_tagged_and_named_in_camel_case() -> None:
    """Any route added later is held to this too: a description (the endpoint's docstring:
    shapes, errors, scope), tags declared at the top level with a description, and an
    explicit camelCase operationId (FastAPI's generated ones read like
    ``get_list_v1_lists__policy__get``)."""
    document = json.loads(render_openapi(create_app(Settings())))
    declared = {tag["name"]: tag.get("description", "") for tag in document["tags"]}
    assert all(declared.values()), declared
    seen: dict[str, str] = {}
    for method, path, operation in _operations(document):
        where = f"{method} {path}"
        assert operation.get("description", "").strip(), f"{where}: no description"
        assert operation.get("summary", "").strip(), f"{where}: no summary"
        assert operation.get("tags"), f"{where}: no tag"
        for tag in operation["tags"]:
            assert tag in declared, f"{where}: tag {tag!r} not in app.main.OPENAPI_TAGS"
        operation_id = operation.get("operationId", "")
        assert _CAMEL_CASE.fullmatch(operation_id), f"{where}: operationId {operation_id!r}"
        assert operation_id not in seen, f"{where} and {seen[operation_id]}: {operation_id}"
        seen[operation_id] = where
    assert document["servers"]
    assert document["info"]["contact"]


def test_operation_ids_are_stable() -> None:
    """Generated clients name their methods after operationIds: renaming a Python function
    must not rename one (each route names its own ``operation_id``), and a new or renamed id
    is a deliberate change to tests/fixtures/openapi/operation_ids.txt."""
    document = json.loads(render_openapi(create_app(Settings())))
    pinned = {
        tuple(line.split())
        for line in OPERATION_IDS.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    current = {
        (operation["operationId"], method, path)
        for method, path, operation in _operations(document)
    }
    assert current == pinned, {
        "not pinned": sorted(current - pinned),
        "pinned, gone": sorted(pinned - current),
    }
