from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Policy, PolicyVersion, VersionStatus


class PolicyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, key: str, *, for_update: bool = False) -> Policy | None:
        query = select(Policy).where(Policy.key == key)
        if for_update:
            # Serialises writers of one policy on Postgres (SQLite writers already queue).
            query = query.with_for_update()
        result = await self.session.execute(query)
        return result.scalar_one_or_none()

    async def list_all(self) -> Sequence[Policy]:
        result = await self.session.execute(select(Policy).order_by(Policy.key))
        return result.scalars().all()

    async def add(self, policy: Policy) -> None:
        self.session.add(policy)
        await self.session.flush()

    async def versions(self, policy_id: uuid.UUID) -> Sequence[PolicyVersion]:
        result = await self.session.execute(
            select(PolicyVersion)
            .where(PolicyVersion.policy_id == policy_id)
            .order_by(PolicyVersion.version)
        )
        return result.scalars().all()

    async def version(self, policy_id: uuid.UUID, number: int) -> PolicyVersion | None:
        result = await self.session.execute(
            select(PolicyVersion).where(
                PolicyVersion.policy_id == policy_id, PolicyVersion.version == number
            )
        )
        return result.scalar_one_or_none()

    async def latest(self, policy_id: uuid.UUID) -> PolicyVersion | None:
        result = await self.session.execute(
            select(PolicyVersion)
            .where(PolicyVersion.policy_id == policy_id)
            .order_by(PolicyVersion.version.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def latest_per_policy(self) -> dict[uuid.UUID, PolicyVersion]:
        newest = (
            select(PolicyVersion.policy_id, func.max(PolicyVersion.version).label("version"))
            .group_by(PolicyVersion.policy_id)
            .subquery()
        )
        result = await self.session.execute(
            select(PolicyVersion).join(
                newest,
                (PolicyVersion.policy_id == newest.c.policy_id)
                & (PolicyVersion.version == newest.c.version),
            )
        )
        return {v.policy_id: v for v in result.scalars()}

    async def last_approved(self, policy_id: uuid.UUID) -> PolicyVersion | None:
        """The approved version with the latest effective_from (possibly still in the future)."""
        result = await self.session.execute(
            select(PolicyVersion)
            .where(
                PolicyVersion.policy_id == policy_id,
                PolicyVersion.status == VersionStatus.approved.value,
            )
            .order_by(PolicyVersion.effective_from.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def in_force(self, policy_id: uuid.UUID, at: datetime) -> PolicyVersion | None:
        """The approved version with the latest effective_from <= at."""
        result = await self.session.execute(
            select(PolicyVersion)
            .where(
                PolicyVersion.policy_id == policy_id,
                PolicyVersion.status == VersionStatus.approved.value,
                PolicyVersion.effective_from <= at,
            )
            .order_by(PolicyVersion.effective_from.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def in_force_numbers(self, at: datetime) -> dict[uuid.UUID, int]:
        """Per policy, the number of the version in force at ``at``."""
        latest = (
            select(
                PolicyVersion.policy_id,
                func.max(PolicyVersion.effective_from).label("effective_from"),
            )
            .where(
                PolicyVersion.status == VersionStatus.approved.value,
                PolicyVersion.effective_from <= at,
            )
            .group_by(PolicyVersion.policy_id)
            .subquery()
        )
        result = await self.session.execute(
            select(PolicyVersion.policy_id, PolicyVersion.version).join(
                latest,
                (PolicyVersion.policy_id == latest.c.policy_id)
                & (PolicyVersion.effective_from == latest.c.effective_from),
            )
        )
        return {row.policy_id: row.version for row in result}

    async def add_version(self, version: PolicyVersion) -> None:
        self.session.add(version)
        await self.session.flush()
