from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.records import current_embargo_loads, in_force
from app.issuers.repository import IssuerRepository
from app.issuers.schemas import (
    ArmsEmbargoRead,
    CountryRead,
    Evidence,
    InstrumentRead,
    InstrumentSummary,
    IssuerFacts,
    IssuerLink,
    IssuerRead,
    RecordSource,
    StateOwner,
)
from app.kit.countries import UnknownCountry, resolve_country
from app.kit.errors import NotFound
from app.kit.time import utcnow
from app.models import Fact, InstrumentRecord, IssuerRecord


def current_facts(facts: Iterable[Fact]) -> list[Fact]:
    """Per (metric, provider): the newest provider as-of date, then the newest load, wins."""
    newest: dict[tuple[str, str], Fact] = {}
    for fact in facts:
        key = (fact.metric, fact.provider)
        held = newest.get(key)
        if held is None or (fact.as_of, fact.dataset_id) > (held.as_of, held.dataset_id):
            newest[key] = fact
    return sorted(newest.values(), key=lambda f: (f.metric, f.provider))


def _link(record: IssuerRecord, control_pct: Decimal | None = None) -> IssuerLink:
    return IssuerLink(
        issuer_id=record.issuer_id,
        name=record.name,
        country=record.country,
        kind=record.kind,
        control_pct=control_pct,
    )


def _instrument_summary(record: InstrumentRecord) -> InstrumentSummary:
    return InstrumentSummary(
        isin=record.isin,
        asset_class=record.asset_class,
        name=record.name,
        underlying_isin=record.underlying_isin,
    )


async def _evidence(repository: IssuerRepository, facts: Sequence[Fact]) -> list[Evidence]:
    loaded = await repository.loaded_at({f.dataset_id for f in facts})
    return [
        Evidence(
            metric=f.metric,
            provider=f.provider,
            value=f.value,
            as_of=f.as_of,
            dataset_id=f.dataset_id,
            source_row=f.source_row,
            source_field=f.source_field,
            loaded_at=loaded[f.dataset_id],
        )
        for f in facts
    ]


async def _known_issuer(
    repository: IssuerRepository, issuer_id: str, at: dt.datetime | None
) -> tuple[IssuerRecord, int]:
    version = await repository.data_version(at)
    record = await repository.issuer(issuer_id, version)
    if record is None:
        when = f" at {at.isoformat()}" if at else ""
        raise NotFound(f"No issuer {issuer_id!r} was known{when}.")
    return record, version


async def get_issuer(session: AsyncSession, issuer_id: str) -> IssuerRead:
    repository = IssuerRepository(session)
    record, version = await _known_issuer(repository, issuer_id, None)
    parent = None
    if record.parent_issuer_id:
        parent_record = await repository.issuer(record.parent_issuer_id, version)
        if parent_record is not None:
            parent = _link(parent_record, record.parent_control_pct)
    subsidiaries = [
        _link(s, s.parent_control_pct) for s in await repository.subsidiaries(issuer_id, version)
    ]
    owners = (
        [StateOwner(country=record.state_owner_country, pct=record.state_owner_pct)]
        if record.state_owner_country and record.state_owner_pct is not None
        else []
    )
    facts = current_facts(await repository.facts(version, issuer_id=issuer_id))
    country_facts = current_facts(await repository.facts(version, country=record.country))
    return IssuerRead(
        issuer_id=record.issuer_id,
        name=record.name,
        kind=record.kind,
        country=record.country,
        lei=record.lei,
        msci_issuer_id=record.msci_issuer_id,
        sustainalytics_entity_id=record.sustainalytics_entity_id,
        parent=parent,
        subsidiaries=subsidiaries,
        state_owners=owners,
        instruments=[
            _instrument_summary(i) for i in await repository.instruments_of(issuer_id, version)
        ],
        facts=await _evidence(repository, facts),
        country_facts=await _evidence(repository, country_facts),
        data_version=version,
        record=RecordSource(dataset_id=record.dataset_id, source_row=record.source_row),
    )


async def get_issuer_facts(
    session: AsyncSession, issuer_id: str, at: dt.datetime | None, history: bool
) -> IssuerFacts:
    repository = IssuerRepository(session)
    record, version = await _known_issuer(repository, issuer_id, at)
    known = await repository.facts(version, issuer_id=issuer_id)
    country_known = await repository.facts(version, country=record.country)
    return IssuerFacts(
        issuer_id=issuer_id,
        at=at,
        data_version=version,
        facts=await _evidence(repository, current_facts(known)),
        country_facts=await _evidence(repository, current_facts(country_known)),
        history=await _evidence(repository, [*known, *country_known]) if history else None,
    )


async def get_instrument(session: AsyncSession, isin: str) -> InstrumentRead:
    repository = IssuerRepository(session)
    version = await repository.data_version()
    record = await repository.instrument(isin.strip().upper(), version)
    if record is None:
        raise NotFound(f"No instrument with ISIN {isin!r} is known.")
    issuer = await repository.issuer(record.issuer_id, version)
    assert issuer is not None  # loads refuse instruments of unknown issuers
    underlying = None
    if record.underlying_isin:
        underlying_record = await repository.instrument(record.underlying_isin, version)
        if underlying_record is not None:
            underlying = _instrument_summary(underlying_record)
    return InstrumentRead(
        isin=record.isin,
        asset_class=record.asset_class,
        name=record.name,
        cusip=record.cusip,
        sedol=record.sedol,
        figi=record.figi,
        issuer=_link(issuer),
        underlying=underlying,
        data_version=version,
        record=RecordSource(dataset_id=record.dataset_id, source_row=record.source_row),
    )


async def get_country(session: AsyncSession, code: str) -> CountryRead:
    try:
        country = resolve_country(code)
    except UnknownCountry as exc:
        raise NotFound(str(exc)) from None
    repository = IssuerRepository(session)
    version = await repository.data_version()
    today = utcnow().date()
    current = current_embargo_loads(await repository.arms_embargo_loads(version), today)
    embargoes = await repository.arms_embargoes(
        country.alpha2, [load.dataset_id for load in current.values()]
    )
    return CountryRead(
        country=country.alpha2,
        alpha3=country.alpha3,
        name=country.name,
        sovereigns=[_link(r) for r in await repository.sovereigns(country.alpha2, version)],
        facts=await _evidence(
            repository, current_facts(await repository.facts(version, country=country.alpha2))
        ),
        arms_embargoes=[
            ArmsEmbargoRead(
                authority=e.authority,
                regime=e.regime,
                since=e.since,
                until=e.until,
                in_force=in_force(e.since, e.until, today),
                dataset_id=e.dataset_id,
                source_row=e.source_row,
            )
            for e in embargoes
        ],
        data_version=version,
    )
