"""Decisions for auditors: one stored decision, and the verification of the hash chain."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from app.auth.dependencies import Authorize
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.decisions import service
from app.decisions.schemas import ChainVerification, StoredDecision
from app.kit.db import DbSession, read_only_transaction
from app.kit.errors import InvalidInput
from app.kit.openapi import problem_responses

# Reading only: on SQLite the request's transaction must not hold the write lock the decision
# log's writer needs (a verify of millions of decisions would stall every check meanwhile).
router = APIRouter(
    prefix="/v1/decisions", tags=["decisions"], dependencies=[Depends(read_only_transaction)]
)

Auditor = Annotated[Principal, Depends(Authorize(Scope.decisions_read))]


# Declared before /{decision_id}, so that "verify" is never read as an id.
@router.get(
    "/verify",
    response_model=ChainVerification,
    summary="Check that the stored decisions are unaltered (hash chain) over a time range",
    description=(
        "Walks the decisions decided in [from, to) in chain order, recomputing each hash from "
        "the stored fields and the previous decision's hash (the first links to the decision "
        "before `from`). Stops at the first bad decision and names it. Both bounds optional."
    ),
    responses=problem_responses(401, 403),
)
async def verify_decisions(
    session: DbSession,
    _: Auditor,
    from_: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="RFC 3339; decisions decided at or after it."),
    ] = None,
    to: Annotated[
        AwareDatetime | None, Query(description="RFC 3339; decisions decided before it.")
    ] = None,
) -> ChainVerification:
    if from_ is not None and to is not None and from_ >= to:
        raise InvalidInput("`from` must be before `to`.")
    return await service.verify(session, from_, to)


@router.get(
    "/{decision_id}",
    response_model=None,
    summary="A stored decision, exactly as it was returned, with its audit record",
    responses={200: {"model": StoredDecision}, **problem_responses(401, 403, 404)},
)
async def get_decision(decision_id: uuid.UUID, session: DbSession, _: Auditor) -> JSONResponse:
    # Rendered from the stored text without a response model: nothing may be added, dropped
    # or re-formatted on the way out.
    return JSONResponse(await service.get_decision(session, decision_id))
