from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import CurrentPrincipal
from app.issuers import service
from app.issuers.schemas import CountryRead, InstrumentRead, IssuerFacts, IssuerRead
from app.kit.db import DbSession
from app.kit.errors import InvalidInput
from app.kit.openapi import problem_responses

router = APIRouter(prefix="/v1", tags=["issuers"])


@router.get(
    "/issuers/{issuer_id}",
    response_model=IssuerRead,
    summary="An issuer now: identifiers, structure, instruments, current facts and evidence",
    responses=problem_responses(401, 404),
)
async def get_issuer(issuer_id: str, session: DbSession, _: CurrentPrincipal) -> IssuerRead:
    return await service.get_issuer(session, issuer_id)


@router.get(
    "/issuers/{issuer_id}/facts",
    response_model=IssuerFacts,
    summary="What was known about an issuer at a time (only data loaded by then)",
    responses=problem_responses(401, 404),
)
async def get_issuer_facts(
    issuer_id: str,
    session: DbSession,
    _: CurrentPrincipal,
    at: Annotated[dt.datetime | None, Query(description="RFC 3339 time; default now.")] = None,
    history: Annotated[bool, Query(description="Also list superseded facts.")] = False,
) -> IssuerFacts:
    if at is not None and at.tzinfo is None:
        raise InvalidInput(
            "`at` needs a timezone, e.g. 2025-03-12T00:00:00Z.",
        )
    return await service.get_issuer_facts(session, issuer_id, at, history)


@router.get(
    "/instruments/{isin}",
    response_model=InstrumentRead,
    summary="An instrument: its issuer and underlying",
    responses=problem_responses(401, 404),
)
async def get_instrument(isin: str, session: DbSession, _: CurrentPrincipal) -> InstrumentRead:
    return await service.get_instrument(session, isin)


@router.get(
    "/countries/{country}",
    response_model=CountryRead,
    summary="A country: its sovereign issuers, current facts and arms embargoes",
    responses=problem_responses(401, 404),
)
async def get_country(country: str, session: DbSession, _: CurrentPrincipal) -> CountryRead:
    return await service.get_country(session, country)
