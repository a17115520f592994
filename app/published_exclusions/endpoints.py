from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from app.auth.dependencies import Authorize, CurrentPrincipal
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.kit.db import DbSession
from app.kit.inputs import Identifier, RowNumber
from app.kit.limits import BODY_MAX_DEFAULT
from app.kit.openapi import problem_responses
from app.published_exclusions import service
from app.published_exclusions.schemas import (
    CandidateList,
    EntryDetail,
    EntryList,
    EntryStatus,
    ProposeRequest,
    StepRequest,
)

router = APIRouter(
    max_body_size=BODY_MAX_DEFAULT, prefix="/v1/published-exclusions", tags=["published-exclusions"]
)

StewardPrincipal = Annotated[Principal, Depends(Authorize(Scope.data_write))]
EntryId = Annotated[
    str,
    Path(
        max_length=24,
        description="`{dataset_id}-{source_row}`: the published-exclusions load and the row.",
    ),
]


@router.get(
    "",
    response_model=EntryList,
    operation_id="listPublishedExclusions",
    summary="Published exclusion entries and their resolution status",
    description=(
        "Every entry of the published-exclusions loads, as published, with its status: "
        "`unresolved` (no step yet), `proposed` (a steward named an issuer; awaiting a second "
        "key), `confirmed` (affects verdicts through peer_exclusion.* facts), `rejected` (a "
        "proposal rejected or a confirmation revoked). `?status=unresolved` is the steward's "
        "work list: those names affect no verdict."
    ),
    responses=problem_responses(401),
)
async def list_entries(
    session: DbSession,
    _: CurrentPrincipal,
    status: Annotated[EntryStatus | None, Query(description="Only entries with it.")] = None,
    investor: Annotated[
        Identifier | None, Query(description="Only this investor's, as published (e.g. KLP).")
    ] = None,
    dataset_id: Annotated[RowNumber | None, Query(description="Only this load's.")] = None,
) -> EntryList:
    return await service.list_entries(
        session, status=status, investor=investor, dataset_id=dataset_id
    )


@router.get(
    "/{entry_id}",
    response_model=EntryDetail,
    operation_id="getPublishedExclusion",
    summary="One entry, its status and every resolution step",
    description=(
        "The entry as published (investor, company, criterion, decision, date with its "
        "precision, source URL) and every resolution step (who, when, the issuer, the "
        "confidence). Any key. 404 for an entry id no load has."
    ),
    responses=problem_responses(401, 404),
)
async def get_entry(entry_id: EntryId, session: DbSession, _: CurrentPrincipal) -> EntryDetail:
    return await service.get_entry(session, entry_id)


@router.get(
    "/{entry_id}/candidates",
    operation_id="listPublishedExclusionCandidates",
    response_model=CandidateList,
    summary="Issuers whose names match the entry's company name, with a confidence",
    description=(
        "Exact and fuzzy matching (rapidfuzz token_sort_ratio) of the published name, "
        "normalised (legal forms, punctuation, 'The', parenthesised former names), against "
        "every issuer known now. Confidence 0..1: 1 only for equal normalised names; none "
        "below 0.7."
    ),
    responses=problem_responses(401, 404),
)
async def candidates(
    entry_id: EntryId,
    session: DbSession,
    _: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> CandidateList:
    return await service.candidates(session, entry_id, limit)


@router.post(
    "/{entry_id}/proposals",
    operation_id="proposePublishedExclusionIssuer",
    response_model=EntryDetail,
    status_code=201,
    summary="Propose the issuer an entry's company is (step 1 of 2)",
    description=(
        "Records the proposal with the name match's confidence. It affects no verdict until "
        "another key confirms it. 409 when the entry is confirmed (revoke it first); 422 for an "
        "issuer not known."
    ),
    responses=problem_responses(401, 403, 404, 409),
)
async def propose(
    entry_id: EntryId, body: ProposeRequest, session: DbSession, principal: StewardPrincipal
) -> EntryDetail:
    return await service.propose(session, principal.actor, entry_id, body.issuer_id, body.note)


@router.post(
    "/{entry_id}/confirm",
    operation_id="confirmPublishedExclusion",
    response_model=EntryDetail,
    summary="Confirm the proposal (four eyes: not the proposing key)",
    description=(
        "Writes the issuer's peer_exclusion.excluded or peer_exclusion.observation fact as a "
        "new dataset (`published-exclusion-resolution`): the data version moves and checks "
        "see it. 403 `four-eyes-required` for the proposing key; 409 unless proposed."
    ),
    responses=problem_responses(401, 403, 404, 409),
)
async def confirm(
    entry_id: EntryId,
    session: DbSession,
    principal: StewardPrincipal,
    body: StepRequest | None = None,
) -> EntryDetail:
    return await service.confirm(session, principal.actor, entry_id, body.note if body else None)


@router.post(
    "/{entry_id}/reject",
    operation_id="rejectPublishedExclusion",
    response_model=EntryDetail,
    summary="Reject the proposal (the name is not that issuer), or withdraw a revocation",
    description=(
        "Scope `data:write`. On a proposed entry: records the rejection; the entry affects no "
        "verdict and may be proposed again. On a revocation_proposed entry: withdraws the "
        "request (the confirmation stands). 409 otherwise."
    ),
    responses=problem_responses(401, 403, 404, 409),
)
async def reject(
    entry_id: EntryId,
    session: DbSession,
    principal: StewardPrincipal,
    body: StepRequest | None = None,
) -> EntryDetail:
    return await service.reject(session, principal.actor, entry_id, body.note if body else None)


@router.post(
    "/{entry_id}/revoke",
    operation_id="revokePublishedExclusion",
    response_model=EntryDetail,
    summary="Revoke a confirmation (four eyes: asked by one key, done by another)",
    description=(
        "Scope `data:write`. Revoking loosens verdicts, so it takes two keys: on a confirmed "
        "entry the call asks (status revocation_proposed; the confirmation still stands); on "
        "a revocation_proposed entry, by another key (403 `four-eyes-required` for the same), "
        "it revokes: the issuer's peer_exclusion facts are recomputed from the entries still "
        "confirmed to it and recorded as a new dataset (the data version moves). 409 "
        "otherwise."
    ),
    responses=problem_responses(401, 403, 404, 409),
)
async def revoke(
    entry_id: EntryId,
    session: DbSession,
    principal: StewardPrincipal,
    body: StepRequest | None = None,
) -> EntryDetail:
    return await service.revoke(session, principal.actor, entry_id, body.note if body else None)
