"""The shapes of a list, for the API reference (the body itself is streamed, not validated)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from app.kit.schemas import Schema
from app.screening.schemas import PolicyRef


class ListRowOut(Schema):
    change: Literal["added", "removed", "changed"] | None = Field(
        default=None,
        description="Only with `since`: how the row differs from that list (a removed row is "
        "shown as it was).",
    )
    issuer_id: str
    name: str
    country: str
    lei: str | None
    verdict: Literal["excluded", "watch"]
    rule_ids: list[str] = Field(
        description="The rules and list entries (`list:exclusion`, ...) that carry the verdict; "
        "space-separated in CSV."
    )
    since: dt.date | None = Field(
        description="The date the verdict rests on: per reason carrying it, its newest "
        "evidence (provider as-of, list entry decided_on); the earliest of those reasons."
    )
    isin: str | None = Field(default=None, description="Instrument level only.")
    asset_class: str | None = Field(default=None, description="Instrument level only.")


class ListDocument(Schema):
    """`format=json`: one document, the rows last (streamed)."""

    policy: PolicyRef
    level: Literal["issuer", "instrument"]
    as_of: dt.datetime = Field(description="The time the list is about.")
    data_version: int = Field(description="The newest dataset id the list read.")
    token: str = Field(description="This list's token (also the ETag).")
    since: str | None = Field(description="The token `since` named, for a delta.")
    rows: list[ListRowOut]
