"""Canonical JSON: one text per value, the same rendering of decimals, times and ids everywhere."""

import datetime as dt
import json
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.kit.canonical import canonical_json, json_ready, parse_rfc3339, rfc3339


class Colour(StrEnum):
    red = "red"


def test_json_ready_renders_service_values_one_way() -> None:
    value = {
        "d": Decimal("5.0"),
        "big": Decimal("1E+2"),
        "t": dt.datetime(2026, 11, 22, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "us": dt.datetime(2026, 11, 22, 9, 30, 0, 250000, tzinfo=dt.UTC),
        "day": dt.date(2026, 11, 22),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "enum": Colour.red,
        "set": frozenset({"b", "a"}),
        "tuple": (1, True, None, 0.5),
        "nested": [{"when": dt.date(2025, 1, 1), "pct": Decimal("50.10")}],
    }
    ready = json_ready(value)
    assert ready == {
        "d": "5",
        "big": "100",
        "t": "2026-11-22T09:30:00Z",
        "us": "2026-11-22T09:30:00.250000Z",
        "day": "2026-11-22",
        "id": "12345678-1234-5678-1234-567812345678",
        "enum": "red",
        "set": ["a", "b"],
        "tuple": [1, True, None, 0.5],
        "nested": [{"when": "2025-01-01", "pct": "50.1"}],
    }
    assert list(ready) == sorted(ready)
    assert canonical_json(ready) == canonical_json(value)


@pytest.mark.parametrize(
    "bad",
    [
        dt.datetime(2026, 11, 22, 9, 30),  # naive: which zone? never guessed
        Decimal("Infinity"),
        {1: "non-string key"},
        2**64,
        b"bytes",
        object(),
    ],
)
def test_what_has_no_single_form_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        canonical_json(bad)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    text = canonical_json({"b": 1, "a": {"z": "Zürich \U0001f600", "y": [1, 2]}, "c": "\u0000\n"})
    assert text == '{"a":{"y":[1,2],"z":"Zürich \U0001f600"},"b":1,"c":"\\u0000\\n"}'


def test_rfc3339_round_trips() -> None:
    moment = dt.datetime(2026, 11, 22, 9, 30, 0, 1, tzinfo=dt.UTC)
    assert rfc3339(moment) == "2026-11-22T09:30:00.000001Z"
    assert parse_rfc3339(rfc3339(moment)) == moment
    assert parse_rfc3339("2026-11-22T10:30:00+01:00") == moment.replace(microsecond=0)
    with pytest.raises(ValueError):
        parse_rfc3339("2026-11-22T10:30:00")


# Every JSON value a decision holds: no floats (decimals are text), integers within 64 bits.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)


@given(_json)
def test_the_same_bytes_as_the_json_dumps_definition(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected
    assert "\n" not in canonical_json(value)  # the hash recipe relies on it
    assert json_ready(value) == value
