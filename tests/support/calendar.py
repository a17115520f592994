"""Calendar arithmetic for tests, written independently of the product's (``Span.before``), so
that a test checks the product's date edges instead of repeating its code.

Tests that depend on "today" take it from ``today()`` at the moment they need it (never a
module constant computed at import: the suite may run across midnight UTC), and a test that
loads data for "today" and then checks against the server's clock starts with
``stable_today()``, which waits out the last seconds before midnight UTC.
"""

from __future__ import annotations

import datetime as dt
import time

from app.kit.time import utcnow


def today() -> dt.date:
    """The current date in UTC (the service's calendar)."""
    return utcnow().date()


def stable_today(margin: dt.timedelta = dt.timedelta(seconds=60)) -> dt.date:
    """Today's UTC date, first sleeping past midnight when fewer than ``margin`` remain, so that
    the server's "today" during the test is the date returned."""
    now = utcnow()
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    if midnight - now < margin:
        time.sleep((midnight - now).total_seconds() + 0.5)
    return today()


def years_before(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` earlier; 29 February maps to 28 February in a common
    year (the anniversary falls on the last day of that February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)
