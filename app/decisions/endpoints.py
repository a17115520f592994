"""Decisions for auditors: stored decisions (one, or listed by filters), replay, and the
verification of the hash chain."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from app.auth.dependencies import Authorize
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.decisions import service
from app.decisions.repository import DecisionFilters
from app.decisions.schemas import ChainVerification, DecisionPage, Replay, StoredDecision
from app.decisions.signing import CheckpointTrust
from app.kit.db import DbSession, read_only_transaction
from app.kit.errors import FieldError, InvalidInput
from app.kit.inputs import Identifier, PolicyKey, Rfc3339, Token
from app.kit.limits import BODY_MAX_DEFAULT
from app.kit.openapi import problem_responses
from app.models import VERDICTS

# Reading only: on SQLite the request's transaction must not hold the write lock the decision
# log's writer needs (a verify of millions of decisions would stall every check meanwhile).
router = APIRouter(
    max_body_size=BODY_MAX_DEFAULT,
    prefix="/v1/decisions",
    tags=["decisions"],
    dependencies=[Depends(read_only_transaction)],
)

Auditor = Annotated[Principal, Depends(Authorize(Scope.decisions_read))]

From = Annotated[
    Rfc3339 | None,
    Query(alias="from", description="RFC 3339 with an offset; decisions decided at or after it."),
]
To = Annotated[
    Rfc3339 | None, Query(description="RFC 3339 with an offset; decisions decided before it.")
]


def _time_range(from_: dt.datetime | None, to: dt.datetime | None) -> None:
    if from_ is not None and to is not None and from_ >= to:
        raise InvalidInput(
            "`from` must be before `to`.",
            errors=[FieldError(loc=("query", "to"), msg="not after `from`")],
        )


def _json(content: Any) -> Response:
    # Stored decisions are plain JSON already: serialize once, fast (a page holds up to 1,000).
    return Response(orjson.dumps(content), media_type="application/json")


@router.get(
    "",
    operation_id="listDecisions",
    response_model=None,
    summary="Stored decisions by instrument, issuer, policy, verdict and time, in cursor pages",
    description=(
        "Filters combine (all must match). Decisions come in chain order, oldest first "
        "(ascending `seq`), each exactly as `GET /v1/decisions/{id}` shows it. Pages are keyset "
        "pages on `seq`: pass `next_cursor` back as `cursor` with the same filters (another "
        "filter with it is a 422); decisions logged meanwhile appear on later pages, and none "
        "is skipped or repeated. `next_cursor` is null when nothing more matches now."
    ),
    responses={200: {"model": DecisionPage}, **problem_responses(401, 403)},
)
async def list_decisions(
    session: DbSession,
    _: Auditor,
    instrument: Annotated[
        Identifier | None,
        Query(
            max_length=12,
            description="ISIN (also finds decisions on an ISIN we did not know when asked).",
        ),
    ] = None,
    issuer_id: Annotated[Identifier | None, Query()] = None,
    policy: Annotated[PolicyKey | None, Query(description="Key.")] = None,
    verdict: Annotated[str | None, Query(description=", ".join(VERDICTS))] = None,
    from_: From = None,
    to: To = None,
    cursor: Annotated[
        Token | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=service.PAGE_MAX, description="Decisions per page.")
    ] = service.PAGE_DEFAULT,
) -> Response:
    _time_range(from_, to)
    if verdict is not None and verdict not in VERDICTS:
        raise InvalidInput(
            f"verdict must be one of {', '.join(VERDICTS)}.",
            errors=[FieldError(loc=("query", "verdict"), msg="unknown verdict")],
        )
    filters = DecisionFilters(
        isin=None if instrument is None else instrument.strip().upper(),
        issuer_id=issuer_id,
        policy_key=policy,
        verdict=verdict,
        decided_from=from_,
        decided_before=to,
    )
    return _json(await service.list_decisions(session, filters, cursor, limit))


# Declared before /{decision_id}, so that "verify" is never read as an id.
@router.get(
    "/verify",
    operation_id="verifyDecisionChain",
    response_model=ChainVerification,
    summary="Check that the stored decisions are unaltered (hash chain) over a time range",
    description=(
        "Walks the decisions decided in [from, to) in chain order, recomputing each hash from "
        "the stored fields and the previous decision's hash (the first links to the decision "
        "before `from`). Stops at the first bad decision and names it. Both bounds optional. "
        "Also checks every checkpoint decided before `to` (all without it), oldest first: its "
        "Ed25519 signature against the public keys this service trusts and its link to the "
        "previous checkpoint; each is reported `signed`, `unsigned`, `bad_signature`, "
        "`unknown_key` or `broken_chain`, and the first bad one is named."
    ),
    responses=problem_responses(401, 403),
)
async def verify_decisions(
    session: DbSession, _: Auditor, request: Request, from_: From = None, to: To = None
) -> ChainVerification:
    _time_range(from_, to)
    trust: CheckpointTrust = request.app.state.checkpoint_trust
    return await service.verify(session, from_, to, trust)


@router.get(
    "/{decision_id}",
    operation_id="getDecision",
    response_model=None,
    summary="A stored decision, exactly as it was returned, with its audit record",
    responses={200: {"model": StoredDecision}, **problem_responses(401, 403, 404)},
)
async def get_decision(decision_id: uuid.UUID, session: DbSession, _: Auditor) -> JSONResponse:
    """The decision as it was returned to the caller, byte for byte the stored JSON, with its
    audit record (who asked, when, the policy versions and data state used, its place in the hash
    chain). 404 for an unknown id. Scope `decisions:read`."""
    # Rendered from the stored text without a response model: nothing may be added, dropped
    # or re-formatted on the way out.
    return JSONResponse(await service.get_decision(session, decision_id))


@router.post(
    "/{decision_id}/replay",
    operation_id="replayDecision",
    response_model=Replay,
    summary="Recompute a stored decision from its policy versions and data state, and compare",
    description=(
        "Evaluates the decision again with the policy versions it names and the data loaded up "
        "to its `data_version` (later loads do not count), and compares field by field: "
        "`differences` lists each differing field by JSON Pointer. `decision_id` and "
        "`decided_at` are assigned by the log and not compared. Writes nothing."
    ),
    responses=problem_responses(401, 403, 404),
)
async def replay_decision(
    decision_id: uuid.UUID, session: DbSession, _: Auditor, request: Request
) -> Response:
    recompute: service.Recompute = request.app.state.recompute
    return _json(await service.replay(session, decision_id, recompute))
