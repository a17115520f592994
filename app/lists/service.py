"""Lists for custodians: every issuer or instrument a policy excludes or puts on watch.

The verdicts are the checks' own: the same pure engine over the whole universe's snapshot at one
data version, with the policy as it applies (``AppliedPolicy``: versions in force, overlay
base, account), on one day.

* ``level=instrument``: exactly what ``GET /v1/check`` answers for each instrument.
* ``level=issuer``: the issuer itself judged (``evaluate_issuers``): every rule counts whatever
  asset classes it is restricted to (listed when some of its instruments would be), nothing
  travels from an underlying. Issuers without instruments (parents, state holding companies)
  are listed too.
* ``rule_ids``: the rules and list entries that carry the row's verdict (an exclusion's reasons
  on an excluded row, not the watch reasons beside them).
* ``since``: the date the verdict rests on. Each reason carrying the verdict is established by
  its newest piece of evidence (a provider's as-of date, a list entry's decided_on, an arms
  embargo list's date); the row's ``since`` is the earliest of those: the verdict has held, as
  far as the data shows, since then. Fresher vendor data re-confirming a verdict moves it on.
* Rows are ordered by ISIN (instrument level) or issuer_id (issuer level); that is also their
  key in deltas.

Memory: the snapshot, plus one chunk of evaluations at a time (rows are produced lazily).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.repository import data_version
from app.kit.errors import FieldError, InvalidInput, NotFound
from app.kit.memory import building_long_lived
from app.kit.time import check_time, utcnow
from app.kit.vocabulary import Account
from app.lists.repository import ListRepository
from app.lists.tokens import ListToken, short_hash
from app.policies import service as policy_service
from app.portfolios.service import portfolio_at
from app.screening.applied import AppliedPolicy, applied_as_recorded, applied_at
from app.screening.engine import Reason, outcome_verdict
from app.screening.index import Compiled, VerdictIndex
from app.screening.repository import ScreeningRepository
from app.screening.snapshot import InstrumentNode, Snapshot

Level = Literal["issuer", "instrument"]
Change = Literal["added", "removed", "changed"]
LISTED = ("excluded", "watch")
EVALUATION_CHUNK = 5_000  # subjects evaluated per step (one engine context, one thread hop)
ROW_CHUNK = 5_000  # rows rendered at a time

T = TypeVar("T")
# What a row needs of one reason: (rule_id, the verdict it gives, its evidence's dates).
Grounds = tuple[str, str, tuple[dt.date, ...]]


@dataclass(frozen=True, slots=True)  # slots: a large list holds 10^5 of them, read once each
class ListRow:
    issuer_id: str
    name: str
    country: str
    lei: str | None
    verdict: str
    rule_ids: tuple[str, ...]
    since: dt.date | None
    isin: str | None = None
    asset_class: str | None = None
    change: Change | None = None  # deltas only

    @property
    def key(self) -> str:
        return self.isin if self.isin is not None else self.issuer_id


@dataclass(frozen=True)
class ListState:
    """What one list's verdicts rest on; its token names exactly this."""

    token: ListToken
    applied: AppliedPolicy
    at: dt.datetime  # the time evaluated for (the engine reads only its date)


@dataclass(frozen=True)
class ListPlan:
    policy_key: str
    level: Level
    current: ListState
    since: ListState | None
    live: bool  # the current time was asked for (the compiled index may answer)

    @property
    def token(self) -> str:
        return self.current.token.encode()


