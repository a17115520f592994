from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.auth.dependencies import AuthorizeAny, CurrentPrincipal, require_scope
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.decisions.log import DecisionLog
from app.kit.db import DbSession, read_only_sessions
from app.kit.inputs import Identifier, PolicyKey, Rfc3339, RowNumber
from app.kit.limits import BODY_MAX_CHECKS, BODY_MAX_DEFAULT
from app.kit.openapi import problem_responses
from app.screening import service
from app.screening.index import VerdictIndex
from app.screening.schemas import CheckBatch, CheckBatchResult, Decision

router = APIRouter(max_body_size=BODY_MAX_DEFAULT, prefix="/v1", tags=["checks"])


@dataclass(frozen=True, slots=True)
class Checker:
    """What a check needs, resolved as ONE dependency: the hot path of the service, where
    each FastAPI dependency costs as much as the check's own work. Checks only read (a
    read-only session, opened only when the compiled index cannot answer); their one write
    is the decision log's own transaction."""

    principal: Principal
    log: DecisionLog
    index: VerdictIndex | None
    sessions: async_sessionmaker[AsyncSession]
    request_id: str | None


async def checker(request: Request, principal: CurrentPrincipal) -> Checker:
    index = getattr(request.app.state, "verdict_index", None)
    request_id = getattr(request.state, "request_id", None)
    return Checker(
        principal=require_scope(principal, Scope.check),
        log=request.app.state.decision_log,
        index=index if isinstance(index, VerdictIndex) else None,
        sessions=read_only_sessions(request),
        request_id=request_id if isinstance(request_id, str) else None,
    )


CheckerDep = Annotated[Checker, Depends(checker)]


def _json(content: Any) -> Response:
    # Decisions are already JSON-ready dicts (stored and hashed as such): serialize once, fast.
    return Response(orjson.dumps(content), media_type="application/json")


@router.get(
    "/check",
    response_model=Decision,
    summary="May we hold this instrument under this policy?",
    description=(
        "The verdict with the rules, data and policy version behind it. The decision is stored "
        "durably before it is returned. `as_of` in the past answers with the policy version in "
        "force then and only the data loaded by then."
    ),
    responses=problem_responses(401, 403, 404, 503),
)
async def check_one(
    checker: CheckerDep,
    policy: Annotated[PolicyKey, Query(description="Policy key, e.g. rpf.")],
    instrument: Annotated[Identifier, Query(description="ISIN.")],
    as_of: Annotated[
        Rfc3339 | None, Query(description="RFC 3339 with an offset; default now.")
    ] = None,
) -> Response:
    (decision,) = await service.check(
        checker.sessions,
        checker.log,
        checker.principal.actor,
        checker.request_id,
        policy,
        [instrument],
        as_of,
        strict_isins=True,
        index=checker.index,
    )
    return _json(decision)


@router.post(
    "/checks",
    response_model=CheckBatchResult,
    summary="Check up to 10,000 instruments at once, answered in the order asked",
    description=(
        "A malformed ISIN does not fail the batch: its decision is `unknown` (fail closed) with "
        "a reason naming the problem, and it is logged like every other decision. The body is "
        f"at most {BODY_MAX_CHECKS:,} bytes (413), each identifier at most 64 characters (422)."
    ),
    responses=problem_responses(401, 403, 404, 413, 503),
    max_body_size=BODY_MAX_CHECKS,
)
async def check_many(body: CheckBatch, checker: CheckerDep) -> Response:
    decisions = await service.check(
        checker.sessions,
        checker.log,
        checker.principal.actor,
        checker.request_id,
        body.policy,
        body.instruments,
        body.as_of,
        strict_isins=False,
        index=checker.index,
    )
    return _json({"decisions": decisions})


@router.post(
    "/policies/{key}/versions/{number}/impact",
    tags=["policies"],
    summary="Before approving: which instruments and issuers would change verdict, and why",
    description=(
        "Evaluates the whole universe under this version and under the version in force now "
        "(same data), and lists every instrument whose verdict or firing rules differ."
    ),
    responses=problem_responses(401, 403, 404),
)
async def policy_impact(
    key: PolicyKey,
    number: RowNumber,
    session: DbSession,
    _: Annotated[Principal, Depends(AuthorizeAny(Scope.policies_write, Scope.policies_approve))],
) -> Response:
    return _json(await service.impact(session, key, number))
