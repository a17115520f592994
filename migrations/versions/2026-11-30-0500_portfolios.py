"""portfolios and holdings: portfolio_records, holdings_reports, holdings (append-only)

Revision ID: 20261130_portfolios
Revises: 20261130_list_entry_rules
Create Date: 2026-11-30 05:00:00

The data kinds ``portfolios`` and ``holdings`` (contract, "Portfolios and holdings"):
* ``portfolio_records``: a portfolio as one load described it (its newest record is current);
* ``holdings_reports``: one row per (holdings load, portfolio it names): that portfolio's
  complete position report as of a date;
* ``holdings``: the positions of those reports, one per file row (a bulk table: no foreign
  key, like ``instrument_records`` and ``facts``).
All three are append-only like every loaded record: UPDATE and DELETE refused on both dialects,
TRUNCATE on Postgres, with the datasets migration's ``mayhold_reject_change()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.kit.append_only import protect

revision: str = "20261130_portfolios"
down_revision: str | None = "20261130_list_entry_rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("portfolio_records", "holdings_reports", "holdings")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "portfolio_records",
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("portfolio_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("policy_key", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=8), nullable=False),
        sa.Column("base_currency", sa.String(length=3), nullable=True),
        sa.Column("custodian", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_portfolio_records_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_portfolio_records")),
    )
    op.create_index(
        op.f("ix_portfolio_records_portfolio_id_portfolio_records_dataset_id"),
        "portfolio_records",
        ["portfolio_id", "dataset_id"],
        unique=False,
    )
    op.create_table(
        "holdings_reports",
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("portfolio_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("positions", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_holdings_reports_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "portfolio_id", name=op.f("pk_holdings_reports")),
    )
    op.create_index(
        "ix_holdings_reports_portfolio_as_of",
        "holdings_reports",
        ["portfolio_id", "as_of", "dataset_id"],
        unique=False,
    )
    op.create_table(
        "holdings",
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("portfolio_id", sa.String(length=64), nullable=False),
        sa.Column("isin", sa.String(length=12), nullable=False),
        sa.Column("quantity", sa.String(length=40), nullable=False),
        sa.Column("market_value", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("position", sa.String(length=5), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_holdings")),
    )
    op.create_index(
        op.f("ix_holdings_dataset_id_holdings_portfolio_id"),
        "holdings",
        ["dataset_id", "portfolio_id"],
        unique=False,
    )
    for table in TABLES:
        protect(table)


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers with it (both dialects).
    for table in reversed(TABLES):
        op.drop_table(table)
