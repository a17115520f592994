"""Rendering a list as CSV (RFC 4180), NDJSON or one JSON document, chunk by chunk."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import orjson

from app.kit.canonical import rfc3339
from app.lists.service import ListExport, ListRow

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
        "policy": plan.current.applied.policy_ref(),
        "account": plan.current.applied.account,
        "level": plan.level,
        "as_of": rfc3339(plan.current.at),
        "data_version": plan.current.token.data_version,
        "token": plan.token,
        "since": plan.since.token.encode() if plan.since is not None else None,
    }


def _records(
    rows: list[ListRow],
    names: tuple[str, ...],
    rule_ids: Callable[[tuple[str, ...]], Any],
    missing: str | None,
) -> Iterator[list[Any]]:
    """Each row's values in column order, ``missing`` for an absent value (the hot loop of a
    large export: kept plain)."""
    instrument, delta = "isin" in names, "change" in names
    for row in rows:
        values = [
            row.issuer_id,
            row.name,
            row.country,
            row.lei or missing,
            row.verdict,
            rule_ids(row.rule_ids),
            row.since.isoformat() if row.since is not None else missing,
        ]
        if instrument:
            values += (row.isin or missing, row.asset_class or missing)
        yield [row.change or missing, *values] if delta else values


def _joined(rule_ids: tuple[str, ...]) -> str:
    return RULE_SEPARATOR.join(rule_ids)


async def render(fmt: ListFormat, export: ListExport) -> AsyncIterator[bytes]:
    names = columns(export)
    if fmt == "csv":
        yield csv_text([names]).encode("utf-8")

        writer = CsvRows(names)  # one per list: what rows share is rendered once

        def csv_chunk(rows: list[ListRow]) -> bytes:
            return writer.lines(rows).encode("utf-8")

        async for text in export.chunks(csv_chunk):
            yield text
        return

    # orjson writes None as null and a tuple as an array.
    def json_lines(rows: list[ListRow]) -> bytes:
        return b"".join(_json(names, r) + b"\n" for r in _records(rows, names, tuple, None))

    def json_items(rows: list[ListRow]) -> bytes:
        return b",".join(_json(names, r) for r in _records(rows, names, tuple, None))

    if fmt == "ndjson":
        async for text in export.chunks(json_lines):
            yield text
        return
    yield orjson.dumps(header(export))[:-1] + b',"rows":['
    separator = b""
    async for text in export.chunks(json_items):
        yield separator + text
        separator = b","
    yield b"]}"


# What makes the csv module (QUOTE_MINIMAL) quote a cell: the delimiter, the quote, a line end.
_NEEDS_QUOTING = re.compile(r'[,"\r\n]')
# A spreadsheet reads a cell starting with one of these as a formula (or, tab and CR, as a
# cell whose formula follows): OWASP's CSV-injection list. Such a cell is written as text.
FORMULA_STARTS = frozenset("=+-@\t\r")
assert all(c < "A" for c in FORMULA_STARTS)  # CsvRows relies on it


def neutralised(cell: str) -> str:
    """The cell a spreadsheet shows as text: ``'`` before a cell starting with a formula
    character (``=cmd|' /C calc'!A0`` becomes ``'=cmd|' /C calc'!A0``), others unchanged."""
    return f"'{cell}" if cell[:1] in FORMULA_STARTS else cell


def _cell(cell: str) -> str:
    """One CSV cell: a formula-like one neutralised and always quoted (OWASP), the others
    quoted exactly when ``csv.writer`` (QUOTE_MINIMAL) quotes them."""
    if cell[:1] in FORMULA_STARTS:
        return "\"'" + cell.replace('"', '""') + '"'
    if _NEEDS_QUOTING.search(cell):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def csv_text(records: Iterable[Sequence[str]]) -> str:
    """RFC 4180 lines (CRLF): what ``csv.writer`` writes, with formula-like cells neutralised.

    A cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR is prefixed with ``'`` and
    quoted (OWASP's CSV-injection guidance), so no spreadsheet evaluates it; every other cell is
    exactly as ``csv.writer`` (QUOTE_MINIMAL) writes it. The hot path of a large export: a row
    with no such cell and nothing to quote (nearly all) is joined directly, twice as fast as the
    csv module. Records have at least two cells (a header has seven): ``csv.writer``'s special
    case of a lone empty cell never arises.
    """
    lines: list[str] = []
    for cells in records:
        if _NEEDS_QUOTING.search("".join(cells)) or any(c[:1] in FORMULA_STARTS for c in cells):
            lines.append(",".join(_cell(c) for c in cells) + "\r\n")
        else:
            lines.append(",".join(cells) + "\r\n")
    return "".join(lines)


def _csv_lines(rows: list[ListRow], names: tuple[str, ...]) -> str:
    """The rows as CSV lines: exactly ``csv_text`` of their records, faster (see ``CsvRows``)."""
    return CsvRows(names).lines(rows)


class CsvRows:
    """Renders a list's rows as CSV lines: exactly ``csv_text`` of their records, faster.

    Only the issuer's free text (issuer_id, name, LEI) can need quoting or neutralising: the
    other cells are controlled values that never start with a formula character and never hold
    a comma, a quote or a line break (verdicts, change kinds, rule ids of ``[a-z0-9:-]``
    starting with a letter or digit, ISO dates and country codes, ISINs, asset classes; no
    numbers, so no negative ones). Each row is formatted directly, then tested: a line with
    more commas than separators, or a quote or a line break, or whose free text starts with a
    formula character, is written again as ``csv_text`` writes it (every cell through
    ``_cell``). (Testing the formatted line scans it once, in C; a date's text is made once
    per list: ``isoformat`` costs more than the rest of a row.) One instance per list, its
    chunks rendered one at a time.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self._instrument = "isin" in names
        self._delta = "change" in names
        self._commas = len(names) - 1
        self._dates: dict[dt.date | None, str] = {None: ""}

    def lines(self, rows: list[ListRow]) -> str:
        instrument, delta, commas, dates = self._instrument, self._delta, self._commas, self._dates
        lines: list[str] = []
        append, date_text, join = lines.append, dates.get, RULE_SEPARATOR.join
        for row in rows:
            since = date_text(row.since)
            if since is None:
                since = dates[row.since] = row.since.isoformat()  # type: ignore[union-attr]
            issuer_id, name, lei = row.issuer_id, row.name, row.lei or ""
            if instrument:  # one f-string: each step of a row costs, on 10^5 rows
                line = (
                    f"{issuer_id},{name},{row.country},{lei},{row.verdict},"
                    f"{join(row.rule_ids)},{since},{row.isin or ''},{row.asset_class or ''}"
                )
            else:
                line = (
                    f"{issuer_id},{name},{row.country},{lei},{row.verdict},"
                    f"{join(row.rule_ids)},{since}"
                )
            if delta:
                line = f"{row.change or ''},{line}"
            if (
                line.count(",") != commas
                or '"' in line
                or "\n" in line
                or "\r" in line
                # Every formula character sorts before "A": most cells are let through by
                # one comparison.
                or (issuer_id < "A" and issuer_id[:1] in FORMULA_STARTS)
                or (name < "A" and name[:1] in FORMULA_STARTS)
                or (lei < "A" and lei[:1] in FORMULA_STARTS)
            ):
                line = ",".join(_cell(c) for c in _cells(row, instrument, delta, since))
            append(line)
        append("")  # the last line's CRLF
        return "\r\n".join(lines) if rows else ""


def _cells(row: ListRow, instrument: bool, delta: bool, since: str) -> list[str]:
    """A row's cells, as ``_records`` gives them to ``csv_text`` (absent values empty)."""
    cells = [
        row.issuer_id,
        row.name,
        row.country,
        row.lei or "",
        row.verdict,
        _joined(row.rule_ids),
        since,
    ]
    if instrument:
        cells += (row.isin or "", row.asset_class or "")
    return [row.change or "", *cells] if delta else cells


def _json(names: tuple[str, ...], record: list[Any]) -> bytes:
    return orjson.dumps(dict(zip(names, record, strict=True)))
