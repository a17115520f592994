"""A portfolio's position limits in a check: its position report, the policy's sponsors.

The bridge between what is stored (``app.portfolios.repository``: a portfolio, its report)
and the pure limit evaluation (``limits.py``); no I/O here either.
"""

from __future__ import annotations

import datetime as dt

from app.portfolios.repository import HoldingsReport, Portfolio
from app.screening.applied import AppliedPolicy
from app.screening.limits import Holdings, PortfolioLimits, Position
from app.screening.snapshot import ListEntryPoint, Snapshot

SPONSOR_LIST = "sponsor"


def sponsors_in_force(
    applied: AppliedPolicy, snapshot: Snapshot, day: dt.date
) -> list[ListEntryPoint]:
    """The ``sponsor`` entries of the policy's lists (its own and an overlay's base) active on
    ``day`` (contract: list-entries gains the list ``sponsor``, seed 002)."""
    keys = set(applied.list_keys)
    return sorted(
        (
            entry
            for (policy_key, _), entries in snapshot.list_entries.items()
            if policy_key in keys
            for entry in entries
            if entry.list == SPONSOR_LIST and entry.active(day)
        ),
        key=lambda e: (e.policy_key, e.issuer_id),
    )


def holdings_of(portfolio: Portfolio, report: HoldingsReport) -> Holdings:
    return Holdings(
        portfolio_id=report.portfolio_id,
        dataset_id=report.dataset_id,
        as_of=report.as_of,
        positions=tuple(
            Position(p.isin, p.market_value, p.source_row, p.position == "short")
            for p in report.positions
        ),
        base_currency=portfolio.base_currency,
    )


def limit_state(
    applied: AppliedPolicy,
    snapshot: Snapshot,
    at: dt.datetime,
    portfolio: Portfolio,
    report: HoldingsReport | None,
) -> PortfolioLimits | None:
    """The portfolio's limit state under the policy (None: the policy has no limits). The
    snapshot must hold the report's instruments and the sponsors' groups
    (``ScreeningRepository.snapshot(..., sponsor_groups=True)`` or a full snapshot)."""
    if not applied.position_limits:
        return None
    return PortfolioLimits.build(
        applied.position_limits,
        sponsors_in_force(applied, snapshot, at.date()),
        snapshot,
        None if report is None else holdings_of(portfolio, report),
        portfolio_id=portfolio.portfolio_id,
        at=at.date(),
        look_through=applied.document.look_through,
    )
