"""sanctions lists: sanctions_list_entries (append-only)

Revision ID: 20261130_sanctions_lists
Revises: 20261130_portfolios
Create Date: 2026-11-30 06:00:00

The data kind ``ofac-ns-cmic`` (contract, "More published formats"): each load is its
provider's complete list as of its date, one row per (entity, ISIN) as published, and one row
for an entity published without ISINs (``position`` 0, ``isin`` null). Matched textually
against instruments at check time (``sanctions.us_ns_cmic``). Append-only like every loaded
record: UPDATE and DELETE refused on both dialects, TRUNCATE on Postgres, with the datasets
migration's ``mayhold_reject_change()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.kit.append_only import protect

revision: str = "20261130_sanctions_lists"
down_revision: str | None = "20261130_portfolios"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "sanctions_list_entries"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("isin", sa.String(length=12), nullable=True),
        sa.Column("entity_ref", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=False),
        sa.Column("listing_date", sa.Date(), nullable=True),
        sa.Column("effective_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f(f"fk_{TABLE}_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", "position", name=op.f(f"pk_{TABLE}")),
    )
    op.create_index(
        op.f(f"ix_{TABLE}_isin_{TABLE}_dataset_id"), TABLE, ["isin", "dataset_id"], unique=False
    )
    protect(TABLE)


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers with it (both dialects).
    op.drop_table(TABLE)
