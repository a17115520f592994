"""OpenAPI helpers: documented problem responses, and the export to ``openapi/openapi.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app.kit.problems import PROBLEM_MEDIA_TYPE
from app.kit.schemas import Problem
from app.kit.settings import REPO_ROOT

OPENAPI_PATH = REPO_ROOT / "openapi" / "openapi.json"

_DESCRIPTIONS = {
    401: "No API key, or a key that is wrong or revoked.",
    403: "The key lacks the scope this endpoint needs.",
    404: "No such resource.",
    409: "The request conflicts with the resource's state.",
    413: "The request is larger than the documented limit.",
    415: "The request body's Content-Type is not one this endpoint accepts.",
    422: "The request is not valid; `errors` lists each problem with its location.",
    503: "A dependency (the database) is unavailable; nothing was done. Retry later.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document error statuses as problem+json for a route (422 is always included)."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in sorted({*statuses, 422})
    }


# Operations that never touch the database (liveness): every other one can answer 503.
_WITHOUT_DATABASE = frozenset({"/healthz"})


def _document_service_wide_problems(document: dict[str, Any]) -> None:
    """Add the problems every operation can give whatever its route declares: 422 (unknown
    query parameters are refused everywhere, app.kit.query_params) and 503 (the database is
    unavailable: the key lookup and the data), so the spec lists what the service answers."""
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            statuses = [422] if path in _WITHOUT_DATABASE else [422, 503]
            for status in statuses:
                if str(status) not in responses:
                    entry = problem_responses(status)[status]
                    responses[str(status)] = {
                        "description": entry["description"],
                        "content": entry["content"],
                    }


def add_component_schemas(app: FastAPI, *models: type[BaseModel]) -> None:
    """Publish models that no route parameter names (e.g. a body read raw) under components,
    and the problems every operation can give (``_document_service_wide_problems``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in schema.pop("$defs", {}).items():
                if schemas.setdefault(name, definition) != definition:
                    raise ValueError(f"two different OpenAPI schemas are named {name}")
            schemas[model.__name__] = schema
        _document_service_wide_problems(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def render_openapi(app: FastAPI) -> str:
    """The exported document: stable key order and a trailing newline, so diffs are clean."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_openapi(app: FastAPI, path: Path = OPENAPI_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi(app), encoding="utf-8")
    return path
