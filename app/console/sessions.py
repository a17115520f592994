"""Console sessions: an API key, checked once at sign-in, becomes a session cookie.

Server-side sessions rather than a signed cookie: sign-out must end a session for good (a
signed cookie stays valid until it expires, wherever a copy of it went), a revoked key must
end its sessions at their next request, and the record of who used the console when is kept.

The cookie carries a random token (256 bits); the database holds its SHA-256 only. Each
session has its own form token (CSRF, synchronizer pattern): every form that changes something
or runs work (sign-out, replay, impact preview) sends it, and a POST without it, or with
another, is refused (403). The sign-in form, before any session, uses a double-submit token: a
random value in a cookie of its own and in the form, which must agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.console.repository import ConsoleSessionRepository
from app.kit.time import utcnow
from app.models import ConsoleSession

# The session cookie, and the sign-in form's double-submit cookie.
SESSION_COOKIE = "mayhold_console"
SIGN_IN_COOKIE = "mayhold_console_sign_in"
COOKIE_PATH = "/console"

# A working day: an auditor signs in in the morning; a forgotten browser is signed out by night.
SESSION_LIFETIME = dt.timedelta(hours=8)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted form token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class ConsoleUser:
    """Who is signed in: the key's principal (its scopes now) and the session's form token."""

    session_id: int
    principal: Principal
    csrf_token: str
    expires_at: dt.datetime

    def can(self, scope: Scope) -> bool:
        return self.principal.has(scope)


async def start(session: AsyncSession, principal: Principal) -> tuple[str, ConsoleUser]:
    """Record a new session for an authenticated key; the cookie's token and the user."""
    token = new_token()
    now = utcnow()
    row = ConsoleSession(
        token_sha256=token_hash(token),
        api_key_id=principal.key_id,
        key_name=principal.name,
        csrf_token=new_token(),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    await ConsoleSessionRepository(session).add(row)
    return token, ConsoleUser(row.id, principal, row.csrf_token, row.expires_at)


async def current(
    read_sessions: async_sessionmaker[AsyncSession],
    write_sessions: async_sessionmaker[AsyncSession],
    token: str,
) -> ConsoleUser | None:
    """The signed-in user of a session cookie's token; None when there is no such session, it
    ended or expired, or its key is revoked (that session is then ended: ``key-revoked``).

    Read in a read-only session of its own (a console page never takes the write lock just
    to authenticate); only ending a session writes.
    """
    now = utcnow()
    async with read_sessions() as session:
        repository = ConsoleSessionRepository(session)
        row = await repository.active(token_hash(token), now)
        if row is None:
            return None
        key = await repository.key(row.api_key_id)
        if key is not None and key.revoked_at is None:
            principal = Principal(
                key_id=key.id, name=key.name, scopes=frozenset(Scope(s) for s in key.scopes)
            )
            return ConsoleUser(row.id, principal, row.csrf_token, row.expires_at)
    await end(write_sessions, token, "key-revoked")
    return None


async def end(sessions: async_sessionmaker[AsyncSession], token: str, why: str) -> None:
    """End the session of ``token`` now (nothing when it has ended already)."""
    async with sessions() as session:
        row = await ConsoleSessionRepository(session).active(token_hash(token), utcnow())
        if row is not None:
            row.ended_at = utcnow()
            row.ended_why = why
            await session.commit()
