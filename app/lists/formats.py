"""Rendering a list as CSV (RFC 4180), NDJSON or one JSON document, chunk by chunk."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson

from app.lists.service import ListExport, ListRow
from app.screening.service import rfc3339

ListFormat = Literal["csv", "ndjson", "json"]
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
}
ISSUER_COLUMNS = ("issuer_id", "name", "country", "lei", "verdict", "rule_ids", "since")
INSTRUMENT_COLUMNS = (*ISSUER_COLUMNS, "isin", "asset_class")
RULE_SEPARATOR = " "  # rule_ids in one CSV cell: ids are [a-z0-9:-], never a space


def columns(export: ListExport) -> tuple[str, ...]:
    names = INSTRUMENT_COLUMNS if export.plan.level == "instrument" else ISSUER_COLUMNS
    return ("change", *names) if export.plan.since is not None else names


def header(export: ListExport) -> dict[str, Any]:
    """What the JSON document says about the list before its rows (headers say it too)."""
    plan = export.plan
    return {
        "policy": plan.current.judge.policy_ref(),
        "level": plan.level,
        "as_of": rfc3339(plan.current.at),
        "data_version": plan.current.token.data_version,
        "token": plan.token,
        "since": plan.since.token.encode() if plan.since is not None else None,
    }


def _values(row: ListRow, names: tuple[str, ...]) -> dict[str, Any]:
    value: dict[str, Any] = {
        "change": row.change,
        "issuer_id": row.issuer_id,
        "name": row.name,
        "country": row.country,
        "lei": row.lei,
        "verdict": row.verdict,
        "rule_ids": list(row.rule_ids),
        "since": row.since.isoformat() if row.since is not None else None,
        "isin": row.isin,
        "asset_class": row.asset_class,
    }
    return {name: value[name] for name in names}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return RULE_SEPARATOR.join(value)
    return str(value)


async def render(fmt: ListFormat, export: ListExport) -> AsyncIterator[bytes]:
    names = columns(export)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(names)
        yield _drain(buffer)
        async for chunk in export.chunks():
            writer.writerows([_cell(v) for v in _values(row, names).values()] for row in chunk)
            yield _drain(buffer)
    elif fmt == "ndjson":
        async for chunk in export.chunks():
            yield b"".join(orjson.dumps(_values(row, names)) + b"\n" for row in chunk)
    else:
        yield orjson.dumps(header(export))[:-1] + b',"rows":['
        separator = b""
        async for chunk in export.chunks():
            yield separator + b",".join(orjson.dumps(_values(row, names)) for row in chunk)
            separator = b","
        yield b"]}"


def _drain(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode("utf-8")
