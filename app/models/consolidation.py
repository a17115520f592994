"""GLEIF level-2 relationship records, as loaded (append-only, like every loaded record).

Stored by LEI, never by issuer: which issuers an LEI names is decided when a snapshot is read
(``app.screening.repository``), so a relationship loaded before its issuers (or through an LEI
no issuer carries) connects once they are loaded.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class ConsolidationRecord(Base):
    """One relationship record of a ``gleif-relationships`` load: the file's row.

    Which record of a child's relationship type is current: those of the newest-dated load
    (ties: the later load) that names the child with that type (``consolidation_in_force``).
    """

    __tablename__ = "consolidation_links"
    __table_args__ = (
        Index("ix_consolidation_links_start", "start_lei", "relationship_type", "dataset_id"),
        Index("ix_consolidation_links_end", "end_lei"),
    )

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    source_row: Mapped[int] = mapped_column(primary_key=True)
    # The child (consolidated) and the parent (consolidating) entity.
    start_lei: Mapped[str] = mapped_column(String(20))
    end_lei: Mapped[str] = mapped_column(String(20))
    # IS_DIRECTLY_CONSOLIDATED_BY or IS_ULTIMATELY_CONSOLIDATED_BY.
    relationship_type: Mapped[str] = mapped_column(String(40))
    # As published: ACTIVE / INACTIVE, and the record's registration status (PUBLISHED,
    # LAPSED, RETIRED, ANNULLED...).
    relationship_status: Mapped[str] = mapped_column(String(20))
    registration_status: Mapped[str] = mapped_column(String(20))
    period_start: Mapped[dt.date | None]
    period_end: Mapped[dt.date | None]
    valid_from: Mapped[dt.date | None]
    valid_to: Mapped[dt.date | None]
    # The load's as_of (the provider's publication date), for which load is current.
    as_of: Mapped[dt.date]
