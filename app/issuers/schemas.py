from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import Field

from app.kit.schemas import Schema


class Evidence(Schema):
    """One data point and where it came from."""

    metric: str
    provider: str
    value: str = Field(description="Canonical text of the value (e.g. `5.5`, `true`, `5-9.9`).")
    as_of: dt.date = Field(description="The provider's as-of date.")
    dataset_id: int = Field(description="The load that recorded it (see /v1/datasets/{id}).")
    source_row: int = Field(description="Its row in that file (header = 1).")
    source_field: str | None = Field(description="The vendor's own field name, if mapped.")
    loaded_at: dt.datetime


class IssuerLink(Schema):
    issuer_id: str
    name: str
    country: str
    kind: str
    control_pct: Decimal | None = Field(default=None, description="Parent's control, percent.")


class StateOwner(Schema):
    country: str
    pct: Decimal


class InstrumentSummary(Schema):
    isin: str
    asset_class: str
    name: str | None
    underlying_isin: str | None


class RecordSource(Schema):
    dataset_id: int
    source_row: int


class IssuerRead(Schema):
    issuer_id: str
    name: str
    kind: str
    country: str
    lei: str | None
    msci_issuer_id: str | None
    sustainalytics_entity_id: str | None
    parent: IssuerLink | None
    subsidiaries: list[IssuerLink]
    state_owners: list[StateOwner]
    instruments: list[InstrumentSummary]
    facts: list[Evidence] = Field(description="Current value per metric and provider.")
    country_facts: list[Evidence] = Field(description="Current facts about its country.")
    data_version: int = Field(description="The newest dataset id this answer reflects.")
    record: RecordSource = Field(description="The load and row this description comes from.")


class IssuerFacts(Schema):
    issuer_id: str
    at: dt.datetime | None = Field(description="The time asked about (null: now).")
    data_version: int
    facts: list[Evidence]
    country_facts: list[Evidence]
    history: list[Evidence] | None = Field(
        default=None, description="Every fact known at that time, superseded ones included."
    )


class InstrumentRead(Schema):
    isin: str
    asset_class: str
    name: str | None
    cusip: str | None
    sedol: str | None
    figi: str | None
    issuer: IssuerLink
    underlying: InstrumentSummary | None
    data_version: int
    record: RecordSource


class ArmsEmbargoRead(Schema):
    authority: str
    regime: str
    since: dt.date | None
    until: dt.date | None
    in_force: bool = Field(description="Whether it is in force on the day asked about.")
    dataset_id: int
    source_row: int


class CountryRead(Schema):
    country: str = Field(description="ISO 3166-1 alpha-2.")
    alpha3: str
    name: str
    sovereigns: list[IssuerLink] = Field(description="Sovereign issuers of this country.")
    facts: list[Evidence] = Field(description="Current value per metric and provider.")
    arms_embargoes: list[ArmsEmbargoRead] = Field(
        description="From each provider's current arms-embargoes list: its newest-dated load."
    )
    data_version: int
