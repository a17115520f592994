from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.time import utcnow
from app.models.base import Base


class ApiKey(Base):
    """A caller of the API. Only a hash of the secret is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The non-secret part of the key ("mh_<public_id>_<secret>"): finds the row without a scan.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    # Who the caller is: stamped on loads, policy drafts, approvals and decisions.
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
