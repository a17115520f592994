"""Queries on console sessions (and the key behind each)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiKey, ConsoleSession


class ConsoleSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: ConsoleSession) -> None:
        self.session.add(row)
        await self.session.flush()

    async def active(self, token_sha256: str, now: dt.datetime) -> ConsoleSession | None:
        """The session with this token hash, not ended and not expired at ``now``."""
        result = await self.session.execute(
            select(ConsoleSession).where(
                ConsoleSession.token_sha256 == token_sha256,
                ConsoleSession.ended_at.is_(None),
                ConsoleSession.expires_at > now,
            )
        )
        return result.scalar_one_or_none()

    async def key(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)
