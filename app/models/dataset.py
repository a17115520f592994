from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK


class Dataset(Base):
    """One loaded file: its provenance, kept forever. Its id orders loads (the data version).

    A load is identified by its bytes *and* the parameters it was loaded with: the same bytes
    with another provider, as_of, or (list-entries) mode or policy are another statement, so
    another dataset; only the same bytes with the same parameters are the same load (contract,
    "Loads that replace a list"). ``mode`` and ``policy`` are '' for kinds without them (a
    portable unique key: NULLs would never be equal to each other in it).
    """

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("kind", "sha256", "provider", "as_of", "mode", "policy"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[dt.date]
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int]
    loaded_at: Mapped[dt.datetime] = mapped_column(index=True)
    loaded_by: Mapped[str] = mapped_column(String(200))
    loaded_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    source_name: Mapped[str | None] = mapped_column(String(300))
    # What the adapter set aside without rejecting the file (territories, unmatched vendor
    # rows, non-state embargo targets), with counts and examples, so a steward can see it;
    # for list-entries, what the load changed in each policy's list (added, removed...).
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    # list-entries only ('' otherwise): "append" or "replace", and the policy the load was
    # restricted to (?policy=; '' when the file's rows name their policies).
    mode: Mapped[str] = mapped_column(String(16), server_default=text("''"))
    policy: Mapped[str] = mapped_column(String(64), server_default=text("''"))


class IssuerRecord(Base):
    """An issuer as one load described it. The current issuer is its latest record."""

    __tablename__ = "issuer_records"
    __table_args__ = (Index(None, "issuer_id", "dataset_id"),)

    # A record is identified by where it came from: the load and the file's row.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    issuer_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    lei: Mapped[str | None] = mapped_column(String(20), index=True)
    parent_issuer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    parent_control_pct: Mapped[Decimal | None]
    state_owner_country: Mapped[str | None] = mapped_column(String(2))
    state_owner_pct: Mapped[Decimal | None]
    msci_issuer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    sustainalytics_entity_id: Mapped[str | None] = mapped_column(String(64), index=True)


class InstrumentRecord(Base):
    __tablename__ = "instrument_records"
    __table_args__ = (Index(None, "isin", "dataset_id"),)

    # A record is identified by where it came from: the load and the file's row.
    # No foreign key on the two bulk tables: its per-row check cost 40% of a million-row load,
    # and it guards nothing here: records are written only by the load that creates their
    # dataset, in its transaction, and datasets can never be deleted (append-only triggers).
    dataset_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    isin: Mapped[str] = mapped_column(String(12))
    issuer_id: Mapped[str] = mapped_column(String(64), index=True)
    asset_class: Mapped[str] = mapped_column(String(20))
    underlying_isin: Mapped[str | None] = mapped_column(String(12))
    name: Mapped[str | None] = mapped_column(String(300))
    # Indexed: a check by CUSIP, SEDOL or FIGI looks the ISIN up by them.
    cusip: Mapped[str | None] = mapped_column(String(9), index=True)
    sedol: Mapped[str | None] = mapped_column(String(7), index=True)
    figi: Mapped[str | None] = mapped_column(String(12), index=True)


class Fact(Base):
    """One data point: a metric's value for an issuer or a country, as a provider stated it.

    Bitemporal: ``as_of`` is the provider's date, ``dataset_id`` the load that recorded it.
    """

    __tablename__ = "facts"
    __table_args__ = (
        Index(None, "issuer_id", "metric"),
        Index(None, "country", "metric"),
    )

    # A record is identified by where it came from: the load and the file's row.
    # No foreign key on the two bulk tables: its per-row check cost 40% of a million-row load,
    # and it guards nothing here: records are written only by the load that creates their
    # dataset, in its transaction, and datasets can never be deleted (append-only triggers).
    dataset_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    issuer_id: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    # How the file referred to the issuer (an ISIN, LEI, vendor id...), kept as evidence.
    issuer_ref: Mapped[str | None] = mapped_column(String(64))
    # One row of a vendor file can state several metrics (MSCI, Freedom House).
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[dt.date]
    # The vendor's own field name (e.g. TOB_MAX_REV_PCT), shown in evidence.
    source_field: Mapped[str | None] = mapped_column(String(64))


class ArmsEmbargo(Base):
    """An arms embargo row. Each load of a provider is the complete list as of its date."""

    __tablename__ = "arms_embargoes"

    # A record is identified by where it came from: the load and the file's row.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    country: Mapped[str] = mapped_column(String(2), index=True)
    authority: Mapped[str] = mapped_column(String(8))
    regime: Mapped[str] = mapped_column(String(300))
    since: Mapped[dt.date | None]
    until: Mapped[dt.date | None]


class ListEntry(Base):
    """A decision of a policy owner about an issuer (exclusion, inclusion, focus, exception...).

    Which entries are in force at a data version is decided in one place alone,
    ``app.datasets.repository.list_entries_in_force``: a policy's list is its newest replacing
    load (``ListReplacement``) plus the entries appended after it; per (issuer, list) the entry
    with the latest ``decided_on`` wins, ties by the later load.
    """

    __tablename__ = "list_entries"
    __table_args__ = (Index(None, "policy_key", "issuer_id"),)

    # A record is identified by where it came from: the load and the file's row.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    policy_key: Mapped[str] = mapped_column(String(64))
    issuer_ref: Mapped[str] = mapped_column(String(64))
    issuer_id: Mapped[str] = mapped_column(String(64))
    list: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(1000))
    decided_on: Mapped[dt.date]
    reference: Mapped[str | None] = mapped_column(String(300))
    review_on: Mapped[dt.date | None]
    expires_on: Mapped[dt.date | None]
    # An inclusion's named rules (the file's `rules`), space-separated; None: it names none.
    rule_ids: Mapped[str | None] = mapped_column(String(1000))


class ListReplacement(Base):
    """A list-entries load (``mode=replace``) that made its file the complete list of a policy.

    One row per (load, policy it replaced): each policy its rows name, or the ``policy`` the
    load was restricted to (then possibly with no entries at all: the list was emptied). Loads
    without a row here appended to the list. Append-only, like the entries themselves.
    """

    __tablename__ = "list_replacements"
    __table_args__ = (Index(None, "policy_key", "dataset_id"),)

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    policy_key: Mapped[str] = mapped_column(String(64), primary_key=True)


class SanctionsListEntry(Base):
    """One security of a published sanctions list (``ofac-ns-cmic``), as published.

    Each load of a provider is its complete list as of the load's date (like arms embargoes):
    an entity is listed while the provider's current list names it. One row per (entity, ISIN)
    of the file, ``position`` 1.. in the order the file gives the ISINs; an entity the file
    gives no ISIN for is kept too (``position`` 0, ``isin`` null): it can match no instrument,
    and the load's summary counts it. ISINs are stored as published (upper-cased), even those
    failing the check digit: matching is textual, at check time, against the instruments then
    known (an instrument loaded after the list still matches).
    """

    __tablename__ = "sanctions_list_entries"
    __table_args__ = (Index(None, "isin", "dataset_id"),)

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    isin: Mapped[str | None] = mapped_column(String(12))
    entity_ref: Mapped[str] = mapped_column(String(64))  # OFAC's ent_num
    name: Mapped[str] = mapped_column(String(300))
    program: Mapped[str] = mapped_column(String(64))
    listing_date: Mapped[dt.date | None]
    effective_date: Mapped[dt.date | None]
