"""published exclusions: published_exclusions, published_exclusion_resolutions (append-only)

Revision ID: 20261130_published_exclusions
Revises: 20261130_console_sessions
Create Date: 2026-11-30 11:00:00

The data kind ``published-exclusions`` (other investors' published exclusion decisions, name
only) and the data steward's resolutions of their names to issuers:
* ``published_exclusions``: one row per file row, as published;
* ``published_exclusion_resolutions``: each step (propose, confirm, reject, revoke), who, when,
  which issuer, the name match's confidence; a confirm or revoke names the dataset that
  recorded the issuer facts it wrote.
Both are append-only like every loaded record: UPDATE and DELETE refused on both dialects,
TRUNCATE on Postgres, with the datasets migration's ``mayhold_reject_change()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.kit.append_only import protect

revision: str = "20261130_published_exclusions"
down_revision: str | None = "20261130_console_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("published_exclusions", "published_exclusion_resolutions")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "published_exclusions",
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("investor", sa.String(length=64), nullable=False),
        sa.Column("company", sa.String(length=300), nullable=False),
        sa.Column("criterion", sa.String(length=500), nullable=True),
        sa.Column("decision", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("published_date", sa.String(length=10), nullable=True),
        sa.Column("date_precision", sa.String(length=8), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("date_kind", sa.String(length=300), nullable=True),
        sa.Column("source_url", sa.String(length=1000), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_published_exclusions_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_published_exclusions")),
    )
    op.create_index(
        "ix_published_exclusions_investor_dataset_id",
        "published_exclusions",
        ["investor", "dataset_id"],
        unique=False,
    )
    op.create_table(
        "published_exclusion_resolutions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("entry_dataset_id", _ID, nullable=False),
        sa.Column("entry_source_row", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_key_id", sa.Uuid(), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("dataset_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_published_exclusion_resolutions_dataset_id_datasets"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_published_exclusion_resolutions_entry_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_exclusion_resolutions")),
    )
    op.create_index(
        "ix_published_exclusion_resolutions_entry",
        "published_exclusion_resolutions",
        ["entry_dataset_id", "entry_source_row"],
        unique=False,
    )
    op.create_index(
        op.f("ix_published_exclusion_resolutions_issuer_id"),
        "published_exclusion_resolutions",
        ["issuer_id"],
        unique=False,
    )
    for table in TABLES:
        protect(table)


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers with it (both dialects).
    for table in reversed(TABLES):
        op.drop_table(table)
