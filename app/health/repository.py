"""What the operations metrics read from the database: how old each provider's data is."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Dataset, Fact, FundComposition, HoldingsReport


@dataclass(frozen=True, slots=True)
class DataAge:
    kind: str
    provider: str
    oldest_current_as_of: dt.date


# Kinds whose data is dated per portfolio or per fund (each report its own as_of), and the
# generic facts kind, whose rows carry their own dates (the load's as_of is only a default).
_HOLDINGS = "holdings"
_FUND_HOLDINGS = "fund-holdings"
_FACTS = "facts"


class HealthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def newest_dataset_id(self) -> int:
        """The data version: any load changes it (datasets are append-only)."""
        return (await self.session.execute(select(func.max(Dataset.id)))).scalar_one() or 0

    async def data_ages(self) -> list[DataAge]:
        """Per (kind, provider): the as-of date of its oldest current dataset.

        Current: the newest load (by as_of) of each scope a provider publishes per: the whole
        kind, a policy's list (list-entries, ``Dataset.policy``), a portfolio's position report
        (holdings), a fund's composition (fund-holdings). Oldest: the minimum over the scopes,
        so one portfolio whose custodian stopped reporting shows, though the others are fresh.
        For the generic ``facts`` kind a load is dated by its newest row and the provider's
        newest load is current (a provider sending partial files, issuer by issuer, shows its
        newest file's date). All grouped reads of small tables (a row per load, per portfolio
        or fund and load) but the last, which reads the rows of one load per facts provider.
        """
        newest_per_scope: list[Select[str, str, dt.date]] = [
            select(Dataset.kind, Dataset.provider, func.max(Dataset.as_of))
            .where(Dataset.kind.not_in([_HOLDINGS, _FUND_HOLDINGS, _FACTS]))
            .group_by(Dataset.kind, Dataset.provider, Dataset.policy),
            select(Dataset.kind, Dataset.provider, func.max(HoldingsReport.as_of))
            .join(Dataset, Dataset.id == HoldingsReport.dataset_id)
            .group_by(Dataset.kind, Dataset.provider, HoldingsReport.portfolio_id),
            select(Dataset.kind, Dataset.provider, func.max(FundComposition.as_of))
            .join(Dataset, Dataset.id == FundComposition.dataset_id)
            .group_by(Dataset.kind, Dataset.provider, FundComposition.fund_isin),
            select(Dataset.kind, Dataset.provider, func.max(Fact.as_of))
            .join(Dataset, Dataset.id == Fact.dataset_id)
            .where(
                Fact.dataset_id.in_(
                    select(func.max(Dataset.id))
                    .where(Dataset.kind == _FACTS)
                    .group_by(Dataset.provider)
                    .scalar_subquery()
                )
            )
            .group_by(Dataset.kind, Dataset.provider),
        ]
        oldest: dict[tuple[str, str], dt.date] = {}
        for query in newest_per_scope:
            for kind, provider, as_of in await self.session.execute(query):
                if isinstance(as_of, str):  # SQLite hands an aggregate's date back as text
                    as_of = dt.date.fromisoformat(as_of)
                key = (kind, provider)
                if key not in oldest or as_of < oldest[key]:
                    oldest[key] = as_of
        return [DataAge(kind, provider, day) for (kind, provider), day in sorted(oldest.items())]
