"""policy tables: no TRUNCATE, no DELETE (policies and every policy version, drafts included)

Revision ID: 20261130_policy_no_truncate
Revises: 20261130_list_loads
Create Date: 2026-11-30 03:00:00

The policies migration refused UPDATE of ``policies`` and every change of a policy version but
its approval (draft -> approved: the one UPDATE the app makes), and DELETE of an approved
version; its row triggers never fire on TRUNCATE, so ``TRUNCATE policy_versions`` (and
``TRUNCATE policies CASCADE``) wiped approved versions on Postgres. Now, on both tables:
* TRUNCATE is refused (Postgres; SQLite has none), with ``mayhold_reject_change()`` from the
  datasets migration, as on every other table of record;
* DELETE is refused for every row: a policy, and a draft too (who proposed which document when
  is part of the approval record; a draft no one approves is simply superseded).
The approval UPDATE keeps working: its trigger (``policy_versions_immutable``) is unchanged.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261130_policy_no_truncate"
down_revision: str | None = "20261130_list_loads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("policies", "policy_versions")

# Worded so that both "immutable" (the policies migration's messages) and "append-only" (every
# other table's) describe it: which of two triggers on one event fires first is not specified.
_SQLITE_MESSAGE = "mayhold: DELETE on {table} refused: policies are immutable (append-only)"


def upgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION mayhold_reject_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mayhold_reject_change()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{_SQLITE_MESSAGE.format(table=table)}'); END"
            )


def downgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {table}_no_delete ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER {table}_no_delete")
