"""Sessions of the auditor's console (``/console``): an API key signed in from a browser.

The browser holds a random token in a cookie; only its SHA-256 is stored (as for API keys: 256
random bits leave nothing to brute-force). A row is written once at sign-in and changed once
at most, when the session ends (``ended_at``, ``ended_why``): sign-out, or the key found
revoked. Nothing else is ever updated, and rows are never deleted (an audit trail of who used
the console when).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK


class ConsoleSession(Base):
    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # sha256 (hex) of the cookie's token: the lookup on every console request.
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("api_keys.id"), index=True)
    # The key's name when signed in (the key row may be renamed never, but this is the record).
    key_name: Mapped[str] = mapped_column(String(200))
    # The form token of this session (synchronizer token): sent in every form, compared on POST.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    # "signed-out" or "key-revoked".
    ended_why: Mapped[str | None] = mapped_column(String(32), default=None)
