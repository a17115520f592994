"""The compiled verdict index: current-time checks answered from memory.

For each policy asked about, the verdicts of the whole universe are compiled once, from one
snapshot at one data version, with the policy version(s) in force, for one day (the engine
reads only the date of the time asked, so a compilation holds for the whole day). A check for
the current time then costs a dictionary lookup, no database read; its decision is still
logged durably before it is returned.

Freshness. A watcher polls a tiny watermark (the newest dataset id, the policy approvals) every
``poll_seconds``: a load or an approval made by *any* process sharing the database marks every
compilation stale within that interval; so does midnight UTC and a policy version coming into
force (its ``effective_from``). A stale or not yet built compilation is never used: those
checks take the database path (still correct, just slower) while a new one is built in the
background; the watcher starts that build for every compilation held as soon as it is stale.
(Polling rather than LISTEN/NOTIFY: it works unchanged on SQLite, survives dropped
connections without re-subscribing, and one indexed query per half second is nothing.)

Incremental builds. When only datasets were published since the previous compilation (same
policy versions, same day), the next one is built from it: what the new datasets touched is
read by dataset id, and only the instruments whose decision can change are evaluated again
(``app.screening.incremental``); anything that cannot be bounded (an embargo or sanctions
list, relationship records, too large a share of the universe) takes the
full rebuild, as does the first compilation, an approval and a new day.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.kit.db import READ_ONLY_OPTION
from app.kit.errors import NotFound
from app.kit.logging import get_logger
from app.kit.memory import building_long_lived
from app.kit.metrics import INDEX_BUILD_SECONDS, INDEX_BUILDS, SCRAPE_TIME, Sample
from app.kit.time import utcnow
from app.kit.vocabulary import Account
from app.models import Dataset, Policy, PolicyVersion
from app.portfolios.repository import HoldingsReport, Portfolio, PortfolioRepository
from app.screening.applied import AppliedPolicy, applied_at
from app.screening.incremental import Dependents, affected, patch, patch_refs, recompile
from app.screening.limits import PortfolioLimits
from app.screening.positions import limit_state
from app.screening.repository import ScreeningRepository
from app.screening.snapshot import Snapshot
from app.screening.templates import Templates, compile_templates

log = get_logger("mayhold.index")

Watermark = tuple[int, int, str]


# A compilation's key: the policy and the account judged (exceptions scoped to the house's own
# account apply only to ``own``; a check without a portfolio is client money).
IndexKey = tuple[str, Account]


@dataclass(frozen=True)
class Compiled:
    applied: AppliedPolicy
    data_version: int
    day: dt.date
    watermark: Watermark
    valid_until: dt.datetime | None  # the next effective_from of the policy or its base
    snapshot: Snapshot
    templates: Templates  # isin -> decision payload without as_of/requested


@dataclass(frozen=True)
class CompiledPortfolio:
    """A portfolio ready for pre-trade checks: its record, its current position report and
    limit state, on the verdicts of its policy and account (same data version)."""

    portfolio: Portfolio
    holdings: HoldingsReport | None
    limits: PortfolioLimits | None
    compiled: Compiled


async def read_watermark(session: AsyncSession) -> Watermark:
    newest = (await session.execute(select(func.max(Dataset.id)))).scalar_one() or 0
    approvals, last = (
        await session.execute(
            select(func.count(), func.max(PolicyVersion.approved_at)).where(
                PolicyVersion.approved_at.is_not(None)
            )
        )
    ).one()
    return (newest, approvals, last.isoformat() if last else "")


# An incremental build re-reads and re-evaluates only what the new datasets touched; past this
# share of the universe's issuers (or instruments) a full rebuild is as quick.
MAX_INCREMENTAL_SHARE = 0.2


def _incremental_blocked(
    previous: Compiled, mark: Watermark, now: dt.datetime, applied: AppliedPolicy
) -> str | None:
    """Why the compilation at ``mark`` cannot be built from ``previous`` (None: it can)."""
    if previous.day != now.date():
        return "a new day"
    if previous.watermark[1:] != mark[1:]:
        return "a policy version approved"
    if previous.valid_until is not None and now >= previous.valid_until:
        return "a policy version came into force"
    if mark[0] < previous.data_version:
        return "the data version went back"
    if applied.policy_ref() != previous.applied.policy_ref():
        return "other policy versions in force"
    return None


async def _next_change(
    session: AsyncSession, keys: list[str], now: dt.datetime
) -> dt.datetime | None:
    query = (
        select(func.min(PolicyVersion.effective_from))
        .join(Policy, Policy.id == PolicyVersion.policy_id)
        .where(Policy.key.in_(keys), PolicyVersion.effective_from > now)
    )
    value = (await session.execute(query)).scalar_one()
    if value is not None and value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return value


class VerdictIndex:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        poll_seconds: float = 0.5,
        incremental_share: float = MAX_INCREMENTAL_SHARE,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._poll_seconds = poll_seconds
        # Past this share of the issuers or instruments touched, a full rebuild instead.
        self._incremental_share = incremental_share
        self._compiled: dict[IndexKey, Compiled] = {}
        self._portfolios: dict[str, CompiledPortfolio] = {}
        self._building: dict[IndexKey | str, asyncio.Task[None]] = {}
        # Keys with no policy (or portfolio) at a watermark: no build is started for them again
        # until the watermark moves (a request naming an unknown one must not start a build each).
        self._not_found: dict[IndexKey | str, Watermark] = {}
        self._watermark: Watermark | None = None
        self._watcher: asyncio.Task[None] | None = None
        # The reverse maps of each compilation held, for the incremental build that follows it.
        self._dependents: dict[IndexKey, tuple[Compiled, Dependents]] = {}
        self._preparing: set[asyncio.Task[None]] = set()
        # When each compilation held was built (time.monotonic()), for its age in /metrics.
        self._built: dict[IndexKey, float] = {}
        self.builds = 0
        self.incremental_builds = 0  # of ``builds``: from the previous compilation
        self.why_full: dict[IndexKey, str] = {}  # why each key's last full build was one
        self.attempts = 0  # builds started, successful or not

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="verdict-index-watcher")
        SCRAPE_TIME.add(self)

    async def stop(self) -> None:
        SCRAPE_TIME.discard(self)
        tasks = [
            t for t in (self._watcher, *self._building.values(), *self._preparing) if t is not None
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _session(self) -> AsyncSession:
        session = self._sessionmaker()
        await session.connection(execution_options={READ_ONLY_OPTION: True})
        return session

    async def _watch(self) -> None:
        while True:
            try:
                session = await self._session()
                async with session:
                    mark = await read_watermark(session)
                if mark != self._watermark:
                    self._watermark = mark
                # Every compilation held is brought up to date at once, not at the next check
                # (which would take the database path meanwhile).
                now = utcnow()
                for key, compiled in list(self._compiled.items()):
                    if not self._is_current(compiled, now):
                        self._start(key, self._build(key))
            except Exception as exc:  # database down: compilations age out, checks use the DB path
                log.warning("index watermark unavailable", error=repr(exc)[:200])
                self._watermark = None
            await asyncio.sleep(self._poll_seconds)

    def _is_current(self, compiled: Compiled, now: dt.datetime) -> bool:
        return (
            self._watermark is not None
            and compiled.watermark == self._watermark
            and compiled.day == now.date()
            and (compiled.valid_until is None or now < compiled.valid_until)
        )

    def _start(self, key: IndexKey | str, build: Coroutine[Any, Any, None]) -> None:
        if (
            self._watermark is not None
            and key not in self._building
            and self._not_found.get(key) != self._watermark
        ):
            self._building[key] = asyncio.create_task(build, name=f"index-{key}")
        else:
            build.close()

    def _missing(self, key: IndexKey | str) -> None:
        if len(self._not_found) >= 1024:  # bounded: keys come from requests
            self._not_found.clear()
        if self._watermark is not None:
            self._not_found[key] = self._watermark

    def metric_samples(self) -> Iterator[Sample]:
        """For /metrics, per compilation held (policy, account): its age in seconds and whether
        it is current (1: checks are answered from it; 0: stale, checks take the database path
        until the rebuild under way replaces it)."""
        now, clock = utcnow(), time.monotonic()
        for (policy_key, account), compiled in self._compiled.items():
            labels = {"policy": policy_key, "account": account}
            built = self._built.get((policy_key, account), clock)
            yield (
                "mayhold_index_age_seconds",
                "Seconds since the compiled index held for a policy and account was built.",
                labels,
                clock - built,
            )
            yield (
                "mayhold_index_current",
                "1 while checks for a policy and account are answered from its compiled index; "
                "0 while it is stale (a load, an approval, midnight UTC) and being rebuilt.",
                labels,
                1.0 if self._is_current(compiled, now) else 0.0,
            )

    def lookup(
        self, policy_key: str, now: dt.datetime, account: Account = "client"
    ) -> Compiled | None:
        """A compilation that is certainly current at ``now``, else None (and one is built)."""
        key: IndexKey = (policy_key, account)
        compiled = self._compiled.get(key)
        if compiled is not None and self._is_current(compiled, now):
            return compiled
        self._start(key, self._build(key))
        return None

    def portfolio(self, portfolio_id: str, now: dt.datetime) -> CompiledPortfolio | None:
        """A portfolio compiled on current verdicts at ``now``, else None (and one is built)."""
        found = self._portfolios.get(portfolio_id)
        if found is not None and self._is_current(found.compiled, now):
            return found
        self._start(portfolio_id, self._build_portfolio(portfolio_id))
        return None

    async def _build(self, key: IndexKey) -> None:
        policy_key, account = key
        self.attempts += 1
        started = time.monotonic()
        try:
            with building_long_lived():
                session = await self._session()
                async with session:
                    mark = await read_watermark(session)
                    now = utcnow()
                    applied = await applied_at(session, policy_key, now, account=account)
                    previous = self._compiled.get(key)
                    compiled: Compiled | None = None
                    dependents: Dependents | None = None
                    why = "no compilation yet"
                    if previous is not None:
                        why = _incremental_blocked(previous, mark, now, applied) or ""
                        if not why:
                            held = self._dependents.get(key)
                            if held is not None and held[0] is previous:
                                dependents = held[1]
                            try:
                                compiled, dependents, why = await _incremental(
                                    session,
                                    previous,
                                    dependents,
                                    applied,
                                    mark,
                                    now,
                                    self._incremental_share,
                                )
                            except Exception as exc:  # never stuck: the full build instead
                                log.warning(
                                    "index incremental build failed",
                                    policy=policy_key[:64],
                                    error=repr(exc)[:300],
                                )
                                compiled, dependents = None, None
                                why = f"the incremental build failed: {exc!r}"[:300]
                                await session.rollback()  # a failed statement aborts it
                                await session.connection(execution_options={READ_ONLY_OPTION: True})
                    mode = "incremental" if compiled is not None else "full"
                    if compiled is None:
                        compiled = await _full(session, applied, mark, now)
                # One assignment: checks read the previous compilation until now, this one next.
                self._compiled[key] = compiled
            if dependents is not None:
                self._dependents[key] = (compiled, dependents)
            else:  # after a full build, beside it: checks need none of it
                task = asyncio.create_task(self._prepare(key, compiled), name=f"deps-{key}")
                self._preparing.add(task)
                task.add_done_callback(self._preparing.discard)
            self._built[key] = time.monotonic()
            INDEX_BUILD_SECONDS.labels(policy=policy_key, account=account).observe(
                self._built[key] - started
            )
            INDEX_BUILDS.labels(policy=policy_key, account=account, mode=mode).inc()
            self.builds += 1
            if mode == "incremental":
                self.incremental_builds += 1
            else:
                self.why_full[key] = why
            log.info(
                "index compiled",
                policy=policy_key,
                account=account,
                mode=mode,
                why_full=why if mode == "full" else None,
                instruments=len(compiled.templates),
                data_version=mark[0],
                seconds=round(self._built[key] - started, 3),
            )
        except NotFound:  # no such policy (or none in force): the request's own path says 404
            self._missing(key)
        except Exception as exc:  # no compilation: checks keep using the database path
            log.warning("index build failed", policy=policy_key[:64], error=repr(exc)[:300])
        finally:
            self._building.pop(key, None)

    async def _prepare(self, key: IndexKey, compiled: Compiled) -> None:
        """The reverse maps of a full compilation, for the incremental builds that follow."""
        try:
            with building_long_lived():
                dependents = await asyncio.to_thread(Dependents.of, compiled.snapshot)
            if self._compiled.get(key) is compiled:  # not replaced meanwhile
                self._dependents[key] = (compiled, dependents)
        except Exception as exc:  # the next build computes them itself
            log.warning("index dependents failed", policy=key[0][:64], error=repr(exc)[:300])

    async def _build_portfolio(self, portfolio_id: str) -> None:
        try:
            session = await self._session()
            async with session:
                mark = await read_watermark(session)
                portfolio = await PortfolioRepository(session).portfolio(portfolio_id, mark[0])
            if portfolio is None:
                self._missing(portfolio_id)
                return
            now = utcnow()
            key: IndexKey = (portfolio.policy_key, portfolio.account)
            compiled = self.lookup(portfolio.policy_key, now, portfolio.account)
            if compiled is None and (task := self._building.get(key)) is not None:
                await asyncio.shield(task)  # the verdicts first (a portfolio rests on them)
                compiled = self.lookup(portfolio.policy_key, now, portfolio.account)
            if compiled is None or compiled.data_version != mark[0]:
                return  # not yet: checks take the database path, the next one tries again
            session = await self._session()
            async with session:
                holdings = await PortfolioRepository(session).holdings(
                    portfolio_id, now.date(), mark[0]
                )
            limits = await asyncio.to_thread(
                limit_state, compiled.applied, compiled.snapshot, now, portfolio, holdings
            )
            if len(self._portfolios) >= 1024:  # bounded: portfolio ids come from requests
                self._portfolios.clear()
            self._portfolios[portfolio_id] = CompiledPortfolio(
                portfolio, holdings, limits, compiled
            )
        except Exception as exc:  # no compilation: checks keep using the database path
            log.warning(
                "portfolio build failed", portfolio=portfolio_id[:64], error=repr(exc)[:300]
            )
        finally:
            self._building.pop(portfolio_id, None)


async def _full(
    session: AsyncSession, applied: AppliedPolicy, mark: Watermark, now: dt.datetime
) -> Compiled:
    """The compilation of the whole universe at ``mark``, from scratch."""
    snapshot = await ScreeningRepository(session).full_snapshot(mark[0], applied.list_keys)
    # Off the event loop: checks keep being answered meanwhile (GIL permitting).
    rendered = await asyncio.to_thread(compile_templates, applied, snapshot, now)
    templates = await asyncio.to_thread(Templates, mark[0], rendered)
    valid_until = await _next_change(session, applied.list_keys, now)
    return Compiled(applied, mark[0], now.date(), mark, valid_until, snapshot, templates)


async def _incremental(
    session: AsyncSession,
    previous: Compiled,
    dependents: Dependents | None,
    applied: AppliedPolicy,
    mark: Watermark,
    now: dt.datetime,
    share: float = MAX_INCREMENTAL_SHARE,
) -> tuple[Compiled | None, Dependents | None, str]:
    """The compilation at ``mark`` from ``previous`` (same policy versions and day): only what
    the datasets loaded since touched is read and re-evaluated (``app.screening.incremental``),
    with its reverse maps (``dependents``: ``previous``'s, None when not built; updated).
    None, and why, when the change cannot be bounded: the caller rebuilds in full."""
    repository = ScreeningRepository(session)
    old = previous.snapshot
    started = time.monotonic()
    limit = max(1, int(len(old.issuers) * share))
    changes = await repository.changes(previous.data_version, mark[0], applied.list_keys, limit)
    if changes.blocked is not None:
        return None, None, changes.blocked
    patched = patch(old, mark[0], changes, applied.list_keys)
    if dependents is None:  # its build was cut short before they were
        dependents = await asyncio.to_thread(Dependents.of, old)
    if changes.compositions:
        dependents.add_compositions(changes.compositions)
    # The constituent references that may now name another issuer (or none), resolved again:
    # those naming what the load touched, those of the compositions loaded, and the funds
    # themselves (a reference that now names a fund is no issuer's).
    refs = {name for name in changes.names if name in dependents.funds_by_ref}
    refs.update(
        c.ref
        for loads in changes.compositions.values()
        for load in loads
        for c in load.constituents
    )
    refs |= changes.fund_isins
    if refs:
        resolved = await repository.resolve_refs(refs, dict(patched.snapshot.issuers), mark[0])
        patch_refs(patched, refs, resolved)
    read = time.monotonic()
    isins = await asyncio.to_thread(affected, old, patched, dependents, previous.templates)
    found = time.monotonic()
    if len(isins) > max(1, int(len(patched.snapshot.instruments) * share)):
        return None, None, f"{len(isins):,} instruments affected"
    templates = await asyncio.to_thread(
        recompile, applied, patched.snapshot, previous.templates, isins, now
    )
    evaluated = time.monotonic()
    valid_until = await _next_change(session, applied.list_keys, now)
    compiled = Compiled(
        applied,
        mark[0],
        now.date(),
        mark,
        valid_until,
        patched.snapshot,
        templates,
    )
    log.info(
        "index updated incrementally",
        policy=applied.key,
        account=applied.account,
        issuers_touched=len(patched.issuers),
        instruments_reevaluated=len(isins),
        data_version=mark[0],
        read_seconds=round(read - started, 3),
        dependents_seconds=round(found - read, 3),
        evaluate_seconds=round(evaluated - found, 3),
    )
    return compiled, dependents, ""
