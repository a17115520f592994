"""decisions: an index on (policy_key, seq) for listings by policy

Revision ID: 20261122_decisions_policy_index
Revises: 20261122_decisions
Create Date: 2026-11-22 09:00:00

``GET /v1/decisions?policy=KEY`` pages by seq: with this index one range scan, however small a
share of the log the policy has (a client mandate's decisions among the house policy's).

On Postgres the index is built CONCURRENTLY, outside the migration's transaction: a plain
CREATE INDEX blocks inserts for as long as it reads the log, and every check waits on the log.
On SQLite it is a plain CREATE INDEX (no table rebuild, so the append-only triggers stay).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261122_decisions_policy_index"
down_revision: str | None = "20261122_decisions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_decisions_policy_key_decisions_seq"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(
                INDEX,
                "decisions",
                ["policy_key", "seq"],
                postgresql_concurrently=True,
                if_not_exists=True,
            )
    else:
        op.create_index(INDEX, "decisions", ["policy_key", "seq"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, "decisions", postgresql_concurrently=True, if_exists=True)
    else:
        op.drop_index(INDEX, "decisions")
