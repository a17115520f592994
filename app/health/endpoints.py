from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.auth.dependencies import Authorize
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.health.schemas import Liveness, Readiness
from app.health.service import DataAges, check_readiness
from app.kit.db import DbSession, get_database, read_only_transaction
from app.kit.metrics import REGISTRY
from app.kit.openapi import problem_responses
from app.kit.time import utcnow

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


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    include_in_schema=False,
    dependencies=[Depends(read_only_transaction)],
)
async def metrics(
    request: Request,
    _: Annotated[Principal, Depends(Authorize(Scope.metrics_read))],
    session: DbSession,
) -> Response:
    """The Prometheus text format. Scope `metrics:read` (README, "Operations"): the series
    name policies, providers and how fresh their data is. The data ages are read from the
    database (``DataAges``); everything else is this process's."""
    state = request.app.state
    if not isinstance(getattr(state, "data_ages", None), DataAges):
        state.data_ages = DataAges()  # one per app: it remembers the data version it read
    await state.data_ages.refresh(session, utcnow().date())
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
