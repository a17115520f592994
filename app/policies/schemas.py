"""Request and response bodies of the policies API (the document itself: ``document.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from app.kit.inputs import Rfc3339
from app.kit.schemas import Schema

StoredDocument = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "allOf": [{"$ref": "#/components/schemas/PolicyDocument"}],
            "description": "The document as posted and hashed (the fields its author gave).",
        }
    ),
]


class Actor(Schema):
    name: str = Field(description="An API key's name, or cli:<OS user> for the command line.")
    key_id: uuid.UUID | None = Field(description="The API key; null for the command line.")


class VersionCreated(Schema):
    key: str
    version: int
    status: Literal["draft", "approved"]
    sha256: str = Field(description="SHA-256 of the canonical JSON of the document.")
    created_at: datetime
    created_by: Actor


class ApproveRequest(Schema):
    effective_from: Rfc3339 | None = Field(
        default=None,
        description="When the version takes effect (RFC 3339, with offset). Default: now. "
        "Never in the past, and after every earlier approved version's.",
    )


class VersionSummary(Schema):
    version: int
    status: Literal["draft", "approved"]
    sha256: str
    created_at: datetime
    created_by: Actor
    approved_at: datetime | None
    approved_by: Actor | None
    effective_from: datetime | None


class VersionRead(VersionSummary):
    key: str
    extends: str | None = Field(description="The base policy, for an overlay.")
    base_version: int | None = Field(
        description="For an overlay: the base's approved version it was validated against."
    )
    document: StoredDocument


class PolicySummary(Schema):
    key: str
    title: str = Field(description="The title in the latest version.")
    extends: str | None
    created_at: datetime
    latest_version: int
    in_force_version: int | None = Field(description="The version in force now, if any.")


class PolicyRead(PolicySummary):
    created_by: str
    versions: list[VersionSummary]


class FieldChangeRead(Schema):
    path: str = Field(description="Dotted path inside the item or document, e.g. when.value.")
    change: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class ItemRef(Schema):
    id: str
    title: str | None


class ItemChangesRead(Schema):
    id: str
    changes: list[FieldChangeRead]


class CollectionDiffRead(Schema):
    added: list[ItemRef]
    removed: list[ItemRef]
    changed: list[ItemChangesRead]


class VersionDiff(Schema):
    key: str
    version: int
    against: int
    sha256: str
    against_sha256: str
    identical: bool
    rules: CollectionDiffRead
    exceptions: CollectionDiffRead
    position_limits: CollectionDiffRead
    changes: list[FieldChangeRead] = Field(
        description="Every other field (title, data, propagation, lists, unknown, ...)."
    )
