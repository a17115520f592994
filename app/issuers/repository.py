"""Reading the append-only records as they stood at a data version.

A data version is a dataset id: "what we knew at time T" is everything loaded by datasets with
id <= the last dataset loaded at or before T. The current state of an issuer or instrument is
its record from the newest such dataset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.records import EmbargoLoad
from app.datasets.repository import arms_embargo_loads, data_version
from app.models import ArmsEmbargo, Dataset, Fact, InstrumentRecord, IssuerRecord


class IssuerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def data_version(self, at: dt.datetime | None = None) -> int:
        return await data_version(self.session, at)

    async def issuer(self, issuer_id: str, version: int) -> IssuerRecord | None:
        query = (
            select(IssuerRecord)
            .where(IssuerRecord.issuer_id == issuer_id, IssuerRecord.dataset_id <= version)
            .order_by(IssuerRecord.dataset_id.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def issuers(self, issuer_ids: set[str], version: int) -> dict[str, IssuerRecord]:
        if not issuer_ids:
            return {}
        newest = (
            select(IssuerRecord.issuer_id, func.max(IssuerRecord.dataset_id).label("dataset_id"))
            .where(IssuerRecord.issuer_id.in_(issuer_ids), IssuerRecord.dataset_id <= version)
            .group_by(IssuerRecord.issuer_id)
            .subquery()
        )
        query = select(IssuerRecord).join(
            newest,
            (IssuerRecord.issuer_id == newest.c.issuer_id)
            & (IssuerRecord.dataset_id == newest.c.dataset_id),
        )
        return {r.issuer_id: r for r in (await self.session.execute(query)).scalars()}

    async def subsidiaries(self, issuer_id: str, version: int) -> list[IssuerRecord]:
        """Issuers whose current record names ``issuer_id`` as their parent."""
        candidates = (
            await self.session.execute(
                select(IssuerRecord.issuer_id)
                .where(
                    IssuerRecord.parent_issuer_id == issuer_id,
                    IssuerRecord.dataset_id <= version,
                )
                .distinct()
            )
        ).scalars()
        current = await self.issuers(set(candidates), version)
        return sorted(
            (r for r in current.values() if r.parent_issuer_id == issuer_id),
            key=lambda r: r.issuer_id,
        )

    async def instrument(self, isin: str, version: int) -> InstrumentRecord | None:
        query = (
            select(InstrumentRecord)
            .where(InstrumentRecord.isin == isin, InstrumentRecord.dataset_id <= version)
            .order_by(InstrumentRecord.dataset_id.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def instruments_of(self, issuer_id: str, version: int) -> list[InstrumentRecord]:
        """Instruments whose current record points at ``issuer_id``."""
        isins = (
            await self.session.execute(
                select(InstrumentRecord.isin)
                .where(
                    InstrumentRecord.issuer_id == issuer_id,
                    InstrumentRecord.dataset_id <= version,
                )
                .distinct()
            )
        ).scalars()
        found = []
        for isin in sorted(isins):
            record = await self.instrument(isin, version)
            if record is not None and record.issuer_id == issuer_id:
                found.append(record)
        return found

    async def facts(
        self, version: int, *, issuer_id: str | None = None, country: str | None = None
    ) -> Sequence[Fact]:
        """Every fact about an issuer or a country known at ``version``, oldest first."""
        query = select(Fact).where(Fact.dataset_id <= version)
        if issuer_id is not None:
            query = query.where(Fact.issuer_id == issuer_id)
        if country is not None:
            query = query.where(Fact.country == country)
        query = query.order_by(Fact.metric, Fact.provider, Fact.as_of, Fact.dataset_id)
        return (await self.session.execute(query)).scalars().all()

    async def loaded_at(self, dataset_ids: set[int]) -> dict[int, dt.datetime]:
        if not dataset_ids:
            return {}
        rows = await self.session.execute(
            select(Dataset.id, Dataset.loaded_at).where(Dataset.id.in_(dataset_ids))
        )
        return {row.id: row.loaded_at for row in rows.all()}

    async def sovereigns(self, country: str, version: int) -> list[IssuerRecord]:
        """The sovereign issuer(s) of a country: issuers whose current record says so."""
        candidates = (
            await self.session.execute(
                select(IssuerRecord.issuer_id)
                .where(
                    IssuerRecord.country == country,
                    IssuerRecord.kind == "sovereign",
                    IssuerRecord.dataset_id <= version,
                )
                .distinct()
            )
        ).scalars()
        current = await self.issuers(set(candidates), version)
        return sorted(
            (r for r in current.values() if r.kind == "sovereign" and r.country == country),
            key=lambda r: r.issuer_id,
        )

    async def arms_embargo_loads(self, version: int) -> list[EmbargoLoad]:
        return await arms_embargo_loads(self.session, version)

    async def arms_embargoes(
        self, country: str, dataset_ids: Iterable[int]
    ) -> Sequence[ArmsEmbargo]:
        query = (
            select(ArmsEmbargo)
            .where(ArmsEmbargo.country == country, ArmsEmbargo.dataset_id.in_(list(dataset_ids)))
            .order_by(ArmsEmbargo.authority, ArmsEmbargo.since)
        )
        return (await self.session.execute(query)).scalars().all()
