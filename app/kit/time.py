from datetime import UTC, date, datetime, timedelta


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
