"""instrument_records: indexes on cusip, sedol and figi

Revision ID: 20261130_identifier_indexes
Revises: 20261130_fund_holdings
Create Date: 2026-11-30 09:00:00

Checks by any identifier (contract, "Checks by any identifier") resolve a CUSIP, SEDOL or FIGI
to its ISIN with ``WHERE <scheme> IN (...)`` over every instrument record: without an index
that reads the whole table once per check outside the verdict index. ISIN and LEI lookups were
indexed from the start.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261130_identifier_indexes"
down_revision: str | None = "20261130_fund_holdings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("cusip", "sedol", "figi")


def upgrade() -> None:
    for column in COLUMNS:
        op.create_index(f"ix_instrument_records_{column}", "instrument_records", [column])


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f"ix_instrument_records_{column}", table_name="instrument_records")
