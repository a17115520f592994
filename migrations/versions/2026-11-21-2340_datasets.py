"""datasets: loads with provenance, and the append-only records they wrote

Revision ID: 20261121_datasets
Revises: 20261121_api_keys
Create Date: 2026-11-21 23:40:00

Loaded data is never updated in place: a later load supersedes an earlier one and the history
stays queryable. Triggers refuse UPDATE, DELETE (and, on Postgres, TRUNCATE) on these tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261121_datasets"
down_revision: str | None = "20261121_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY_TABLES = (
    "datasets",
    "issuer_records",
    "instrument_records",
    "facts",
    "arms_embargoes",
    "list_entries",
)

POSTGRES_REJECT_FUNCTION = """
CREATE OR REPLACE FUNCTION mayhold_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'mayhold: % on % refused: this table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def _protect(table: str) -> None:
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_REJECT_FUNCTION)
    op.create_table(
        "datasets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loaded_by", sa.String(length=200), nullable=False),
        sa.Column("loaded_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("source_name", sa.String(length=300), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("kind", "sha256", name=op.f("uq_datasets_kind_sha256")),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_loaded_at"), ["loaded_at"], unique=False)

    op.create_table(
        "arms_embargoes",
        sa.Column(
            "dataset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("authority", sa.String(length=8), nullable=False),
        sa.Column("regime", sa.String(length=300), nullable=False),
        sa.Column("since", sa.Date(), nullable=True),
        sa.Column("until", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_arms_embargoes_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_arms_embargoes")),
    )
    with op.batch_alter_table("arms_embargoes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_arms_embargoes_country"), ["country"], unique=False)

    op.create_table(
        "facts",
        sa.Column(
            "dataset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("issuer_ref", sa.String(length=64), nullable=True),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("source_field", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", "metric", name=op.f("pk_facts")),
    )
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_facts_country_facts_metric"), ["country", "metric"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_facts_issuer_id_facts_metric"), ["issuer_id", "metric"], unique=False
        )

    op.create_table(
        "instrument_records",
        sa.Column(
            "dataset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("isin", sa.String(length=12), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=False),
        sa.Column("asset_class", sa.String(length=20), nullable=False),
        sa.Column("underlying_isin", sa.String(length=12), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("cusip", sa.String(length=9), nullable=True),
        sa.Column("sedol", sa.String(length=7), nullable=True),
        sa.Column("figi", sa.String(length=12), nullable=True),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_instrument_records")),
    )
    with op.batch_alter_table("instrument_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_instrument_records_isin_instrument_records_dataset_id"),
            ["isin", "dataset_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_instrument_records_issuer_id"), ["issuer_id"], unique=False
        )

    op.create_table(
        "issuer_records",
        sa.Column(
            "dataset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("lei", sa.String(length=20), nullable=True),
        sa.Column("parent_issuer_id", sa.String(length=64), nullable=True),
        sa.Column("parent_control_pct", sa.String(length=40), nullable=True),
        sa.Column("state_owner_country", sa.String(length=2), nullable=True),
        sa.Column("state_owner_pct", sa.String(length=40), nullable=True),
        sa.Column("msci_issuer_id", sa.String(length=64), nullable=True),
        sa.Column("sustainalytics_entity_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_issuer_records_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_issuer_records")),
    )
    with op.batch_alter_table("issuer_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_issuer_records_issuer_id_issuer_records_dataset_id"),
            ["issuer_id", "dataset_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_issuer_records_lei"), ["lei"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_issuer_records_msci_issuer_id"), ["msci_issuer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_issuer_records_parent_issuer_id"), ["parent_issuer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_issuer_records_sustainalytics_entity_id"),
            ["sustainalytics_entity_id"],
            unique=False,
        )

    op.create_table(
        "list_entries",
        sa.Column(
            "dataset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("policy_key", sa.String(length=64), nullable=False),
        sa.Column("issuer_ref", sa.String(length=64), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=False),
        sa.Column("list", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(length=300), nullable=True),
        sa.Column("review_on", sa.Date(), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_list_entries_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_row", name=op.f("pk_list_entries")),
    )
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_list_entries_policy_key_list_entries_issuer_id"),
            ["policy_key", "issuer_id"],
            unique=False,
        )

    for table in APPEND_ONLY_TABLES:
        _protect(table)


def downgrade() -> None:
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_list_entries_policy_key_list_entries_issuer_id"))

    op.drop_table("list_entries")
    with op.batch_alter_table("issuer_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issuer_records_sustainalytics_entity_id"))
        batch_op.drop_index(batch_op.f("ix_issuer_records_parent_issuer_id"))
        batch_op.drop_index(batch_op.f("ix_issuer_records_msci_issuer_id"))
        batch_op.drop_index(batch_op.f("ix_issuer_records_lei"))
        batch_op.drop_index(batch_op.f("ix_issuer_records_issuer_id_issuer_records_dataset_id"))

    op.drop_table("issuer_records")
    with op.batch_alter_table("instrument_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instrument_records_issuer_id"))
        batch_op.drop_index(batch_op.f("ix_instrument_records_isin_instrument_records_dataset_id"))

    op.drop_table("instrument_records")
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_facts_issuer_id_facts_metric"))
        batch_op.drop_index(batch_op.f("ix_facts_country_facts_metric"))

    op.drop_table("facts")
    with op.batch_alter_table("arms_embargoes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_arms_embargoes_country"))

    op.drop_table("arms_embargoes")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_loaded_at"))

    op.drop_table("datasets")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS mayhold_reject_change()")
