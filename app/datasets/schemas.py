from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import Field

from app.kit.schemas import Schema


class DatasetKind(StrEnum):
    issuers = "issuers"
    instruments = "instruments"
    facts = "facts"
    msci_esg = "msci-esg"
    freedom_house = "freedom-house"
    ti_cpi = "ti-cpi"
    ituc = "ituc"
    arms_embargoes = "arms-embargoes"
    list_entries = "list-entries"


class DatasetRead(Schema):
    id: int = Field(description="Also the data version: loads are numbered in the order made.")
    kind: DatasetKind
    provider: str
    as_of: dt.date = Field(description="The provider's as-of date for this file.")
    sha256: str
    rows: int = Field(description="Data rows loaded (set-aside rows are in `summary`).")
    loaded_at: dt.datetime
    loaded_by: str = Field(description="The API key name, or cli:<user>, that loaded it.")
    source_name: str | None
    summary: dict[str, Any] = Field(
        description="Rows set aside without rejecting the file (e.g. territories), with counts."
    )
