"""Alembic, driven from code: ``mayhold migrate``/``serve``, the tests and readiness use this.

Alembic is imported only where it is used: importing it loads its migration runtime and every
dialect's DDL (a third of a second), which a command that only checks the schema's revision
(``mayhold ingest``, ``_ensure_migrated``) does not need; see ``declared_heads``.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.engine import READ_ONLY_OPTION
from app.kit.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config(settings: Settings) -> Config:
    from alembic.config import Config

    # No ini file: the service must migrate from an installed package too (e.g. the image).
    config = Config()
    config.set_main_option("script_location", str(settings.migrations_dir))
    # ConfigParser interpolation treats % specially; URLs may contain escaped characters.
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    # The decisions_partitions migration sizes the first partitions it creates with it.
    config.attributes["decision_partition_rows"] = settings.decision_partition_min_rows
    return config


def upgrade_to_head(settings: Settings) -> None:
    """Blocking; runs its own event loop, so call it from a thread when one is running."""
    from alembic import command

    command.upgrade(alembic_config(settings), "head")


async def upgrade_to_head_async(settings: Settings) -> None:
    await asyncio.to_thread(upgrade_to_head, settings)


def head_revisions(settings: Settings) -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


def declared_heads(migrations_dir: Path) -> frozenset[str] | None:
    """The head revisions, read from the scripts' ``revision``/``down_revision`` literals
    without importing Alembic or running the scripts: every revision no other names as its
    ``down_revision``. None when a script does not state them as literals (then ask
    ``head_revisions``). tests/test_cli_startup.py checks it agrees with Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((migrations_dir / "versions").glob("*.py")):
        stated = _stated(ast.parse(script.read_bytes(), str(script)))
        if stated is None:
            return None
        revision, down = stated
        revisions.add(revision)
        parents.update(down)
    return frozenset(revisions - parents)


def _stated(module: ast.Module) -> tuple[str, tuple[str, ...]] | None:
    found: dict[str, object] = {}
    for node in module.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and value:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                return None
    revision, down = found.get("revision"), found.get("down_revision")
    if not isinstance(revision, str):
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


async def current_revisions(engine: AsyncEngine) -> frozenset[str]:
    """The revisions the database is at; empty when it was never migrated."""
    async with engine.connect() as conn:
        await conn.execution_options(**{READ_ONLY_OPTION: True})
        if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return frozenset()
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(row[0] for row in rows)
