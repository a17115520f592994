from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import CurrentPrincipal
from app.issuers import service
from app.issuers.schemas import CountryRead, InstrumentRead, IssuerFacts, IssuerRead
from app.kit.db import DbSession
from app.kit.inputs import Identifier, Rfc3339
from app.kit.limits import BODY_MAX_DEFAULT
from app.kit.openapi import problem_responses

router = APIRouter(max_body_size=BODY_MAX_DEFAULT, prefix="/v1", tags=["issuers"])


@router.get(
    "/issuers/{issuer_id}",
    response_model=IssuerRead,
    summary="An issuer now: identifiers, structure, instruments, current facts and evidence",
    responses=problem_responses(401, 404),
)
async def get_issuer(issuer_id: Identifier, session: DbSession, _: CurrentPrincipal) -> IssuerRead:
    return await service.get_issuer(session, issuer_id)


@router.get(
    "/issuers/{issuer_id}/facts",
    response_model=IssuerFacts,
    summary="What was known about an issuer at a time (only data loaded by then)",
    responses=problem_responses(401, 404),
)
async def get_issuer_facts(
    issuer_id: Identifier,
    session: DbSession,
    _: CurrentPrincipal,
    at: Annotated[
        Rfc3339 | None, Query(description="RFC 3339 with an offset; default now.")
    ] = None,
    history: Annotated[bool, Query(description="Also list superseded facts.")] = False,
) -> IssuerFacts:
    return await service.get_issuer_facts(session, issuer_id, at, history)


@router.get(
    "/instruments/{isin}",
    response_model=InstrumentRead,
    summary="An instrument: its issuer and underlying",
    responses=problem_responses(401, 404),
)
async def get_instrument(
    isin: Identifier, session: DbSession, _: CurrentPrincipal
) -> InstrumentRead:
    return await service.get_instrument(session, isin)


@router.get(
    "/countries/{country}",
    response_model=CountryRead,
    summary="A country: its sovereign issuers, current facts and arms embargoes",
    responses=problem_responses(401, 404),
)
async def get_country(country: Identifier, session: DbSession, _: CurrentPrincipal) -> CountryRead:
    return await service.get_country(session, country)
