from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    check = "check"
    lists_read = "lists:read"
    decisions_read = "decisions:read"
    data_write = "data:write"
    policies_write = "policies:write"
    policies_approve = "policies:approve"
    # Prometheus scrapes /metrics with a key of its own that can read nothing else.
    metrics_read = "metrics:read"
    admin = "admin"  # implies every other scope


def parse_scopes(raw: str) -> frozenset[Scope]:
    """Parse ``"check,lists:read"``; an unknown scope is an error, never silently dropped."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if not names:
        raise ValueError("at least one scope is required")
    known = {s.value: s for s in Scope}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"unknown scope(s): {', '.join(unknown)}; known scopes: {', '.join(known)}"
        )
    return frozenset(known[n] for n in names)
