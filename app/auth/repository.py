from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scopes import Scope
from app.models import ApiKey


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_public_id(self, public_id: str) -> ApiKey | None:
        result = await self.session.execute(select(ApiKey).where(ApiKey.public_id == public_id))
        return result.scalar_one_or_none()

    async def get_by_name(self, name: str) -> ApiKey | None:
        result = await self.session.execute(select(ApiKey).where(ApiKey.name == name))
        return result.scalar_one_or_none()

    async def list_all(self) -> Sequence[ApiKey]:
        result = await self.session.execute(select(ApiKey).order_by(ApiKey.created_at))
        return result.scalars().all()

    async def active_admins_for_update(self) -> Sequence[ApiKey]:
        """Every unrevoked key with the admin scope, locked until the transaction ends."""
        result = await self.session.execute(
            select(ApiKey).where(ApiKey.revoked_at.is_(None)).with_for_update()
        )
        return [row for row in result.scalars() if Scope.admin.value in row.scopes]

    async def add(self, key: ApiKey) -> None:
        self.session.add(key)
        await self.session.flush()
