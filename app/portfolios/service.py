from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.errors import NotFound
from app.kit.time import check_time, utcnow
from app.portfolios.repository import HoldingsReport, Portfolio, PortfolioRepository
from app.portfolios.schemas import (
    HoldingsRead,
    PortfolioDetail,
    PortfolioList,
    PortfolioRead,
    PositionRead,
)


def _decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


def portfolio_read(portfolio: Portfolio) -> PortfolioRead:
    return PortfolioRead(
        portfolio_id=portfolio.portfolio_id,
        name=portfolio.name,
        policy=portfolio.policy_key,
        account=portfolio.account,
        base_currency=portfolio.base_currency,
        custodian=portfolio.custodian,
        dataset_id=portfolio.dataset_id,
        source_row=portfolio.source_row,
    )


def holdings_read(report: HoldingsReport) -> HoldingsRead:
    values = [p.market_value for p in report.positions]
    missing = sum(1 for v in values if v is None)
    total = sum((v for v in values if v is not None), start=Decimal(0))
    return HoldingsRead(
        holdings_version=report.dataset_id,
        as_of=report.as_of,
        positions=len(report.positions),
        total_market_value=None if missing else _decimal(total),
        missing_market_value=missing,
        items=[
            PositionRead(
                isin=p.isin,
                quantity=_decimal(p.quantity),
                market_value=_decimal(p.market_value) if p.market_value is not None else None,
                currency=p.currency,
                position=p.position,
                source_row=p.source_row,
            )
            for p in report.positions
        ],
    )


async def portfolio_at(session: AsyncSession, portfolio_id: str, version: int) -> Portfolio:
    """The portfolio's record at data ``version``; 404 when it was not loaded by then."""
    portfolio = await PortfolioRepository(session).portfolio(portfolio_id, version)
    if portfolio is None:
        raise NotFound(
            f"No portfolio {portfolio_id!r} is known at data version {version}: load it with "
            "kind=portfolios first."
        )
    return portfolio


async def list_portfolios(session: AsyncSession) -> PortfolioList:
    repository = PortfolioRepository(session)
    version = await repository.data_version()
    return PortfolioList(
        portfolios=[portfolio_read(p) for p in await repository.portfolios(version)],
        data_version=version,
    )


async def get_portfolio(
    session: AsyncSession, portfolio_id: str, as_of: dt.datetime | None
) -> PortfolioDetail:
    """The portfolio and its holdings on ``as_of``'s day (UTC; now when None), as known then.

    Errors: 422 for an ``as_of`` in the future (as a check's); 404 for a portfolio not known
    at that time."""
    at = check_time(as_of, utcnow())
    repository = PortfolioRepository(session)
    version = await repository.data_version(at if as_of is not None else None)
    portfolio = await portfolio_at(session, portfolio_id, version)
    report = await repository.holdings(portfolio_id, at.date(), version)
    return PortfolioDetail(
        portfolio=portfolio_read(portfolio),
        data_version=version,
        holdings=holdings_read(report) if report is not None else None,
    )
