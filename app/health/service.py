"""Readiness: the database answers and its schema is at the migrations' head."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.health.repository import DataAge, HealthRepository
from app.health.schemas import Readiness
from app.kit.errors import ServiceUnavailable
from app.kit.logging import get_logger
from app.kit.metrics import DATA_AGE_DAYS
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


class DataAges:
    """The dates behind ``mayhold_data_age_days``, read again only after a load.

    The ages are computed on every scrape from dates that change only when a load is made (the
    newest dataset id, a one-row read) or, for the ages, at midnight UTC: a scrape every few
    seconds costs one tiny query, and still sees a load by any process at once.
    """

    def __init__(self) -> None:
        self._version = -1
        self._ages: list[DataAge] = []

    async def refresh(self, session: AsyncSession, today: dt.date) -> None:
        """Set ``mayhold_data_age_days`` for the scrape under way; series of (kind, provider)
        pairs no longer current vanish."""
        repository = HealthRepository(session)
        version = await repository.newest_dataset_id()
        if version != self._version:
            self._ages = await repository.data_ages()
            self._version = version
        DATA_AGE_DAYS.clear()
        for age in self._ages:
            DATA_AGE_DAYS.labels(kind=age.kind, provider=age.provider).set(
                (today - age.oldest_current_as_of).days
            )