@dataclass(frozen=True)
class Universe:
    """A list's inputs, read: the snapshot and LEIs, and the index's verdicts when current."""

    state: ListState
    snapshot: Snapshot
    leis: Mapping[str, str]
    templates: Mapping[str, Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class ListExport:
    plan: ListPlan
    current: Universe
    previous: Universe | None

    def rows(self) -> Iterator[ListRow]:
        """The list's rows (or, with ``since``, the delta), lazily: CPU only, no database."""
        rows = _rows(self.current, self.plan.level)
        if self.previous is None:
            return rows
        return _delta(_rows(self.previous, self.plan.level), rows)

    async def chunks(self, render: Callable[[list[ListRow]], T]) -> AsyncIterator[T]:
        """The rows in chunks, each computed and rendered in a worker thread: the event loop
        stays free, and one thread hop serves a whole chunk."""
        rows = self.rows()

        def step() -> T | None:
            # Evaluating a chunk builds what later chunks reuse (each issuer's reasons): the
            # collector is paused for the chunk, not for the whole (client-paced) response.
            with building_long_lived():
                chunk = _take(rows, ROW_CHUNK)
                return render(chunk) if chunk else None

        while (rendered := await asyncio.to_thread(step)) is not None:
            yield rendered


# ----------------------------------------------------------------------------- planning


async def plan_list(
    session: AsyncSession,
    policy_key: str,
    level: Level,
    as_of: dt.datetime | None,
    since: str | None,
    portfolio_id: str | None = None,
) -> ListPlan:
    """Which list is asked for, and its token: a few small reads, no verdicts yet (for 304).

    ``portfolio_id``: the list as it applies to that portfolio (its account decides which
    exceptions apply); 404 unknown portfolio, 422 when it is held under another policy.
    """
    now = utcnow()
    at = check_time(as_of, now)
    repository = ListRepository(session)
    version = await data_version(session, at if as_of is not None else None)
    account: Account = "client"
    if portfolio_id is not None:
        portfolio = await portfolio_at(session, portfolio_id, version)
        if portfolio.policy_key != policy_key:
            raise InvalidInput(
                f"portfolio {portfolio_id!r} is held under policy {portfolio.policy_key!r}, "
                f"not {policy_key!r}: ask /v1/lists/{portfolio.policy_key}?portfolio="
                f"{portfolio_id}.",
                errors=[FieldError(loc=("query", "portfolio"), msg="held under another policy")],
            )
        account = portfolio.account
    applied = await applied_at(session, policy_key, at, account=account)
    token = ListToken(
        policy_key=applied.key,
        policy_version=applied.version,
        policy_sha=short_hash(applied.sha256),
        base_key=applied.base_key,
        base_version=applied.base_version,
        base_sha=short_hash(applied.base_sha256) if applied.base_key else None,
        data_version=version,
        data_sha=short_hash(await repository.dataset_sha256(version)),
        day=at.date(),
        account=account,
    )
    previous = None
    if since is not None:
        previous = await _state_of(session, repository, policy_key, since, now)
        if previous.token.account != account:
            raise InvalidInput(
                f"since is the token of the {previous.token.account}-account list; this is the "
                f"{account}-account list: pass a token of the same list.",
                errors=[FieldError(loc=("query", "since"), msg="token of another account's list")],
            )
    return ListPlan(policy_key, level, ListState(token, applied, at), previous, as_of is None)


async def _state_of(
    session: AsyncSession, repository: ListRepository, policy_key: str, text: str, now: dt.datetime
) -> ListState:
    """The list a ``since`` token names, checked against what this database holds."""
    token = ListToken.decode(text)
    if token.policy_key != policy_key:
        raise InvalidInput(
            f"since is the token of a list of policy {token.policy_key!r}, not {policy_key!r}: "
            f"ask /v1/lists/{token.policy_key} with it, or pass a token of a {policy_key!r} list.",
            errors=[FieldError(loc=("query", "since"), msg="token of another policy's list")],
        )
    versions = [(token.policy_key, token.policy_version, token.policy_sha)]
    if token.base_key is not None and token.base_version is not None:
        versions.append((token.base_key, token.base_version, token.base_sha or ""))
    for key, number, sha in versions:
        try:
            _, version = await policy_service.get_version(session, key, number)
        except NotFound:
            raise _unknown(f"policy {key!r} has no version {number}") from None
        if version.approved_at is None or short_hash(version.sha256) != sha:
            raise _unknown(f"version {number} of policy {key!r} is not the one it names")
    data_sha = await repository.dataset_sha256(token.data_version)
    if short_hash(data_sha) != token.data_sha:
        raise _unknown(f"data version {token.data_version} is not the one it names")
    if token.day > now.date():
        raise _unknown(f"it is dated {token.day.isoformat()}, after today")
    ref: dict[str, Any] = {"key": token.policy_key, "version": token.policy_version}
    if token.base_key is not None:
        ref["base"] = {"key": token.base_key, "version": token.base_version}
    applied = await applied_as_recorded(session, ref, account=token.account)
    return ListState(token, applied, dt.datetime.combine(token.day, dt.time(), dt.UTC))


def _unknown(why: str) -> NotFound:
    return NotFound(
        f"since names a list this service does not know ({why}); was it issued by another "
        f"mayhold database? Fetch the whole list (without since) and keep its ETag for next time."
    )


# ------------------------------------------------------------------------------ loading


async def load_list(
    session: AsyncSession, plan: ListPlan, index: VerdictIndex | None = None
) -> ListExport:
    """Read what the list needs (the compiled index's snapshot and verdicts when current)."""
    account = plan.current.token.account
    compiled = index.lookup(plan.policy_key, utcnow(), account) if index and plan.live else None
    current = await _universe(session, plan.current, compiled)
    previous = None
    if plan.since is not None:
        same_data = (
            plan.since.token.data_version == plan.current.token.data_version
            and plan.since.applied.list_keys == plan.current.applied.list_keys
        )
        previous = (
            Universe(plan.since, current.snapshot, current.leis)
            if same_data
            else await _universe(session, plan.since, None)
        )
    return ListExport(plan, current, previous)


async def _universe(session: AsyncSession, state: ListState, compiled: Compiled | None) -> Universe:
    version = state.token.data_version
    leis = await ListRepository(session).issuer_leis(version)
    if compiled is not None and (
        compiled.data_version == version
        and compiled.day == state.token.day
        and compiled.applied.policy_ref() == state.applied.policy_ref()
        and compiled.applied.account == state.applied.account
    ):
        return Universe(state, compiled.snapshot, leis, compiled.templates)
    with building_long_lived():
        snapshot = await ScreeningRepository(session).full_snapshot(
            version, state.applied.list_keys
        )
    return Universe(state, snapshot, leis)


# --------------------------------------------------------------------------------- rows


def _rows(universe: Universe, level: Level) -> Iterator[ListRow]:
    if level == "issuer":
        return _issuer_rows(universe)
    return _instrument_rows(universe)


def _instrument_rows(universe: Universe) -> Iterator[ListRow]:
    snapshot, state = universe.snapshot, universe.state
    # One evaluator for all chunks: an issuer is evaluated once, though its instruments (in
    # ISIN order) fall in different chunks.
    evaluator = state.applied.evaluator(snapshot, state.at)
    for chunk in _batches(sorted(snapshot.instruments), EVALUATION_CHUNK):
        if universe.templates is not None:
            judged = [_template_grounds(universe.templates[isin]) for isin in chunk]
        else:
            evaluations = evaluator.instruments(chunk)
            judged = [(e.verdict, _reason_grounds(e.reasons)) for e in evaluations]
        for isin, (verdict, grounds) in zip(chunk, judged, strict=True):
            if verdict in LISTED:
                instrument = snapshot.instruments[isin]
                yield _row(universe, instrument.issuer_id, verdict, grounds, instrument)


def _issuer_rows(universe: Universe) -> Iterator[ListRow]:
    snapshot, state = universe.snapshot, universe.state
    evaluator = state.applied.evaluator(snapshot, state.at)  # shared: subsidiaries, parents
    for chunk in _batches(sorted(snapshot.issuers), EVALUATION_CHUNK):
        for judged in evaluator.issuers(chunk):
            if judged.verdict in LISTED:
                grounds = _reason_grounds(judged.reasons)
                yield _row(universe, judged.issuer_id, judged.verdict, grounds)


def _reason_grounds(reasons: Iterable[Reason]) -> list[Grounds]:
    return [
        (r.rule_id, r.verdict, tuple(e.as_of for e in r.evidence if e.as_of is not None))
        for r in reasons
    ]


def _template_grounds(template: Mapping[str, Any]) -> tuple[str, list[Grounds]]:
    """The same, from a decision template of the compiled index (JSON-ready values)."""
    grounds: list[Grounds] = [
        (
            r["rule_id"],
            outcome_verdict(r["outcome"]),
            tuple(dt.date.fromisoformat(e["as_of"]) for e in r["evidence"] if e["as_of"]),
        )
        for r in template["reasons"]
    ]
    return template["verdict"], grounds


def _row(
    universe: Universe,
    issuer_id: str,
    verdict: str,
    grounds: Sequence[Grounds],
    instrument: InstrumentNode | None = None,
) -> ListRow:
    issuer = universe.snapshot.issuers[issuer_id]
    carrying = [g for g in grounds if g[1] == verdict]
    established = [max(dates) for _, _, dates in carrying if dates]
    return ListRow(
        issuer_id=issuer_id,
        name=issuer.name,
        country=issuer.country,
        lei=universe.leis.get(issuer_id),
        verdict=verdict,
        rule_ids=tuple(sorted({rule_id for rule_id, _, _ in carrying})),
        since=min(established) if established else None,
        isin=instrument.isin if instrument else None,
        asset_class=instrument.asset_class if instrument else None,
    )


def _delta(before: Iterator[ListRow], after: Iterator[ListRow]) -> Iterator[ListRow]:
    """Merge two lists ordered by key: rows added, removed (as they were) or changed."""
    old, new = next(before, None), next(after, None)
    while old is not None or new is not None:
        if new is None or (old is not None and old.key < new.key):
            assert old is not None
            yield replace(old, change="removed")
            old = next(before, None)
        elif old is None or new.key < old.key:
            yield replace(new, change="added")
            new = next(after, None)
        else:
            if new != old:
                yield replace(new, change="changed")
            old, new = next(before, None), next(after, None)


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _take(rows: Iterator[T], count: int) -> list[T]:
    return list(islice(rows, count))
