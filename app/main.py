"""The ASGI application: ``create_app()`` wires the domains, errors, middleware and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app.auth.endpoints import router as auth_router
from app.auth.service import KeyCache
from app.console.endpoints import router as console_router
from app.datasets.endpoints import router as datasets_router
from app.decisions.endpoints import router as decisions_router
from app.decisions.log import DecisionLog
from app.decisions.partitions import PartitionKeeper
from app.decisions.signing import CheckpointTrust
from app.docs.endpoints import router as docs_router
from app.health.endpoints import router as health_router
from app.issuers.endpoints import router as issuers_router
from app.kit.db import Database
from app.kit.files import remove_stale_spools
from app.kit.limits import RequestLimitsMiddleware
from app.kit.logging import configure_logging, get_logger
from app.kit.middleware import HttpMethodsMiddleware, RequestContextMiddleware
from app.kit.migrations import head_revisions
from app.kit.openapi import add_component_schemas
from app.kit.problems import install_problem_handlers
from app.kit.query_params import forbid_unknown_query_params
from app.kit.settings import Settings, get_settings
from app.lists.endpoints import router as lists_router
from app.policies.document import PolicyDocument
from app.policies.endpoints import router as policies_router
from app.portfolios.endpoints import router as portfolios_router
from app.published_exclusions.endpoints import router as published_exclusions_router
from app.screening.endpoints import router as screening_router
from app.screening.fast_path import CheckFastPath
from app.screening.index import VerdictIndex
from app.screening.service import recompute

log = get_logger("mayhold.app")

API_DESCRIPTION = """\
Answers "may we hold X?" for a policy: a verdict (`allowed`, `watch`, `excluded`, `unknown`)
with the rule, the data and the policy version behind it.

Every error is `application/problem+json` (RFC 9457). Authenticate with
`Authorization: Bearer <api key>`; each endpoint names the scope it needs.

