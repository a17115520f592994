"""list loads: append or replace, the parameters of a load in its identity, list_replacements

Revision ID: 20261130_list_loads
Revises: 20261122_decision_checkpoints
Create Date: 2026-11-30 02:00:00

1. ``datasets`` gains ``mode`` and ``policy`` (list-entries: ``append`` or ``replace``, and the
   policy a load was restricted to; '' for other kinds), and its unique key becomes
   (kind, sha256, provider, as_of, mode, policy): the same bytes with other parameters are a
   new load, only the same bytes with the same parameters the same one.
2. ``list_replacements`` records, per list-entries load and policy, that the load replaced the
   policy's whole list (append-only, like every loaded record).
3. Existing databases keep their meaning: until now every list-entries load was the complete
   list of each policy it named, so each is marked ``mode = 'replace'`` and gets a
   replacement row per policy its entries name. That backfill is the one UPDATE ever made to
   ``datasets``; the append-only trigger is set aside for it, inside this migration's
   transaction, and is back before it commits.

SQLite: changing the unique key rebuilds ``datasets`` (batch mode), which drops its triggers:
they are created again here. The rebuild drops the old table while ``issuer_records``,
``arms_embargoes`` and ``list_entries`` refer to it: foreign keys are switched off around the
rebuild (a PRAGMA that works only outside a transaction, hence the autocommit blocks; deferring
them is not enough: SQLite counts the drop's violations and never uncounts them), and
``PRAGMA foreign_key_check`` then proves every reference still resolves.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261130_list_loads"
down_revision: str | None = "20261122_decision_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = ("kind", "sha256")
NEW_KEY = ("kind", "sha256", "provider", "as_of", "mode", "policy")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _protect(table: str) -> None:
    """The append-only triggers of the datasets migration (same names, same messages)."""
    if _postgres():
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


def _rebuild_datasets(old_key: Sequence[str], new_key: Sequence[str], upgrading: bool) -> None:
    """SQLite: rebuild ``datasets`` with the other unique key (and columns), foreign keys off."""
    context = op.get_context()
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys = OFF")
    with op.batch_alter_table("datasets", recreate="always") as batch_op:
        if upgrading:
            batch_op.add_column(
                sa.Column(
                    "mode", sa.String(length=16), server_default=sa.text("''"), nullable=False
                )
            )
            batch_op.add_column(
                sa.Column(
                    "policy", sa.String(length=64), server_default=sa.text("''"), nullable=False
                )
            )
        batch_op.drop_constraint(_name(old_key), type_="unique")
        batch_op.create_unique_constraint(_name(new_key), list(new_key))
        if not upgrading:
            batch_op.drop_column("policy")
            batch_op.drop_column("mode")
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"rebuilding datasets broke foreign keys: {broken[:5]}")
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys = ON")


def _name(columns: Sequence[str]) -> str:
    return "uq_datasets_" + "_".join(columns)


def upgrade() -> None:
    if _postgres():
        op.add_column(
            "datasets",
            sa.Column("mode", sa.String(length=16), server_default=sa.text("''"), nullable=False),
        )
        op.add_column(
            "datasets",
            sa.Column("policy", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        )
        op.drop_constraint(_name(OLD_KEY), "datasets", type_="unique")
        op.create_unique_constraint(_name(NEW_KEY), "datasets", list(NEW_KEY))
        op.execute("ALTER TABLE datasets DISABLE TRIGGER datasets_append_only")
        op.execute("UPDATE datasets SET mode = 'replace' WHERE kind = 'list-entries'")
        op.execute("ALTER TABLE datasets ENABLE TRIGGER datasets_append_only")
    else:
        _rebuild_datasets(OLD_KEY, NEW_KEY, upgrading=True)
        # The rebuilt table has no triggers yet: the backfill, then the triggers.
        op.execute("UPDATE datasets SET mode = 'replace' WHERE kind = 'list-entries'")
        _protect("datasets")

    op.create_table(
        "list_replacements",
        sa.Column(
            "dataset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("policy_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_list_replacements_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "policy_key", name=op.f("pk_list_replacements")),
    )
    with op.batch_alter_table("list_replacements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_list_replacements_policy_key_list_replacements_dataset_id"),
            ["policy_key", "dataset_id"],
            unique=False,
        )
    op.execute(
        "INSERT INTO list_replacements (dataset_id, policy_key) "
        "SELECT DISTINCT dataset_id, policy_key FROM list_entries"
    )
    _protect("list_replacements")


def downgrade() -> None:
    # SQLite drops a table's triggers with the table; Postgres too.
    with op.batch_alter_table("list_replacements", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_list_replacements_policy_key_list_replacements_dataset_id")
        )
    op.drop_table("list_replacements")
    if _postgres():
        op.drop_constraint(_name(NEW_KEY), "datasets", type_="unique")
        op.create_unique_constraint(_name(OLD_KEY), "datasets", list(OLD_KEY))
        op.drop_column("datasets", "policy")
        op.drop_column("datasets", "mode")
    else:
        _rebuild_datasets(NEW_KEY, OLD_KEY, upgrading=False)
        _protect("datasets")
