"""consolidation links: GLEIF level-2 relationship records by LEI (append-only)

Revision ID: 20261130_consolidation_links
Revises: 20261130_sanctions_lists
Create Date: 2026-11-30 07:00:00

The data kind ``gleif-relationships`` (contract, "More published formats"):
``consolidation_links`` holds each relationship record a load read, by LEI (child
``start_lei``, parent ``end_lei``), with its status as published; which issuers the LEIs name
is decided when a snapshot is read. Append-only like every loaded record: UPDATE and DELETE
refused on both dialects, TRUNCATE on Postgres, with the datasets migration's
``mayhold_reject_change()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.kit.append_only import protect

revision: str = "20261130_consolidation_links"
down_revision: str | None = "20261130_sanctions_lists"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "consolidation_links"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("start_lei", sa.String(length=20), nullable=False),
        sa.Column("end_lei", sa.String(length=20), nullable=False),
        sa.Column("relationship_type", sa.String(length=40), nullable=False),
        sa.Column("relationship_status", sa.String(length=20), nullable=False),
        sa.Column("registration_status", sa.String(length=20), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_consolidation_links_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_consolidation_links")),
    )
    op.create_index(
        "ix_consolidation_links_start",
        TABLE,
        ["start_lei", "relationship_type", "dataset_id"],
        unique=False,
    )
    op.create_index("ix_consolidation_links_end", TABLE, ["end_lei"], unique=False)
    protect(TABLE)


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers with it (both dialects).
    op.drop_table(TABLE)
