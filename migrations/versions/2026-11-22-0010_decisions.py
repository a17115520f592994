"""decisions: the append-only, hash-chained decision log

Revision ID: 20261122_decisions
Revises: 20261121_policies
Create Date: 2026-11-22 00:10:00

Every answered decision is one row, written once by the group-commit writer
(``app.decisions.log``) and never changed: triggers refuse UPDATE and DELETE on both dialects,
and TRUNCATE on Postgres (reusing ``mayhold_reject_change()`` from the datasets migration).

``payload`` and ``request`` are TEXT, not JSON/JSONB: verification recomputes the hash over the
stored bytes, which a JSON type would re-format.

Beware: an SQLite batch migration of ``decisions`` rebuilds the table and loses its triggers;
such a migration must create them again (``_protect``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261122_decisions"
down_revision: str | None = "20261121_policies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "decisions"


def _protect(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        # mayhold_reject_change() was created by the datasets migration.
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mayhold_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION mayhold_reject_change()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'mayhold: {action} on {table} refused: this "
                "table is append-only'); END"
            )


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy_key", sa.String(length=64), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("policy_sha256", sa.String(length=64), nullable=False),
        sa.Column("data_version", sa.BigInteger(), nullable=False),
        sa.Column("isin", sa.String(length=12), nullable=True),
        sa.Column("issuer_id", sa.String(length=64), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("may_hold", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('allowed', 'watch', 'excluded', 'unknown')",
            name=op.f("ck_decisions_verdict"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_decisions")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_decisions_decision_id")),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decisions_decided_at_decisions_seq"), ["decided_at", "seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_decisions_isin_decisions_seq"), ["isin", "seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_decisions_issuer_id_decisions_seq"), ["issuer_id", "seq"], unique=False
        )
    _protect(TABLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {TABLE}_no_truncate ON {TABLE}")
        op.execute(f"DROP TRIGGER {TABLE}_append_only ON {TABLE}")
    # SQLite drops a table's triggers with the table.
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_issuer_id_decisions_seq"))
        batch_op.drop_index(batch_op.f("ix_decisions_isin_decisions_seq"))
        batch_op.drop_index(batch_op.f("ix_decisions_decided_at_decisions_seq"))
    op.drop_table(TABLE)
