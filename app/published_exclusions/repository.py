"""Queries for published-exclusions entries and their resolutions (no business rules)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Dataset, ExclusionResolution, Fact, IssuerRecord, PublishedExclusion

EntryKey = tuple[int, int]  # (dataset_id, source_row)


class PublishedExclusionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def entries(
        self, *, investor: str | None, dataset_id: int | None
    ) -> Sequence[PublishedExclusion]:
        query = select(PublishedExclusion).order_by(
            PublishedExclusion.dataset_id, PublishedExclusion.source_row
        )
        if investor is not None:
            query = query.where(PublishedExclusion.investor == investor)
        if dataset_id is not None:
            query = query.where(PublishedExclusion.dataset_id == dataset_id)
        return (await self.session.execute(query)).scalars().all()

    async def entry(self, key: EntryKey) -> PublishedExclusion | None:
        return await self.session.get(PublishedExclusion, key)

    async def entries_by_key(self, keys: set[EntryKey]) -> dict[EntryKey, PublishedExclusion]:
        if not keys:
            return {}
        rows = await self.session.execute(
            select(PublishedExclusion).where(
                PublishedExclusion.dataset_id.in_(sorted({d for d, _ in keys}))
            )
        )
        found = {(e.dataset_id, e.source_row): e for e in rows.scalars()}
        return {key: found[key] for key in keys if key in found}

    async def resolutions(
        self, keys: Sequence[EntryKey] | None = None
    ) -> Sequence[ExclusionResolution]:
        """Every resolution step (of ``keys`` only, when given), oldest first."""
        query = select(ExclusionResolution).order_by(ExclusionResolution.id)
        if keys is not None:
            if not keys:
                return []
            query = query.where(
                ExclusionResolution.entry_dataset_id.in_(sorted({d for d, _ in keys}))
            )
            wanted = set(keys)
            steps = (await self.session.execute(query)).scalars().all()
            return [s for s in steps if (s.entry_dataset_id, s.entry_source_row) in wanted]
        return (await self.session.execute(query)).scalars().all()

    async def resolutions_naming(self, issuer_id: str) -> Sequence[ExclusionResolution]:
        """Every step of every entry that was ever resolved to ``issuer_id``, oldest first."""
        named = (
            select(ExclusionResolution.entry_dataset_id, ExclusionResolution.entry_source_row)
            .where(ExclusionResolution.issuer_id == issuer_id)
            .distinct()
            .subquery()
        )
        query = (
            select(ExclusionResolution)
            .join(
                named,
                (named.c.entry_dataset_id == ExclusionResolution.entry_dataset_id)
                & (named.c.entry_source_row == ExclusionResolution.entry_source_row),
            )
            .order_by(ExclusionResolution.id)
        )
        return (await self.session.execute(query)).scalars().all()

    async def add(self, step: ExclusionResolution) -> ExclusionResolution:
        self.session.add(step)
        await self.session.flush()
        return step

    async def add_fact(self, fact: Fact) -> None:
        self.session.add(fact)
        await self.session.flush()

    async def load_dates(self, dataset_ids: set[int]) -> dict[int, dt.date]:
        rows = await self.session.execute(
            select(Dataset.id, Dataset.as_of).where(Dataset.id.in_(sorted(dataset_ids)))
        )
        return dict(rows.all())

    async def newest_fact_date(self, issuer_id: str, metric: str) -> dt.date | None:
        query = select(func.max(Fact.as_of)).where(
            Fact.issuer_id == issuer_id, Fact.metric == metric
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def current_issuers(self) -> dict[str, tuple[str, str]]:
        """Every issuer known now: ``issuer_id -> (name, country)`` of its latest record."""
        newest = (
            select(
                IssuerRecord.issuer_id.label("issuer_id"),
                func.max(IssuerRecord.dataset_id).label("dataset_id"),
            )
            .group_by(IssuerRecord.issuer_id)
            .subquery()
        )
        rows = await self.session.execute(
            select(IssuerRecord.issuer_id, IssuerRecord.name, IssuerRecord.country).join(
                newest,
                (newest.c.issuer_id == IssuerRecord.issuer_id)
                & (newest.c.dataset_id == IssuerRecord.dataset_id),
            )
        )
        return {i: (n, c) for i, n, c in rows.all()}

    async def issuer_name(self, issuer_id: str) -> str | None:
        query = (
            select(IssuerRecord.name)
            .where(IssuerRecord.issuer_id == issuer_id)
            .order_by(IssuerRecord.dataset_id.desc(), IssuerRecord.source_row.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()
