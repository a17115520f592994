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
    operation_id="getIssuer",
    response_model=IssuerRead,
    summary="An issuer now: identifiers, structure, instruments, current facts and evidence",
    responses=problem_responses(401, 404),
)
async def get_issuer(issuer_id: Identifier, session: DbSession, _: CurrentPrincipal) -> IssuerRead:
    """The issuer by its id as loaded (`issuer_id`): its identifiers (LEI, MSCI, Sustainalytics),
    kind and country, parent and subsidiaries (with control %), state owners, instruments, its
    current facts and its country's, each with the load (dataset) it came from; `data_version` is
    the data state read. 404 for an issuer not loaded. Any valid key (no scope needed)."""
    return await service.get_issuer(session, issuer_id)


@router.get(
    "/issuers/{issuer_id}/facts",
    operation_id="getIssuerFacts",
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
    """The facts about an issuer and its country as known at `at` (default now): only data
    loaded by then, so an answer given in the past can be explained. `history=true` adds the
    superseded facts too. 404 when the issuer was not known at `at`. Any valid key."""
    return await service.get_issuer_facts(session, issuer_id, at, history)


@router.get(
    "/instruments/{isin}",
    operation_id="getInstrument",
    response_model=InstrumentRead,
    summary="An instrument: its issuer and underlying",
    responses=problem_responses(401, 404),
)
async def get_instrument(
    isin: Identifier, session: DbSession, _: CurrentPrincipal
) -> InstrumentRead:
    """The instrument by ISIN: its other identifiers (CUSIP, SEDOL, FIGI), asset class,
    issuer and, for a derivative or fund share, its underlying; `data_version` is the data state
    read. 404 for an ISIN not loaded. Any valid key."""
    return await service.get_instrument(session, isin)


@router.get(
    "/countries/{country}",
    operation_id="getCountry",
    response_model=CountryRead,
    summary="A country: its sovereign issuers, current facts and arms embargoes",
    responses=problem_responses(401, 404),
)
async def get_country(country: Identifier, session: DbSession, _: CurrentPrincipal) -> CountryRead:
    """A country by ISO 3166 alpha-2 or alpha-3 code (or name): its sovereign issuers,
    its current facts (Freedom House, TI, ...) with their loads, and the arms embargoes in force
    on it today. 404 for a code that is no country. Any valid key."""
    return await service.get_country(session, country)
