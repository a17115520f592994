"""Bulk writes: COPY on Postgres, batched executemany elsewhere. Never one INSERT per row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def bulk_insert(conn: AsyncConnection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append rows (tuples in the table's column order) inside the connection's transaction."""
    if not rows:
        return
    columns = [c.name for c in table.columns]
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table.name, records=rows, columns=columns)
        return
    await conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