Every `GET` also answers `HEAD` (the same status and headers, no body: a list's `ETag` without
its rows); `OPTIONS` on a path answers 204 with `Allow` naming every method it serves.
"""

# Every tag an operation names is declared here, with what it groups (tests/test_openapi.py
# fails on an operation whose tag is not): the order is the order of the rendered docs.
OPENAPI_TAGS: list[dict[str, str]] = [
    {
        "name": "checks",
        "description": "May we hold X? Pre-trade checks one by one or in batches, "
        "the post-trade run of a portfolio, and a policy draft's impact (scope `check`).",
    },
    {
        "name": "lists",
        "description": "Exclusion and watch lists for custodians: streamed, "
        "cacheable, with changes since a token (scope `lists:read`).",
    },
    {
        "name": "decisions",
        "description": "The decision log for auditors: every answer as it was "
        "given, replayed, and its hash chain verified (scope `decisions:read`).",
    },
    {
        "name": "policies",
        "description": "Versioned policies: drafts, four-eyes approval, the "
        "version in force at a time, diffs and canonical documents (`policies:write`, "
        "`policies:approve`; reading needs any key).",
    },
    {
        "name": "portfolios",
        "description": "Portfolios, their holdings and account types as known "
        "at a time (scope `check`).",
    },
    {
        "name": "datasets",
        "description": "Data loads (vendor, list, sanctions and holdings files), "
        "all or nothing, with their provenance (loading: scope `data:write`).",
    },
    {
        "name": "issuers",
        "description": "Issuers, instruments and countries with the facts and "
        "evidence behind verdicts, now or as known at a past time (any key).",
    },
    {
        "name": "published-exclusions",
        "description": "Other investors' published exclusions (Norges Bank, KLP), which name "
        "companies, not identifiers: a data steward resolves each name to an issuer, a second "
        "key confirms (reading: any key; resolving: scope `data:write`).",
    },
    {"name": "auth", "description": "API keys: who is asking, and key management (scope `admin`)."},
    {"name": "health", "description": "Liveness and readiness probes (no key)."},
]

# The document is served by the service it describes: the server is the host it came from.
OPENAPI_SERVERS = [
    {"url": "/", "description": "This mayhold service (the host serving this document)"}
]
OPENAPI_CONTACT = {"name": "mayhold maintainers"}


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the app. Tests pass their own ``database`` (a transaction-bound session factory)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owns_database = database is None
        # Uploads left behind by a process killed mid-load (none in use is touched).
        removed = remove_stale_spools(settings.upload_directory)
        if removed:
            log.warning("removed stale uploads", files=removed)
        app.state.database = database or Database.from_settings(settings)
        # A test's transaction-bound database keeps the log on its sessions (rolled back after).
        app.state.decision_log = DecisionLog.for_database(
            app.state.database, settings, dedicated_connection=owns_database
        )
        await app.state.decision_log.start()
        # The decision log's partitions kept ahead of its head (Postgres), by the service
        # itself (not by a test's transaction-bound database).
        app.state.partition_keeper = None
        if (
            owns_database
            and settings.dialect == "postgresql"
            and settings.decision_partition_interval_seconds > 0
        ):
            app.state.partition_keeper = PartitionKeeper(
                app.state.database,
                ahead=settings.decision_partitions_ahead,
                min_rows=settings.decision_partition_min_rows,
                days=settings.decision_partition_days,
                interval=settings.decision_partition_interval_seconds,
            )
            await app.state.partition_keeper.start()
        app.state.verdict_index = None
        # Replay needs the engine; the decision log must not import it (screening writes to
        # the log): the one place both meet is here.
        app.state.recompute = recompute
        if settings.index_enabled:
            app.state.verdict_index = VerdictIndex(
                app.state.database.sessionmaker, poll_seconds=settings.index_poll_seconds
            )
            await app.state.verdict_index.start()
        log.info("started", database=settings.dialect)
        try:
            yield
        finally:
            if app.state.partition_keeper is not None:
                await app.state.partition_keeper.stop()
            if app.state.verdict_index is not None:
                await app.state.verdict_index.stop()
            # Flush the decisions still queued before the database goes away.
            await app.state.decision_log.stop()
            if owns_database:
                await app.state.database.dispose()

    app = FastAPI(
        title="mayhold",
        version="0.1.0",
        description=API_DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        servers=OPENAPI_SERVERS,
        contact=OPENAPI_CONTACT,
        lifespan=lifespan,
        # /docs and /redoc are app.docs' pages, served from vendored files (no CDN).
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(forbid_unknown_query_params)],
    )
    app.state.settings = settings
    # Read once, at start: a key file that is missing or not an Ed25519 key stops the service
    # here rather than answering verify without the keys it was told to trust.
    app.state.checkpoint_trust = CheckpointTrust.from_files(
        settings.checkpoint_key_file,
        settings.checkpoint_trusted_keys,
        require_signed=settings.require_signed_checkpoints,
    )
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.state.expected_heads = head_revisions(settings)
    if database is not None:
        app.state.database = database

    install_problem_handlers(app)
    # Innermost: a GET /v1/check the route would accept as it stands is answered here,
    # without routing and dependency resolution (HEAD arrives as GET; ids, logs and metrics
    # are the outer middleware's, as for every request).
    app.add_middleware(CheckFastPath)
    # Added first, so inside the request context: the access log and metrics name HEAD as HEAD.
    app.add_middleware(HttpMethodsMiddleware)
    app.add_middleware(RequestLimitsMiddleware)
    app.add_middleware(RequestContextMiddleware)

    app.include_router(health_router)
    # Routes are matched in order: the pre-trade check, the hot path, right after the probes.
    app.include_router(screening_router)
    app.include_router(auth_router)
    app.include_router(datasets_router)
    app.include_router(issuers_router)
    app.include_router(policies_router)
    app.include_router(decisions_router)
    app.include_router(lists_router)
    app.include_router(portfolios_router)
    app.include_router(console_router)
    app.include_router(published_exclusions_router)
    app.include_router(docs_router)
    add_component_schemas(app, PolicyDocument)

    return app


def build_app_from_environment() -> FastAPI:
    """Entry point for ``uvicorn --factory app.main:build_app_from_environment``."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
