"""Decisions as the engine hands them to the log, and a migrated database with its own log."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.auth.schemas import Actor
from app.decisions.log import DecisionEntry, DecisionLog
from app.kit.db import Database
from app.kit.migrations import upgrade_to_head_async
from app.kit.settings import Settings
from app.models import Decision
from tests.support.databases import scratch_database

ORACLE = Actor(name="oms-desk-1", key_id=uuid.UUID("00000000-0000-4000-8000-000000000001"))
POLICY_SHA = "ab" * 32


def isin_for(n: int) -> str:
    """A 12-character ISIN-shaped identifier (check digits do not matter to the log)."""
    return f"NL{n:09d}0"


def payload(
    n: int = 0, *, verdict: str = "excluded", as_of: str = "2026-11-22T09:00:00Z"
) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "policy": {"key": "rpf", "version": 3, "sha256": POLICY_SHA},
        "data_version": 42,
        "instrument": {"isin": isin_for(n), "asset_class": "equity"},
        "issuer": {
            "issuer_id": f"I{n:07d}",
            "name": f"Issuer {n} N.V. \u2013 Zürich",
            "country": "NL",
        },
        "verdict": verdict,
        "may_hold": verdict in ("allowed", "watch"),
        "reasons": [
            {
                "rule_id": "tobacco",
                "title": "Tobacco producers",
                "outcome": "exclude",
                "via": [{"issuer_id": f"I{n:07d}", "relation": "self"}],
                "evidence": [
                    {
                        "provider": "iss",
                        "metric": "revenue_pct.tobacco",
                        "value": Decimal("50.10"),
                        "comparison": ">",
                        "threshold": Decimal("50"),
                        "as_of": "2026-06-30",
                        "dataset_id": 7,
                    }
                ],
            }
        ],
    }


def entry(
    n: int = 0,
    *,
    verdict: str = "excluded",
    actor: Actor = ORACLE,
    request_id: str | None = "req-1",
) -> DecisionEntry:
    return DecisionEntry(
        payload=payload(n, verdict=verdict),
        request={"policy": "rpf", "instrument": isin_for(n), "as_of": None},
        actor=actor,
        request_id=request_id,
    )


@asynccontextmanager
async def migrated_database(
    dialect: str, directory: Path, **settings: Any
) -> AsyncIterator[tuple[str, Database]]:
    """A new migrated database (real commits) and a ``Database`` on it."""
    async with scratch_database(dialect, directory) as url:
        await upgrade_to_head_async(Settings(database_url=url))
        database = Database.from_settings(Settings(database_url=url, **settings))
        try:
            yield url, database
        finally:
            await database.dispose()


@asynccontextmanager
async def running_log(
    database: Database, *, dedicated: bool = False, **kwargs: Any
) -> AsyncIterator[DecisionLog]:
    """A started log on ``database``: on its sessions, or (``dedicated``, Postgres) the
    service's own store, a connection of its own (``app.decisions.stores``)."""
    if dedicated:
        url = database.engine.url.render_as_string(hide_password=False)
        log = DecisionLog.for_database(
            database, Settings(database_url=url), dedicated_connection=True, **kwargs
        )
    else:
        log = DecisionLog.on_sessions(database.sessionmaker, **kwargs)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


async def stored_seqs(database: Database) -> list[int]:
    async with database.sessionmaker() as session:
        return list((await session.execute(select(Decision.seq).order_by(Decision.seq))).scalars())


def uses_index(plan: str, index: str) -> bool:
    """Whether a query plan reads ``index`` (one of the model's indexes on decisions) or, on
    the partitioned table (Postgres), a partition's own copy of it, which Postgres names
    ``<partition>_<columns>_idx``."""
    columns = index.removeprefix("ix_decisions_").replace("_decisions_", "_")
    return index in plan or re.search(rf"decisions_p\d{{19}}_{columns}_idx", plan) is not None
