"""fund look-through: fund_compositions, fund_holdings (append-only)

Revision ID: 20261130_fund_holdings
Revises: 20261130_consolidation_links
Create Date: 2026-11-30 08:00:00

The data kind ``fund-holdings`` (contract, "Portfolios and holdings"):
* ``fund_compositions``: one row per (fund-holdings load, fund it names): that fund's complete
  composition as of a date, with its constituents' count and summed weight;
* ``fund_holdings``: the constituents of those compositions, one per file row (a bulk table:
  no foreign key, like ``holdings`` and ``facts``).
Both are append-only like every loaded record: UPDATE and DELETE refused on both dialects,
TRUNCATE on Postgres, with the datasets migration's ``mayhold_reject_change()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.kit.append_only import protect

revision: str = "20261130_fund_holdings"
down_revision: str | None = "20261130_consolidation_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("fund_compositions", "fund_holdings")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fund_compositions",
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("fund_isin", sa.String(length=12), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("constituents", sa.Integer(), nullable=False),
        sa.Column("weight_pct", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_fund_compositions_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "fund_isin", name=op.f("pk_fund_compositions")),
    )
    op.create_index(
        "ix_fund_compositions_fund_as_of",
        "fund_compositions",
        ["fund_isin", "as_of", "dataset_id"],
        unique=False,
    )
    op.create_table(
        "fund_holdings",
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("fund_isin", sa.String(length=12), nullable=False),
        sa.Column("holding_ref", sa.String(length=64), nullable=False),
        sa.Column("weight_pct", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_fund_holdings")),
    )
    op.create_index(
        op.f("ix_fund_holdings_dataset_id_fund_holdings_fund_isin"),
        "fund_holdings",
        ["dataset_id", "fund_isin"],
        unique=False,
    )
    for table in TABLES:
        protect(table)


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers with it (both dialects).
    for table in reversed(TABLES):
        op.drop_table(table)
