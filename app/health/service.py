"""Readiness: the database answers and its schema is at the migrations' head."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from app.health.schemas import Readiness
from app.kit.errors import ServiceUnavailable
from app.kit.logging import get_logger
from app.kit.migrations import current_revisions

log = get_logger("mayhold.health")


async def check_readiness(
    engine: AsyncEngine, expected_heads: frozenset[str], budget_seconds: float
) -> Readiness:
    try:
        current = await asyncio.wait_for(current_revisions(engine), timeout=budget_seconds)
    except Exception as exc:  # any failure to reach the database means "not ready"
        log.warning("readiness: database unreachable", error=repr(exc)[:300])
        raise ServiceUnavailable("The database is unreachable.") from exc
    if not current:
        raise ServiceUnavailable("The database has no schema yet: run 'mayhold migrate'.")
    if current != expected_heads:
        raise ServiceUnavailable(
            f"The database schema is at revision {', '.join(sorted(current))} but this "
            f"release expects {', '.join(sorted(expected_heads))}: run 'mayhold migrate'."
        )
    return Readiness(database=engine.dialect.name, revision=sorted(current))
