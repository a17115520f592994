"""decision_checkpoints: the checkpoint chain and Ed25519 signatures

Revision ID: 20261130_checkpoint_signatures
Revises: 20261130_published_exclusions
Create Date: 2026-11-30 12:00:00

Four nullable columns on ``decision_checkpoints``: ``previous_seq`` and ``count`` (the checkpoint
this one follows, and the decisions it adds), ``key_id`` and ``signature`` (who signed its
canonical message, see ``app.decisions.signing``). Checkpoints recorded before stay as they were
(nulls: unsigned, unchained). Adding columns leaves the append-only triggers in place on both
dialects (SQLite's ADD COLUMN does not rebuild the table); no row is updated.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261130_checkpoint_signatures"
down_revision: str | None = "20261130_published_exclusions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "decision_checkpoints"
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("previous_seq", sa.BigInteger(), nullable=True))
    op.add_column(TABLE, sa.Column("count", sa.BigInteger(), nullable=True))
    op.add_column(TABLE, sa.Column("key_id", sa.String(length=32), nullable=True))
    op.add_column(TABLE, sa.Column("signature", sa.String(length=128), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place: the table is not rebuilt, its triggers stay.
    for column in ("signature", "key_id", "count", "previous_seq"):
        op.drop_column(TABLE, column)
