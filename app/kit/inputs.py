"""Bounded input types: every number, string and time the API takes, before any work starts.

A value the database cannot store (an integer beyond its column, a NUL byte, a lone surrogate)
or that is unbounded (a 20 MB "ISIN") must be a 422 naming the parameter, never a 500 from
the driver or a megabyte echoed into the append-only decision log. Endpoints declare their
parameters with these types (path, query and body alike) instead of bare ``int``/``str``/
``datetime``, so the kind is fixed once:

- ``RowNumber``: an integer a Postgres ``integer`` column holds (ids, version numbers).
- ``Identifier`` (ISIN, CUSIP, issuer id, LEI, country...), ``PolicyKey``, ``Token``, ``Name``:
  bounded strings without control characters or surrogates.
- ``Rfc3339``: a time in RFC 3339 with an offset (``2025-03-12T09:30:00Z``), nothing else: a
  bare ``2025`` would otherwise read as 2025 seconds after 1970 (pydantic's Unix time).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import annotated_types
from pydantic import AfterValidator, BeforeValidator, StringConstraints, WithJsonSchema

# Postgres ``integer`` (and SQLite's range is wider): ids and version numbers live in these.
INT32_MAX = 2**31 - 1

# Ids and version numbers: any integer their column holds is looked up (absent: 404); beyond
# the column's range nothing can exist, and the driver would fail on it: 422.
RowNumber = Annotated[int, annotated_types.Interval(ge=-INT32_MAX - 1, le=INT32_MAX)]

# How long the bounded strings are (characters). An identifier is at most a few dozen
# characters (ISIN 12, LEI 20, FIGI 12, an issuer id or a provider's id a few more).
IDENTIFIER_MAX = 64
POLICY_KEY_MAX = 64
TOKEN_MAX = 512
# Error messages quote at most this much of an input (see ``quote``).
QUOTE_MAX = 40


# What ``_storable`` refuses: C0 controls (NUL, tab, CR, LF...), DEL, lone surrogates.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def _storable(value: str) -> str:
    # Postgres cannot store NUL in text (nor jsonb), and neither database a lone surrogate
    # (UTF-8 cannot encode it); other control characters in a key or an identifier are a
    # paste accident that would make two look-alike keys. Tab, CR and LF are refused too.
    # (One regular-expression scan: a 10,000-instrument batch validates 10,000 of these.)
    found = _UNSTORABLE.search(value)
    if found is not None:
        code = ord(found.group())
        kind = "a lone surrogate" if code >= 0xD800 else "a control character"
        raise ValueError(
            f"contains {kind} (U+{code:04X}) at position {found.start() + 1}; remove it"
        )
    return value


# The length is checked before the characters, so a huge value is refused without being read.
STORABLE = AfterValidator(_storable)
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=IDENTIFIER_MAX), STORABLE]
PolicyKey = Annotated[str, StringConstraints(min_length=1, max_length=POLICY_KEY_MAX), STORABLE]
# Opaque tokens handed out by the service (cursors, list tokens) and names (API keys).
Token = Annotated[str, StringConstraints(min_length=1, max_length=TOKEN_MAX), STORABLE]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), STORABLE]


def refuse_unstorable(value: Any, path: str = "") -> str | None:
    """Where in a parsed JSON/YAML document a string holds NUL or a lone surrogate (which no
    database column, jsonb included, can store): the first such path, else None."""
    if isinstance(value, str):
        unstorable = any(c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF for c in value)
        return (path or "/") if unstorable else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = refuse_unstorable(key, f"{path}/{key}") or refuse_unstorable(
                item, f"{path}/{key}"
            )
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := refuse_unstorable(item, f"{path}/{index}"):
                return found
    return None


def quote(value: str, limit: int = QUOTE_MAX) -> str:
    """``value`` for an error message or a log line: repr of at most ``limit`` characters,
    marked when cut, so no message ever echoes an unbounded input."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


# RFC 3339 section 5.6 (``T`` or a space between date and time, as the RFC allows); seconds
# and fractions optional as ISO 8601 allows, the offset mandatory.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$"
)
_RFC3339_HINT = "a time in RFC 3339 with an offset, e.g. 2025-03-12T09:30:00Z"


def _rfc3339(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):  # from Python callers (the CLI, tests)
        if value.tzinfo is None:
            raise ValueError(f"needs an offset: {_RFC3339_HINT}")
        return value
    if not isinstance(value, str) or len(value) > 40 or not _RFC3339.match(value):
        raise ValueError(f"must be {_RFC3339_HINT}")
    text = value.upper().replace(" ", "T").replace("Z", "+00:00")
    # Python reads at most 6 fraction digits; the RFC allows more (nanoseconds): cut them.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = dt.datetime.fromisoformat(text)
        # In UTC, where the service compares times; 0001-01-01T00:00:00+01:00 has no UTC.
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"is not a real time; must be {_RFC3339_HINT}") from None


Rfc3339 = Annotated[
    dt.datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
