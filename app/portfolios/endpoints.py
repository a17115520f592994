from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.auth.dependencies import Authorize
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.kit.db import DbSession
from app.kit.inputs import Identifier, Rfc3339
from app.kit.limits import BODY_MAX_DEFAULT
from app.kit.openapi import problem_responses
from app.portfolios import service
from app.portfolios.schemas import PortfolioDetail, PortfolioList

router = APIRouter(max_body_size=BODY_MAX_DEFAULT, prefix="/v1", tags=["portfolios"])

CheckPrincipal = Annotated[Principal, Depends(Authorize(Scope.check))]


@router.get(
    "/portfolios",
    operation_id="listPortfolios",
    response_model=PortfolioList,
    summary="Every portfolio known now: its policy, account type and base currency",
    responses=problem_responses(401, 403),
)
async def list_portfolios(session: DbSession, _: CheckPrincipal) -> PortfolioList:
    """Every portfolio known now: id, name, the policy it is held under, account type
    (`own` or `client`) and base currency; `data_version` is the data state read. Scope `check`."""
    return await service.list_portfolios(session)


@router.get(
    "/portfolios/{portfolio_id}",
    operation_id="getPortfolio",
    response_model=PortfolioDetail,
    summary="A portfolio and its holdings, now or as known at a past time",
    description=(
        "The portfolio's record and its holdings on the day of `as_of` (UTC; default now), "
        "with only the data loaded by then: the newest-dated holdings report on or before "
        "that day (an older-dated report loaded later never supersedes a newer one)."
    ),
    responses=problem_responses(401, 403, 404),
)
async def get_portfolio(
    portfolio_id: Identifier,
    session: DbSession,
    _: CheckPrincipal,
    as_of: Annotated[
        Rfc3339 | None,
        Query(description="RFC 3339 with an offset, not in the future; default now."),
    ] = None,
) -> PortfolioDetail:
    return await service.get_portfolio(session, portfolio_id, as_of)
