from __future__ import annotations

import getpass
import os
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from app.auth.scopes import Scope
from app.kit.inputs import Name
from app.kit.schemas import Schema


@dataclass(frozen=True)
class Actor:
    """Who did something, as recorded on loads, drafts, approvals and decisions.

    An API key (``key_id`` set), or an operator at the command line (``cli:<os user>``).
    """

    name: str
    key_id: uuid.UUID | None

    @classmethod
    def command_line(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no login name (e.g. a container with an unnamed uid)
            user = f"uid-{os.getuid()}"
        return cls(name=f"cli:{user}", key_id=None)


@dataclass(frozen=True)
class Principal:
    """Who is calling: available to every authenticated request (``request.state.principal``)."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        return Scope.admin in self.scopes or scope in self.scopes

    @property
    def actor(self) -> Actor:
        return Actor(name=self.name, key_id=self.key_id)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: the only moment the plain secret exists."""

    principal: Principal
    key: str


class WhoAmI(Schema):
    key_id: uuid.UUID
    name: str
    scopes: list[Scope]


class KeyCreate(Schema):
    name: Name = Field(description="Who or what uses the key (at most 200 characters).")
    scopes: list[Scope] = Field(min_length=1)


class KeyRead(Schema):
    key_id: uuid.UUID
    name: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(Schema):
    key_id: uuid.UUID
    name: str
    scopes: list[Scope]
    key: str = Field(description="The secret. Shown once; only its hash is stored.")
