"""What lists read beyond the screening snapshot: LEIs, and what a list token is checked against."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Dataset, IssuerRecord


class ListRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def issuer_leis(self, version: int) -> dict[str, str]:
        """issuer_id -> LEI, from each issuer's newest record at ``version`` (those with one).

        The engine's snapshot has no use for LEIs, so lists read them beside it.
        """
        newest = (
            select(
                IssuerRecord.issuer_id.label("issuer_id"),
                func.max(IssuerRecord.dataset_id).label("dataset_id"),
            )
            .where(IssuerRecord.dataset_id <= version)
            .group_by(IssuerRecord.issuer_id)
            .subquery()
        )
        query = (
            select(IssuerRecord.issuer_id, IssuerRecord.lei)
            .join(
                newest,
                (IssuerRecord.issuer_id == newest.c.issuer_id)
                & (IssuerRecord.dataset_id == newest.c.dataset_id),
            )
            .where(IssuerRecord.lei.is_not(None))
        )
        rows = await self.session.execute(query)
        return {issuer_id: lei for issuer_id, lei in rows if lei}

    async def dataset_sha256(self, dataset_id: int) -> str | None:
        """The sha256 of a load (None when there is no such load)."""
        query = select(Dataset.sha256).where(Dataset.id == dataset_id)
        return (await self.session.execute(query)).scalar_one_or_none()
