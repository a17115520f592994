from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import Policy, PolicyVersion, VersionStatus

# A policy key -> the rule ids its versions declare (``policy_rule_ids``).
PolicyRules = dict[str, frozenset[str]]


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


async def policy_rule_ids(conn: AsyncConnection, keys: Sequence[str] | None = None) -> PolicyRules:
    """Every policy (any status; only ``keys`` when given) -> the rule ids any version of it
    declares, an overlay's including its base's (an overlay inherits every base rule).

    For the loads that name policies and their rules (list-entries, contract "Loads that
    replace a list"): a key absent from the answer is no policy at all. Read from each
    version's stored document (``rules[].id``), so a rule an older version declared still
    counts: a list entry may be decided for a rule since dropped.
    """
    query = select(Policy.key, Policy.extends_key)
    if keys is not None:
        query = query.where(Policy.key.in_(sorted(set(keys))))
    policies: dict[str, str | None] = dict((await conn.execute(query)).all())
    named = sorted(set(policies) | {b for b in policies.values() if b is not None})
    declared: dict[str, set[str]] = {key: set() for key in named}
    documents = await conn.execute(
        select(Policy.key, PolicyVersion.document)
        .join(PolicyVersion, PolicyVersion.policy_id == Policy.id)
        .where(Policy.key.in_(named))
    )
    for key, document in documents:
        rules = document.get("rules") if isinstance(document, dict) else None
        declared[key].update(
            r["id"] for r in rules or [] if isinstance(r, dict) and isinstance(r.get("id"), str)
        )
    return {
        key: frozenset(declared[key] | (declared[base] if base is not None else set()))
        for key, base in policies.items()
    }
