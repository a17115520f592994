"""Bulk reads and writes.

Writes: COPY on Postgres, batched executemany elsewhere; never one INSERT per row.
Reads: ``fetch_plain`` for the few queries that read a whole table (the full snapshot behind
the compiled index and the lists): on Postgres the driver fetches the rows directly, about
twice as fast as SQLAlchemy's result rows, which matters at a million facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, Table, insert
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


async def fetch_plain(
    conn: AsyncConnection, statement: Select[*tuple[Any, ...]]
) -> Sequence[Sequence[Any]]:
    """All rows of a Core select, as tuples of column values (result types applied).

    Postgres: compiled once by SQLAlchemy and run on the asyncpg connection itself (same
    transaction). Its bound parameters must be plain (ints, strings): they are passed as given.
    """
    if conn.dialect.name != "postgresql":
        return (await conn.execute(statement)).all()
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    records = await driver.fetch(compiled.string, *params)
    processors = [
        column.type.result_processor(conn.dialect, None) for column in statement.selected_columns
    ]
    if not any(processors):
        return records  # type: ignore[no-any-return]
    return [
        tuple(value if p is None else p(value) for p, value in zip(processors, record, strict=True))
        for record in records
    ]
