"""API keys: issue, verify, revoke.

Key format: ``mh_<public_id>_<secret>``. The public id locates the row; only the SHA-256 of the
whole key is stored. A fast hash is the right tool here (unlike passwords): the secret is 256
random bits, so there is nothing to brute-force, and a slow hash (bcrypt/argon2, ~100 ms) would
sit on every pre-trade check.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.repository import ApiKeyRepository
from app.auth.schemas import IssuedKey, Principal
from app.auth.scopes import Scope
from app.kit.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from app.kit.time import utcnow
from app.models import ApiKey

KEY_PREFIX = "mh"
PUBLIC_ID_BYTES = 6
_PUBLIC_ID = re.compile(f"[0-9a-f]{{{2 * PUBLIC_ID_BYTES}}}")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _principal(row: ApiKey) -> Principal:
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(Scope(s) for s in row.scopes))


async def create_key(session: AsyncSession, *, name: str, scopes: frozenset[Scope]) -> IssuedKey:
    name = name.strip()
    if not name:
        raise InvalidInput("A key needs a name: who or what will use it.")
    repository = ApiKeyRepository(session)
    if await repository.get_by_name(name) is not None:
        raise Conflict(f"a key named {name!r} already exists; choose another name")
    public_id = secrets.token_hex(PUBLIC_ID_BYTES)
    key = f"{KEY_PREFIX}_{public_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        public_id=public_id,
        secret_hash=hash_key(key),
        name=name,
        scopes=sorted(s.value for s in scopes),
    )
    await repository.add(row)
    return IssuedKey(principal=_principal(row), key=key)


class KeyCache:
    """Verified keys, by the hash of the key, for a few seconds: no query per pre-trade check."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.ttl > 0:
            if len(self._entries) > 10_000:  # keys are few; anything else is noise
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + self.ttl, principal)

    def forget(self, name: str) -> None:
        self._entries = {h: e for h, e in self._entries.items() if e[1].name != name}


async def authenticate(
    sessions: async_sessionmaker[AsyncSession], key: str, cache: KeyCache | None = None
) -> Principal:
    """The key's principal: from the cache, else read in a session of its own (so a pre-trade
    check with a known key never touches the database for authentication)."""
    key_hash = hash_key(key)
    if cache is not None and (cached := cache.get(key_hash)) is not None:
        return cached
    async with sessions() as session:
        principal = await _authenticate(session, key, key_hash)
    if cache is not None:
        cache.put(key_hash, principal)
    return principal


async def _authenticate(session: AsyncSession, key: str, key_hash: str) -> Principal:
    parts = key.split("_", 2)
    # Only a well-formed public id is looked up: anything else (a NUL, 5,000 characters) could
    # not exist, and may not even be storable (the driver would fail on it).
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not _PUBLIC_ID.fullmatch(parts[1]):
        raise NotAuthenticated("The API key is not valid.")
    row = await ApiKeyRepository(session).get_by_public_id(parts[1])
    # Compare in constant time; the same message for every failure so keys cannot be probed.
    if row is None or not hmac.compare_digest(row.secret_hash, key_hash):
        raise NotAuthenticated("The API key is not valid.")
    if row.revoked_at is not None:
        raise NotAuthenticated("The API key has been revoked.")
    return _principal(row)


async def revoke_key(session: AsyncSession, name: str) -> None:
    """Revoke the key named ``name`` (revoking a revoked key again changes nothing).

    Raises NotFound for no such key, and Conflict for the last active admin key: without one,
    no key could be created or revoked any more except from a shell on the server. An admin
    key may revoke itself while another active admin key remains.
    """
    repository = ApiKeyRepository(session)
    row = await repository.get_by_name(name)
    if row is None:
        raise NotFound(f"no key named {name!r}")
    if row.revoked_at is not None:
        return
    if Scope.admin.value in row.scopes:
        # Locked (Postgres): two admins revoking each other at once must not both succeed.
        admins = await repository.active_admins_for_update()
        if not any(other.id != row.id for other in admins):
            raise Conflict(
                f"{name!r} is the last active admin key: revoking it would leave no key that "
                "can manage keys. Create another admin key first (POST /v1/keys), then revoke "
                "this one."
            )
    row.revoked_at = utcnow()
    await session.flush()


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return await ApiKeyRepository(session).list_all()
