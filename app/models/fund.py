"""Fund compositions (look-through), as loaded (append-only, like every loaded record).

* ``FundComposition``: one per (``fund-holdings`` load, fund it names): the load is that fund's
  complete composition as of ``as_of`` (an index is a composition too: an index derivative
  looks through it).
* ``FundHolding``: one constituent of a composition (the file's row).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK


class FundComposition(Base):
    """A fund's complete composition, as of a date, from one fund-holdings load.

    Which composition is a fund's on a day, as known at a data version: the one with the
    newest (``as_of``, ``dataset_id``) among loads up to that version dated on or before that
    day (``app.screening.snapshot.current_composition``).
    """

    __tablename__ = "fund_compositions"
    __table_args__ = (Index("ix_fund_compositions_fund_as_of", "fund_isin", "as_of", "dataset_id"),)

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    fund_isin: Mapped[str] = mapped_column(String(12), primary_key=True)
    as_of: Mapped[dt.date]
    constituents: Mapped[int]
    # The sum of the constituents' weights (at most 100 + the load's tolerance).
    weight_pct: Mapped[Decimal]


class FundHolding(Base):
    """One constituent of a fund composition: the file's row."""

    __tablename__ = "fund_holdings"
    __table_args__ = (Index(None, "dataset_id", "fund_isin"),)

    # A bulk table: no foreign key (as on holdings, facts, instrument_records).
    dataset_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    fund_isin: Mapped[str] = mapped_column(String(12))
    # An ISIN (normalized) or an issuer reference (issuer id, LEI, vendor id) as the file gave
    # it; resolved when a snapshot is read, so constituents loaded later connect.
    holding_ref: Mapped[str] = mapped_column(String(64))
    weight_pct: Mapped[Decimal]
