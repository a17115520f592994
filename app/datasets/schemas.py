from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, field_validator

from app.datasets.kinds import DatasetKind as DatasetKind
from app.datasets.kinds import ListMode as ListMode
from app.kit.schemas import Schema

# Datasets recorded by the service itself, never loaded from a file: a data steward's confirmed
# (or revoked) resolution of a published-exclusions entry, with the issuer facts it wrote.
RESOLUTION_KIND = "published-exclusion-resolution"
RecordedKind = Literal["published-exclusion-resolution"]


class DatasetRead(Schema):
    id: int = Field(description="Also the data version: loads are numbered in the order made.")
    kind: DatasetKind | RecordedKind = Field(
        description="The file's format; `published-exclusion-resolution`: not a file but a "
        "confirmed or revoked resolution of a published-exclusions entry (its `summary` names "
        "the entry, the issuer, who proposed and who confirmed)."
    )
    provider: str
    as_of: dt.date = Field(description="The provider's as-of date for this file.")
    sha256: str
    rows: int = Field(description="Data rows loaded (set-aside rows are in `summary`).")
    loaded_at: dt.datetime
    loaded_by: str = Field(description="The API key name, or cli:<user>, that loaded it.")
    source_name: str | None
    summary: dict[str, Any] = Field(
        description=(
            "Rows set aside without rejecting the file (e.g. territories), with counts. For "
            "list-entries, what the load changed against the list before: `added`, `removed`, "
            "`changed` (each `{count, examples: [{issuer_id, list, policy}]}`; a changed "
            "example adds `changes: {field: {before, after}}`), `unchanged`, and `superseded` "
            "(entries that do not take effect: the entry in force was decided later). For "
            "arms-embargoes, against the provider's list in force at the load's as_of "
            "(`previous`: `{dataset_id, as_of}` or null): `added` and `removed` (`{count, "
            "examples: [{country, authority, regime}]}`), `unchanged`, and `history` (true when "
            "the provider's `current` list, `{dataset_id, as_of}`, is dated later: this file "
            "then applies to past days only). For ofac-ns-cmic: `entities`, `isins`, "
            "`entities_without_isins`, `invalid_isins` (failing the check digit, kept as "
            "published and matched textually), `unmatched_isins` (no instrument known at load "
            "time), and `previous`, `added`, `removed` (entities), `unchanged`, `history` as for "
            "arms-embargoes. For published-exclusions: `investors`, `actions` and `date_precision` "
            "(counts), `unresolved` (every entry, at load: a steward resolves them). For "
            "published-exclusion-resolution: `action`, `entry` (as published), `issuer_id`, "
            "`confidence`, `proposed_by`, `confirmed_by`, `fact` (the fact written)."
        )
    )
    mode: ListMode | None = Field(
        default=None, description="list-entries only: append or replace (else null)."
    )
    policy: str | None = Field(
        default=None,
        description="list-entries only: the policy the load was restricted to (`?policy=`).",
    )

    @field_validator("mode", "policy", mode="before")
    @classmethod
    def _none_when_empty(cls, value: Any) -> Any:
        # Stored as '' for kinds without them (see ``Dataset``).
        return value or None
