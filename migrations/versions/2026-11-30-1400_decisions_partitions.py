"""decisions: partitioned by seq range on Postgres; decision_id indexed, no longer unique

Revision ID: 20261130_decisions_partitions
Revises: 20261130_decision_sequencer
Create Date: 2026-11-30 14:00:00

Postgres: ``decisions`` becomes ``PARTITION BY RANGE (seq)``, so that a month of decisions can
be archived and detached whole (``mayhold decisions archive``). The cut-over, in this
migration's transaction, under the chain lock and an exclusive lock on the table (writers wait
for it, none fails):

1. the existing table is renamed aside, its constraint and index names freed;
2. the new partitioned ``decisions`` is created LIKE it (columns, defaults, the verdict CHECK),
   with the primary key ``(seq)``, the same indexes as partitioned indexes, and the
   append-only triggers (the row trigger is cloned by Postgres to every partition, present and
   future; TRUNCATE triggers are not, so each partition gets its own ``<name>_no_truncate``);
3. if it holds decisions, the old table becomes the first partition ``[1, head + 1)``: a
   ``CHECK (seq >= 1 AND seq < head + 1)`` added NOT VALID, validated, then ATTACH (which then
   skips its own scan and adopts the matching indexes); an empty one is dropped;
4. two empty partitions are created ahead of the head, of ``decision_partition_rows`` each
   (from the settings when migrated by ``mayhold``; 1,000,000 otherwise).

The sequence behind ``seq``'s default moves to the new table. ``decision_id`` loses its UNIQUE
constraint: a unique index on a partitioned table must contain the partition key, and
``(decision_id, seq)`` would guarantee nothing. It gets a plain index (lookups by id probe each
partition's); a decision_id is unique by being a uuid4 the writer draws. SQLite keeps one table
and gets the same index in place of the constraint (a batch rebuild, which drops the table's
triggers: they are created again).

Downgrade (Postgres) copies the attached partitions' rows back into one table; detached
(archived) partitions are not brought back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "20261130_decisions_partitions"
down_revision: str | None = "20261130_decision_sequencer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "decisions"
LEGACY = "decisions_unpartitioned"
# The decision chain's advisory lock (app.decisions.repository._CHAIN_LOCK_KEY).
CHAIN_LOCK_KEY = 0x6D68_6465_6369_7369
DEFAULT_PARTITION_ROWS = 1_000_000
AHEAD = 2
# (index name, columns): the model's indexes on decisions.
INDEXES = (
    ("ix_decisions_decided_at_decisions_seq", "decided_at, seq"),
    ("ix_decisions_isin_decisions_seq", "isin, seq"),
    ("ix_decisions_issuer_id_decisions_seq", "issuer_id, seq"),
    ("ix_decisions_policy_key_decisions_seq", "policy_key, seq"),
)
DECISION_ID_INDEX = "ix_decisions_decision_id"


def _partition_name(start: int) -> str:
    """``decisions_p`` and the first seq, zero-padded to a bigint's 19 digits (names sort as
    their ranges do); app.decisions.partitions names them alike."""
    return f"decisions_p{start:019d}"


def _create_partition(start: int, end: int) -> None:
    name = _partition_name(start)
    op.execute(f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM ({start}) TO ({end})")
    op.execute(
        f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mayhold_reject_change()"
    )


def _protect_sqlite() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, 'mayhold: {action} on {TABLE} refused: this "
            "table is append-only'); END"
        )


def _sequence(table: str) -> str | None:
    found = op.get_bind().execute(sa.text(f"SELECT pg_get_serial_sequence('{table}', 'seq')"))
    value = found.scalar_one_or_none()
    return None if value is None else str(value)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table(TABLE, recreate="always") as batch_op:
            batch_op.drop_constraint("uq_decisions_decision_id", type_="unique")
            batch_op.create_index(DECISION_ID_INDEX, ["decision_id"])
        _protect_sqlite()  # the rebuilt table has no triggers
        return
    bind = op.get_bind()
    rows = int(context.config.attributes.get("decision_partition_rows", DEFAULT_PARTITION_ROWS))
    op.execute(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})")
    op.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    head = bind.execute(sa.text(f"SELECT max(seq) FROM {TABLE}")).scalar_one_or_none()  # noqa: S608
    sequence = _sequence(TABLE)

    # 1. The old table aside, its names freed (constraint and index names are the model's).
    op.execute(f"ALTER TABLE {TABLE} RENAME TO {LEGACY}")
    op.execute(f"ALTER TABLE {LEGACY} RENAME CONSTRAINT pk_decisions TO {LEGACY}_pkey")
    op.execute(f"ALTER TABLE {LEGACY} DROP CONSTRAINT uq_decisions_decision_id")
    for index, _ in INDEXES:
        op.execute(f"ALTER INDEX IF EXISTS {index} RENAME TO {LEGACY}_{index[3:]}")
    # The parent's row trigger, cloned at ATTACH, takes its place (same name).
    op.execute(f"DROP TRIGGER {TABLE}_append_only ON {LEGACY}")

    # 2. The partitioned table.
    op.execute(
        f"CREATE TABLE {TABLE} (LIKE {LEGACY} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (seq)"
    )
    if sequence is not None:
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {TABLE}.seq")
        op.execute(f"ALTER TABLE {LEGACY} ALTER COLUMN seq DROP DEFAULT")
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT pk_decisions PRIMARY KEY (seq)")
    for index, columns in INDEXES:
        op.execute(f"CREATE INDEX {index} ON {TABLE} ({columns})")
    op.execute(f"CREATE INDEX {DECISION_ID_INDEX} ON {TABLE} (decision_id)")
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION mayhold_reject_change()"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mayhold_reject_change()"
    )

    # 3. The existing decisions: the first partition, or nothing.
    if head is None:
        op.execute(f"DROP TABLE {LEGACY}")
        start = 1
    else:
        start = int(head) + 1
        first = _partition_name(1)
        op.execute(
            f"ALTER TABLE {LEGACY} ADD CONSTRAINT {LEGACY}_bound "
            f"CHECK (seq >= 1 AND seq < {start}) NOT VALID"
        )
        op.execute(f"ALTER TABLE {LEGACY} VALIDATE CONSTRAINT {LEGACY}_bound")
        op.execute(
            f"ALTER TABLE {TABLE} ATTACH PARTITION {LEGACY} FOR VALUES FROM (1) TO ({start})"
        )
        op.execute(f"ALTER TABLE {LEGACY} DROP CONSTRAINT {LEGACY}_bound")
        op.execute(f"ALTER TABLE {LEGACY} RENAME TO {first}")
        op.execute(f"ALTER TRIGGER {TABLE}_no_truncate ON {first} RENAME TO {first}_no_truncate")
        # Its indexes named as Postgres names a new partition's (<partition>_<columns>_idx).
        op.execute(f"ALTER INDEX {LEGACY}_pkey RENAME TO {first}_pkey")
        for index, columns in (*INDEXES, (DECISION_ID_INDEX, "decision_id")):
            short = columns.replace(", ", "_")
            op.execute(f"ALTER INDEX IF EXISTS {LEGACY}_{index[3:]} RENAME TO {first}_{short}_idx")
        op.execute(
            f"ALTER INDEX IF EXISTS {LEGACY}_decision_id_idx RENAME TO {first}_decision_id_idx"
        )

    # 4. Room ahead of the head, so that the writer never meets a missing partition.
    for n in range(AHEAD):
        _create_partition(start + n * rows, start + (n + 1) * rows)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table(TABLE, recreate="always") as batch_op:
            batch_op.drop_index(DECISION_ID_INDEX)
            batch_op.create_unique_constraint("uq_decisions_decision_id", ["decision_id"])
        _protect_sqlite()
        return
    op.execute(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})")
    op.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    sequence = _sequence(TABLE)
    op.execute(f"CREATE TABLE {LEGACY} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    op.execute(f"INSERT INTO {LEGACY} SELECT * FROM {TABLE} ORDER BY seq")  # noqa: S608
    if sequence is not None:
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {LEGACY}.seq")
    op.execute(f"DROP TABLE {TABLE}")  # and its partitions, indexes and triggers
    op.execute(f"ALTER TABLE {LEGACY} RENAME TO {TABLE}")
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT pk_decisions PRIMARY KEY (seq)")
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT uq_decisions_decision_id UNIQUE (decision_id)")
    for index, columns in INDEXES:
        op.execute(f"CREATE INDEX {index} ON {TABLE} ({columns})")
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION mayhold_reject_change()"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mayhold_reject_change()"
    )
