"""list entries: the rules an inclusion names (``rule_ids``)

Revision ID: 20261130_list_entry_rules
Revises: 20261130_policy_no_truncate
Create Date: 2026-11-30 04:00:00

An inclusion (readmission) lifts only the hits it was decided for: the rules it names, else
the hits established by data dated on or before its decided_on (issue 10; the engine's
``_readmits``). The rules it names are the list-entries column ``rules``, kept here as
space-separated rule ids. Nullable: every earlier entry names none. ADD COLUMN keeps the
append-only triggers on both dialects (SQLite needs no table rebuild for it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261130_list_entry_rules"
down_revision: str | None = "20261130_policy_no_truncate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("list_entries", sa.Column("rule_ids", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("list_entries") as batch:
        batch.drop_column("rule_ids")
