"""Alembic, driven from code: ``mayhold migrate``/``serve``, the tests and readiness use this."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.engine import READ_ONLY_OPTION
from app.kit.settings import Settings


def alembic_config(settings: Settings) -> Config:
    # No ini file: the service must migrate from an installed package too (e.g. the image).
    config = Config()
    config.set_main_option("script_location", str(settings.migrations_dir))
    # ConfigParser interpolation treats % specially; URLs may contain escaped characters.
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def upgrade_to_head(settings: Settings) -> None:
    """Blocking; runs its own event loop, so call it from a thread when one is running."""
    command.upgrade(alembic_config(settings), "head")


async def upgrade_to_head_async(settings: Settings) -> None:
    await asyncio.to_thread(upgrade_to_head, settings)


def head_revisions(settings: Settings) -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


async def current_revisions(engine: AsyncEngine) -> frozenset[str]:
    """The revisions the database is at; empty when it was never migrated."""
    async with engine.connect() as conn:
        await conn.execution_options(**{READ_ONLY_OPTION: True})
        if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return frozenset()
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(row[0] for row in rows)
