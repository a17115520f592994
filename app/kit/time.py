from datetime import UTC, date, datetime, timedelta

from app.kit.errors import FieldError, InvalidInput


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only kind of timestamp the service handles)."""
    return datetime.now(UTC)


def latest_provider_date() -> date:
    """The latest date a provider's "as of" may carry: today in UTC plus one day.

    A provider states what was true on a day it has seen, so never a later day; the day's
    grace is for time zones (a file dated in Auckland's morning is still yesterday in UTC).
    A later date is a typo or a placeholder (2099-01-01): taken as given it would be ignored
    until that day, or outrank every real later load until then.
    """
    return utcnow().date() + timedelta(days=1)


def check_time(as_of: datetime | None, now: datetime) -> datetime:
    """The time a question is about: ``as_of`` (in UTC), else ``now``.

    422 (``InvalidInput`` at ``query.as_of``) without a timezone, or in the future: a decision
    can only be about now or the past.
    """
    if as_of is None:
        return now
    if as_of.tzinfo is None:
        raise InvalidInput(
            "as_of needs a timezone, e.g. 2025-03-12T00:00:00Z.",
            errors=[FieldError(loc=("query", "as_of"), msg="timezone required")],
        )
    if as_of > now:
        raise InvalidInput(
            "as_of is in the future: a decision can only be about now or the past.",
            errors=[FieldError(loc=("query", "as_of"), msg="in the future")],
        )
    return as_of.astimezone(UTC)
