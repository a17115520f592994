from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only kind of timestamp the service handles)."""
    return datetime.now(UTC)
