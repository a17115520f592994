"""Published exclusion decisions of other investors (``published-exclusions``) and the data
steward's resolutions of their company names to issuers.

The published lists (Norges Bank / the Council on Ethics for the GPFG, KLP) name companies,
not identifiers: each row is kept exactly as published (``PublishedExclusion``) and affects no
verdict until a data steward has resolved its name to an issuer and a second key has confirmed
it (``ExclusionResolution``, append-only: who, when, what, which issuer, how confident).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK

# What a published decision does (``action``), read from its ``decision`` text at load time.
EXCLUSION = "exclusion"  # excluded (or recommended for exclusion)
OBSERVATION = "observation"  # placed under observation
REVOCATION = "revocation"  # an exclusion revoked, rescinded, re-included
OBSERVATION_ENDED = "observation_ended"  # removed from observation
OTHER = "other"  # recorded, affects nothing (e.g. "Active ownership instead of observation")
ACTIONS = (EXCLUSION, OBSERVATION, REVOCATION, OBSERVATION_ENDED, OTHER)

# How precisely a row's date was published: a day, a month ("2015-12"), a year ("2018"), or
# not at all. ``period_start`` is the first day of that period (ordering only, never shown as
# the published date: ``published_date`` is the text as published).
DATE_PRECISIONS = ("day", "month", "year")


class PublishedExclusion(Base):
    """One row of a published exclusion list, as published (append-only)."""

    __tablename__ = "published_exclusions"
    __table_args__ = (
        Index("ix_published_exclusions_investor_dataset_id", "investor", "dataset_id"),
    )

    # A record is identified by where it came from: the load and the file's row.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    investor: Mapped[str] = mapped_column(String(64))
    company: Mapped[str] = mapped_column(String(300))
    criterion: Mapped[str | None] = mapped_column(String(500))
    decision: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))
    published_date: Mapped[str | None] = mapped_column(String(10))
    date_precision: Mapped[str | None] = mapped_column(String(8))
    period_start: Mapped[dt.date | None]
    date_kind: Mapped[str | None] = mapped_column(String(300))
    source_url: Mapped[str | None] = mapped_column(String(1000))
    note: Mapped[str | None] = mapped_column(String(1000))


class ExclusionResolution(Base):
    """One step of a data steward's resolution of a published entry to an issuer (append-only).

    ``action``: ``propose`` (an issuer, with the name match's confidence), ``confirm`` (by
    another key: four eyes), ``reject`` (a proposal), ``ask-revoke`` (a confirmation, asked by
    one key), ``keep`` (the request withdrawn), ``revoke`` (by another key: four eyes). The
    entry's status is its latest step's. A confirm or revoke records a dataset (``dataset_id``): the
    issuer facts it wrote, so the data version moves and decisions replay as of it.
    """

    __tablename__ = "published_exclusion_resolutions"
    __table_args__ = (
        Index("ix_published_exclusion_resolutions_entry", "entry_dataset_id", "entry_source_row"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entry_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    entry_source_row: Mapped[int]
    action: Mapped[str] = mapped_column(String(10))
    issuer_id: Mapped[str] = mapped_column(String(64), index=True)
    # The name match's confidence, 0..1 (1: the normalised names are equal).
    confidence: Mapped[Decimal]
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(200))
    actor_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    note: Mapped[str | None] = mapped_column(String(1000))
    # confirm and revoke: the dataset recording the issuer facts they wrote.
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
