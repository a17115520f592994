"""The append-only triggers a migration puts on a table of loaded records.

UPDATE and DELETE are refused on both dialects, TRUNCATE too on Postgres, with the function
``mayhold_reject_change()`` the datasets migration (``20261121_datasets``) created; SQLite raises
with a message naming the table. Migration scripts call ``protect``: what it emits for a table
must never change once a migration has used it (a table that needs other triggers gets them
from a migration of its own), so upgrading an old database gives what it gave then.
"""

from __future__ import annotations

from alembic import op


def protect(table: str) -> None:
    """Make ``table`` append-only (in a migration's ``upgrade``; dropping the table drops
    its triggers with it)."""
    if op.get_bind().dialect.name == "postgresql":
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
