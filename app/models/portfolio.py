"""Portfolios and their holdings, as loaded (append-only, like every loaded record).

* ``PortfolioRecord``: a portfolio as one ``portfolios`` load described it; its current
  record is the newest at a data version (a later load supersedes, like issuers).
* ``HoldingsReport``: one per (``holdings`` load, portfolio it names): the load is that
  portfolio's complete position report as of ``as_of`` (a custodian's statement).
* ``Holding``: one position of a report (the file's row).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK


class PortfolioRecord(Base):
    """A portfolio as one load described it. The current portfolio is its newest record."""

    __tablename__ = "portfolio_records"
    __table_args__ = (Index(None, "portfolio_id", "dataset_id"),)

    # A record is identified by where it came from: the load and the file's row.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    # The policy the portfolio is managed under (the house policy or a client overlay).
    policy_key: Mapped[str] = mapped_column(String(64))
    # "own" (the house's own account) or "client".
    account: Mapped[str] = mapped_column(String(8))
    base_currency: Mapped[str | None] = mapped_column(String(3))
    custodian: Mapped[str | None] = mapped_column(String(300))


class HoldingsReport(Base):
    """A portfolio's complete position report, as of a date, from one holdings load.

    Which report is a portfolio's holdings on a day, as known at a data version: the one with
    the newest (``as_of``, ``dataset_id``) among loads up to that version dated on or before
    that day (``app.portfolios.repository``).
    """

    __tablename__ = "holdings_reports"
    # Named: the convention's name would be longer than Postgres keeps (63 characters).
    __table_args__ = (
        Index("ix_holdings_reports_portfolio_as_of", "portfolio_id", "as_of", "dataset_id"),
    )

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    portfolio_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[dt.date]
    positions: Mapped[int]


class Holding(Base):
    """One position of a holdings report: the file's row."""

    __tablename__ = "holdings"
    __table_args__ = (Index(None, "dataset_id", "portfolio_id"),)

    # A record is identified by where it came from: the load and the file's row. No foreign
    # key, as on the other bulk tables (instrument_records, facts): rows are written only by
    # the load that creates their dataset, in its transaction, and datasets are never deleted.
    dataset_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[str] = mapped_column(String(64))
    isin: Mapped[str] = mapped_column(String(12))
    # Signed: a short position is negative (custodians report shorts so).
    quantity: Mapped[Decimal]
    # In the portfolio's base currency; None: the custodian gave no value.
    market_value: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    # "long" or "short".
    position: Mapped[str] = mapped_column(String(5))
