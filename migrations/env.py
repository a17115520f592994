"""Alembic environment: one set of migrations for Postgres and SQLite."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from app.kit.db import create_engine
from app.kit.settings import Settings
from app.models import Base
from app.models.base import DecimalText, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().database_url


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations must not import app code that may change later: render our column types
    # as the plain SQLAlchemy types they stand for.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, DecimalText):
        return "sa.String(length=40)"
    return False


# The decision log's partitions on Postgres (``decisions_p`` and the zero-padded first seq):
# created by ``app.decisions.partitions`` at run time, not by the models; the partitioned
# table ``decisions`` itself is compared as usual.
_PARTITION = re.compile(r"decisions_p[0-9]{19}")


def _include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (type_ == "table" and name is not None and _PARTITION.fullmatch(name))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_database_url(), pooled=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
