"""Policies and their versions.

A version is written once. The only change ever made to a row is its approval (draft ->
approved, setting the approval columns); an approved version is never changed, and no version
(nor policy) is ever deleted or truncated. Three layers keep it so: the service never does it,
an ORM guard here refuses it, and database triggers (the ``policies`` and
``policy_tables_append_only`` migrations) refuse it on Postgres and SQLite.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    String,
    UniqueConstraint,
    Uuid,
    event,
    inspect,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from app.kit.time import utcnow
from app.models.base import Base


class VersionStatus(StrEnum):
    draft = "draft"
    approved = "approved"


class Policy(Base):
    """A policy key (``rpf``): created with its first version."""

    __tablename__ = "policies"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    # Fixed at creation: an overlay stays an overlay of the same base (no cycles, no switching).
    extends_key: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("policies.key"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))

    versions: Mapped[list[PolicyVersion]] = relationship(
        back_populates="policy", lazy="raise", order_by="PolicyVersion.version"
    )


class PolicyVersion(Base):
    """One version of a policy document, as posted (canonical JSON) and, once, approved."""

    __tablename__ = "policy_versions"
    __table_args__ = (
        UniqueConstraint("policy_id", "version"),
        # Two versions never take effect at the same instant: "the version in force" is unique.
        UniqueConstraint("policy_id", "effective_from"),
        CheckConstraint("status IN ('draft', 'approved')", name="status"),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint(
            "(status = 'draft' AND approved_at IS NULL AND approved_by IS NULL"
            " AND approved_by_key_id IS NULL AND effective_from IS NULL)"
            " OR (status = 'approved' AND approved_at IS NOT NULL AND approved_by IS NOT NULL"
            " AND effective_from IS NOT NULL)",
            name="approval",
        ),
        # Four eyes, in the database too: the approving key is never the authoring key.
        CheckConstraint(
            "created_by_key_id IS NULL OR approved_by_key_id IS NULL"
            " OR created_by_key_id <> approved_by_key_id",
            name="four_eyes",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    policy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("policies.id"))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.draft.value)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    # For an overlay: the base version it was validated against when posted.
    base_version: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id"), default=None
    )
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    approved_by: Mapped[str | None] = mapped_column(String(200), default=None)
    approved_by_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id"), default=None
    )
    effective_from: Mapped[datetime | None] = mapped_column(default=None)

    policy: Mapped[Policy] = relationship(back_populates="versions", lazy="raise")


class ImmutableVersionError(RuntimeError):
    """An attempt to change or delete a policy version other than by approving a draft."""


_APPROVAL_COLUMNS = frozenset(
    {"status", "approved_at", "approved_by", "approved_by_key_id", "effective_from"}
)


@event.listens_for(PolicyVersion, "before_update")
def _refuse_changes(_mapper: Mapper[Any], _connection: Connection, target: PolicyVersion) -> None:
    state = inspect(target)
    changed = {
        column.key
        for column in state.mapper.column_attrs
        if state.attrs[column.key].history.has_changes()
    }
    status_history = state.attrs.status.history
    was = status_history.deleted[0] if status_history.deleted else target.status
    if was != VersionStatus.draft.value or not changed <= _APPROVAL_COLUMNS:
        raise ImmutableVersionError(
            f"policy version {target.version} is {was}: only a draft's approval may be recorded"
        )


@event.listens_for(PolicyVersion, "before_delete")
def _refuse_delete(_mapper: Mapper[Any], _connection: Connection, target: PolicyVersion) -> None:
    # Drafts too: who proposed which document when is part of the approval record.
    raise ImmutableVersionError(
        f"policy version {target.version} is {target.status}: versions are never deleted"
    )
