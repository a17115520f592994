from __future__ import annotations

import datetime as dt

from pydantic import Field

from app.kit.schemas import Schema


class PortfolioRead(Schema):
    portfolio_id: str
    name: str
    policy: str = Field(description="The key of the policy the portfolio is managed under.")
    account: str = Field(description="`own` (the house's own account) or `client`.")
    base_currency: str | None = Field(
        description="ISO 4217: the currency of its holdings' market values (null: not given)."
    )
    custodian: str | None
    dataset_id: int = Field(description="The portfolios load this description comes from.")
    source_row: int = Field(description="Its row in that file (header = 1).")


class PortfolioList(Schema):
    portfolios: list[PortfolioRead] = Field(
        description="Every portfolio known now (its newest record), by portfolio_id."
    )
    data_version: int = Field(description="The newest dataset id this answer reflects.")


class PositionRead(Schema):
    isin: str
    quantity: str = Field(description="Exact decimal; negative for a short position.")
    market_value: str | None = Field(
        description="Exact decimal in the portfolio's base currency; null: not reported."
    )
    currency: str | None = Field(description="ISO 4217, as the custodian's row gave it.")
    position: str = Field(description="`long` or `short`.")
    source_row: int = Field(description="Its row in the holdings file (header = 1).")


class HoldingsRead(Schema):
    holdings_version: int = Field(
        description="The holdings load (dataset id) whose report these positions are."
    )
    as_of: dt.date = Field(description="The date the report states the positions as of.")
    positions: int = Field(description="How many positions the report holds.")
    total_market_value: str | None = Field(
        description="Sum of the market values (exact decimal); null when any is missing."
    )
    missing_market_value: int = Field(description="Positions reported without a market value.")
    items: list[PositionRead] = Field(description="The positions, in file order.")


class PortfolioDetail(Schema):
    portfolio: PortfolioRead
    data_version: int = Field(
        description="The newest dataset id this answer reflects (at `as_of` when given)."
    )
    holdings: HoldingsRead | None = Field(
        description=(
            "The portfolio's holdings on the day asked about (`as_of`'s date in UTC, else "
            "today), as known at `data_version`: the newest-dated report on or before that "
            "day (ties: the later load). Null: no report yet."
        )
    )
