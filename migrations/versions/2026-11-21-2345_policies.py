"""policies: versioned policy documents, immutable once approved (triggers on both dialects)

The only UPDATE a policy version ever gets is its approval: draft -> approved, setting
status, approved_at, approved_by, approved_by_key_id and effective_from, nothing else. Any other
UPDATE, and any DELETE of an approved version, is refused by a trigger; ``policies`` rows are
never updated. Postgres: one plpgsql function per table; SQLite: RAISE(ABORT) triggers.

Beware: an SQLite batch migration of ``policy_versions`` or ``policies`` rebuilds the table and
loses its triggers; such a migration must create them again (``_SQLITE_TRIGGERS``).

Revision ID: 20261121_policies
Revises: 20261121_datasets
Create Date: 2026-11-21 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261121_policies"
down_revision: str | None = "20261121_datasets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns an approval may not touch (everything but the approval columns).
_FIXED = (
    "id",
    "policy_id",
    "version",
    "document",
    "sha256",
    "base_version",
    "created_at",
    "created_by",
    "created_by_key_id",
)

_POSTGRES_UNCHANGED = " AND ".join(
    # json has no equality operator; its text is the stored text.
    f"NEW.{c}::text IS NOT DISTINCT FROM OLD.{c}::text"
    if c == "document"
    else f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}"
    for c in _FIXED
)

_POSTGRES = [
    f"""
    CREATE FUNCTION policy_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF OLD.status = 'approved' THEN
                RAISE EXCEPTION 'policy_versions is immutable: version % of policy % is approved '
                    'and cannot be deleted', OLD.version, OLD.policy_id
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN OLD;
        END IF;
        IF NOT (OLD.status = 'draft' AND NEW.status = 'approved' AND {_POSTGRES_UNCHANGED}) THEN
            RAISE EXCEPTION 'policy_versions is immutable: version % of policy % (%) may only be '
                'approved, nothing else', OLD.version, OLD.policy_id, OLD.status
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER policy_versions_immutable BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION policy_versions_immutable()
    """,
    """
    CREATE FUNCTION policies_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'policies is immutable: policy % cannot be changed', OLD.key
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER policies_immutable BEFORE UPDATE ON policies
    FOR EACH ROW EXECUTE FUNCTION policies_immutable()
    """,
]

_SQLITE_UNCHANGED = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _FIXED)

_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER policy_versions_immutable_update BEFORE UPDATE ON policy_versions
    FOR EACH ROW WHEN NOT (OLD.status = 'draft' AND NEW.status = 'approved' AND {_SQLITE_UNCHANGED})
    BEGIN
        SELECT RAISE(ABORT, 'policy_versions is immutable: a version may only be approved');
    END
    """,
    """
    CREATE TRIGGER policy_versions_immutable_delete BEFORE DELETE ON policy_versions
    FOR EACH ROW WHEN OLD.status = 'approved'
    BEGIN
        SELECT RAISE(ABORT, 'policy_versions is immutable: an approved version cannot be deleted');
    END
    """,
    """
    CREATE TRIGGER policies_immutable_update BEFORE UPDATE ON policies
    BEGIN
        SELECT RAISE(ABORT, 'policies is immutable: a policy cannot be changed');
    END
    """,
]


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("extends_key", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["extends_key"], ["policies.key"], name=op.f("fk_policies_extends_key_policies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("key", name=op.f("uq_policies_key")),
    )
    op.create_table(
        "policy_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("policy_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("approved_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'draft' AND approved_at IS NULL AND approved_by IS NULL"
            " AND approved_by_key_id IS NULL AND effective_from IS NULL)"
            " OR (status = 'approved' AND approved_at IS NOT NULL AND approved_by IS NOT NULL"
            " AND effective_from IS NOT NULL)",
            name=op.f("ck_policy_versions_approval"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'approved')", name=op.f("ck_policy_versions_status")
        ),
        sa.CheckConstraint(
            "created_by_key_id IS NULL OR approved_by_key_id IS NULL"
            " OR created_by_key_id <> approved_by_key_id",
            name=op.f("ck_policy_versions_four_eyes"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_policy_versions_version")),
        sa.ForeignKeyConstraint(
            ["approved_by_key_id"],
            ["api_keys.id"],
            name=op.f("fk_policy_versions_approved_by_key_id_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_key_id"],
            ["api_keys.id"],
            name=op.f("fk_policy_versions_created_by_key_id_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policies.id"], name=op.f("fk_policy_versions_policy_id_policies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_versions")),
        sa.UniqueConstraint(
            "policy_id",
            "effective_from",
            name=op.f("uq_policy_versions_policy_id_effective_from"),
        ),
        sa.UniqueConstraint(
            "policy_id", "version", name=op.f("uq_policy_versions_policy_id_version")
        ),
    )
    statements = _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER policies_immutable ON policies")
        op.execute("DROP TRIGGER policy_versions_immutable ON policy_versions")
        op.execute("DROP FUNCTION policies_immutable()")
        op.execute("DROP FUNCTION policy_versions_immutable()")
    # SQLite drops a table's triggers with the table.
    op.drop_table("policy_versions")
    op.drop_table("policies")
