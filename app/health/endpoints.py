from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.health.schemas import Liveness, Readiness
from app.health.service import check_readiness
from app.kit.db import get_database
from app.kit.metrics import REGISTRY
from app.kit.openapi import problem_responses

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", operation_id="getLiveness", response_model=Liveness, summary="The process is up"
)
async def healthz() -> Liveness:
    """Liveness: `{"status": "ok"}` while the process answers. Reads nothing (not the
    database): a failing database makes `/readyz` fail, not this. No key needed."""
    return Liveness()


@router.get(
    "/readyz",
    operation_id="getReadiness",
    response_model=Readiness,
    summary="The database is reachable and migrated to this release's head",
    responses=problem_responses(503),
)
async def readyz(request: Request) -> Readiness:
    """Readiness: `{"status": "ready", "database", "revision"}` when the database
    answers within the readiness timeout and its schema is at this release's migration head;
    otherwise 503 problem+json saying which (unreachable, not migrated, another revision). No key
    needed."""
    return await check_readiness(
        get_database(request).engine,
        request.app.state.expected_heads,
        request.app.state.settings.readiness_timeout,
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
