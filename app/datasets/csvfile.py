"""Reading uploaded CSV files as a stream: encoding, delimiter and header checks, cell parsers.

Row numbers are the file's line numbers as a spreadsheet shows them: the header is row 1, the
first data row is row 2; a record spanning several lines (a quoted cell with line breaks) is
numbered by the line it starts on. Lines may end in LF, CRLF or a bare CR (Excel for Mac).
Every problem found in a cell raises ``CellError`` naming the column; the loader turns it into
a row error.

Memory is bounded whatever the file's shape: a cell holds at most ``MAX_CELL_CHARS``
characters and a record (its lines together) at most ``MAX_RECORD_CHARS``; a longer one (a
200 MB file without a line break) is a file error naming its line, found after reading at
most that much of it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO

from app.kit.errors import FieldError, InvalidInput

# Vendor files have cells far larger than csv's default limit allows (long notes); cap it sanely.
MAX_CELL_CHARS = 1 << 20
csv.field_size_limit(MAX_CELL_CHARS)
# A record, all its lines together (so also a line): a few cells at the cell limit.
MAX_RECORD_CHARS = 4 << 20

_HEADER_JUNK = re.compile(r"[\s_/]+")


def normalize_header(name: str) -> str:
    """Header names compared loosely: `Country / Territory` == `country_territory`."""
    return _HEADER_JUNK.sub(" ", name.strip().lower()).strip()


class CellError(ValueError):
    def __init__(self, column: str | None, msg: str) -> None:
        super().__init__(msg)
        self.column = column
        self.msg = msg


class SkipRow(Exception):
    """A row the format says to ignore (a territory, a non-state target); counted, not loaded."""

    def __init__(self, reason: str, example: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.example = example


@dataclass
class CsvRow:
    number: int
    cells: list[str]
    columns: dict[str, int]  # normalized header -> index

    def get(self, column: str) -> str:
        """The stripped cell of a column ('' when the column is absent or the cell empty)."""
        index = self.columns.get(column)
        if index is None or index >= len(self.cells):
            return ""
        return self.cells[index].strip()

    def require(self, column: str) -> str:
        value = self.get(column)
        if not value:
            raise CellError(column, "required value is empty")
        return value


class CsvFile:
    """A CSV file read row by row; memory stays flat whatever its size."""

    def __init__(self, binary: IO[bytes], required: tuple[str, ...], aliases: dict[str, str]):
        self._lines = _DecodedLines(binary)
        self._reader = csv.reader(self._lines)
        try:
            header = next(self._reader)
        except StopIteration:
            raise _file_error(1, None, "the file is empty: expected a header row") from None
        except _Unreadable as exc:
            raise _file_error(exc.line, None, exc.msg) from None
        except csv.Error as exc:
            raise _file_error(1, None, _malformed(exc)) from None
        if len(header) == 1:
            for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
                if delimiter in header[0]:
                    raise _file_error(
                        1,
                        None,
                        f"the header is separated by {label}, not commas: save the file as "
                        "comma-separated CSV",
                    )
        self.header = [h.strip() for h in header]
        self.columns: dict[str, int] = {}
        for index, name in enumerate(self.header):
            key = normalize_header(name)
            key = aliases.get(key, key)
            if not key:
                continue  # unnamed trailing columns, as spreadsheets export them
            if key in self.columns:
                # Which of the two is meant cannot be known: silently taking one would load
                # the wrong values for every row.
                first = self.columns[key]
                same = (
                    f"the column {name!r} is there twice"
                    if self.header[first] == name
                    else f"the columns {self.header[first]!r} and {name!r} are the same column "
                    "twice"
                )
                raise _file_error(
                    1,
                    name,
                    f"{same} (columns {first + 1} and {index + 1}): keep one and load again",
                )
            self.columns[key] = index
        missing = [c for c in required if c not in self.columns]
        if missing:
            raise _file_error(
                1,
                None,
                f"missing required column(s): {', '.join(missing)}; the header has: "
                f"{', '.join(self.header)}",
            )

    def close(self) -> None:
        self._lines.close()

    def find_column(self, pattern: re.Pattern[str]) -> str | None:
        """The first normalized column name matching a pattern (e.g. `cpi score 2022`)."""
        return next((c for c in self.columns if pattern.fullmatch(c)), None)

    def rows(self) -> Iterator[CsvRow]:
        while True:
            # The record starts on the line after the previous one ended (blank lines are
            # records too, of no cells, so this holds across them).
            start = self._reader.line_num + 1
            self._lines.record_chars = 0
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except _Unreadable as exc:
                raise _file_error(start if exc.record else exc.line, None, exc.msg) from None
            except csv.Error as exc:
                raise _file_error(start, None, _malformed(exc)) from None
            if not any(cell.strip() for cell in cells):
                continue  # blank lines and ",,,," trailers carry nothing
            yield CsvRow(start, cells, self.columns)


class _Unreadable(Exception):
    """A line that cannot be read (not UTF-8, too long); ``line`` is its number."""

    def __init__(self, line: int, msg: str, *, record: bool = False) -> None:
        super().__init__(msg)
        self.line = line
        self.msg = msg
        self.record = record  # about the record as a whole: report the line it starts on


# Bytes that are not UTF-8, as the "surrogateescape" error handler decodes them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class _DecodedLines:
    """The file's lines, decoded, as ``csv.reader`` wants them (line ends kept as written).

    UTF-8 only (a byte-order mark, as Excel writes, is dropped); a Latin-1 or UTF-16 file is an
    error naming its first bad line, never guessed at: a wrongly decoded issuer name would be
    silently wrong forever. Lines end at LF, CRLF or a bare CR. ``record_chars`` counts what
    the current record has read (the reader resets it per record): beyond ``MAX_RECORD_CHARS``
    the file is refused, so no line or record is ever held whole however long it is.
    """

    def __init__(self, binary: IO[bytes]) -> None:
        self._text = io.TextIOWrapper(
            binary,
            encoding="utf-8-sig",
            errors="surrogateescape",
            newline="",
        )
        self.number = 0
        self.record_chars = 0

    def __iter__(self) -> _DecodedLines:
        return self

    def __next__(self) -> str:
        room = MAX_RECORD_CHARS - self.record_chars
        line = self._text.readline(room + 1)
        if not line:
            raise StopIteration
        self.number += 1
        self.record_chars += len(line)
        if len(line) > room:
            raise _Unreadable(
                self.number,
                f"a record (its lines together) is longer than {MAX_RECORD_CHARS:,} "
                "characters: is it a CSV file with line breaks? (a quoted cell left open also "
                "runs on to the end of the file)",
                record=True,
            )
        if bad := _UNDECODABLE.search(line):
            byte = ord(bad.group()) - 0xDC00
            raise _Unreadable(
                self.number,
                f"the file is not UTF-8 (byte 0x{byte:02x} cannot be decoded): save it as UTF-8",
            )
        return line

    def close(self) -> None:
        self._text.close()  # and the binary file under it


def _malformed(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a cell is longer than {MAX_CELL_CHARS:,} characters"
    return f"malformed CSV: {exc}"


def _file_error(row: int, column: str | None, msg: str) -> InvalidInput:
    return InvalidInput(
        f"The file was rejected: {msg}. Nothing was loaded.",
        errors=[FieldError.in_file(row, column, msg)],
    )


# ---------------------------------------------------------------------------- cell parsers


def parse_decimal(column: str, raw: str, low: Decimal, high: Decimal) -> Decimal:
    try:
        value = Decimal(raw.strip().rstrip("%").strip())
    except InvalidOperation:
        raise CellError(column, f"{raw!r} is not a number") from None
    if not value.is_finite() or not low <= value <= high:
        raise CellError(column, f"{raw} is outside {low}..{high}")
    return value


def parse_percent(column: str, raw: str) -> Decimal:
    return parse_decimal(column, raw, Decimal(0), Decimal(100))


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAY_MON_YEAR = re.compile(r"^(\d{1,2})-([A-Za-z]{3})-(\d{2}|\d{4})$")


def parse_date(column: str, raw: str) -> dt.date:
    """ISO dates (2025-03-12); also SIPRI's 19-Dec-00 (two-digit years: < 50 is 20xx)."""
    text = raw.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    match = _DAY_MON_YEAR.match(text)
    if match and match.group(2).lower() in _MONTHS:
        year = int(match.group(3))
        if year < 100:
            year += 2000 if year < 50 else 1900
        try:
            return dt.date(year, _MONTHS[match.group(2).lower()], int(match.group(1)))
        except ValueError:
            pass
    raise CellError(column, f"{raw!r} is not a date (use YYYY-MM-DD)")


def optional_date(row: CsvRow, column: str) -> dt.date | None:
    raw = row.get(column)
    return parse_date(column, raw) if raw else None
