"""Canonical JSON: the one byte-exact text of a value, for storing and hashing.

``canonical_json(value)``: object keys sorted, compact separators (``,`` and ``:``), UTF-8 text
with non-ASCII characters as themselves (control characters escaped). For every value a decision
holds (strings, integers, booleans, null, objects, arrays; decimals are strings) these are the
same bytes as ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``;
it is computed with orjson, ten times faster, which matters on the check path (a 10,000-instrument
batch renders 10,000 decisions). Floats are discouraged (decisions carry decimals as text): in
exponent form orjson writes ``1e-7`` where ``json.dumps`` writes ``1e-07``, and it writes NaN and
infinities as ``null``. Integers beyond 64 bits and dict keys that are not strings are refused.

Values the service handles are rendered one way, always:

- ``Decimal`` -> its plain decimal text, normalized (``Decimal("5.0")`` -> ``"5"``, no exponent),
  as metric values are stored and shown as evidence (``app.kit.vocabulary.format_value``);
- ``datetime`` (timezone-aware only) -> RFC 3339 in UTC with ``Z``, microseconds when not zero
  (``2026-11-22T09:30:00Z``, ``2026-11-22T09:30:00.250000Z``), as the API renders times;
- ``date`` -> ``YYYY-MM-DD``; ``UUID`` -> lowercase hyphenated; an ``Enum`` -> its value;
- sets -> sorted lists; tuples -> lists; pydantic models -> ``model_dump(mode="json")``.

Anything else (a naive datetime, bytes, an arbitrary object) is refused with ``TypeError``: a
value that cannot be rendered one way only is never guessed at. ``json_ready(value)`` is the
parsed canonical text: plain JSON values, exactly what a client reading the text would get.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def rfc3339(value: dt.datetime) -> str:
    """A timezone-aware time as RFC 3339 in UTC: ``2026-11-22T09:30:00.250000Z``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def parse_rfc3339(text: str) -> dt.datetime:
    """The inverse of :func:`rfc3339` (accepts any RFC 3339 offset; the result is in UTC)."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone")
    return value.astimezone(dt.UTC)


def _default(value: Any) -> Any:
    """What orjson does not render natively (or not our way)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} is not a finite number")
        # normalize() turns 100 into 1E+2; "f" keeps plain notation.
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):  # passed through: orjson would write +00:00, or naive
        try:
            return rfc3339(value)
        except ValueError as exc:
            raise TypeError(str(exc)) from None
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical_bytes(value: Any) -> bytes:
    """The canonical text of ``value``, UTF-8 encoded; ``TypeError`` for what has none."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def canonical_json(value: Any) -> str:
    """The canonical text of ``value`` (see the module docstring)."""
    return canonical_bytes(value).decode("utf-8")


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON values (dict, list, str, int, float, bool, None), rendered once.

    Objects come back with their keys in sorted order, as in the canonical text.
    """
    return orjson.loads(canonical_bytes(value))
