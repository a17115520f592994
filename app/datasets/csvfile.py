"""Reading uploaded CSV files as a stream: encoding, delimiter and header checks, cell parsers.

Row numbers are the file's line numbers as a spreadsheet shows them: the header is row 1, the
first data row is row 2. Every problem found in a cell raises ``CellError`` naming the column;
the loader turns it into a row error.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO

from app.kit.errors import FieldError, InvalidInput

# Vendor files have cells far larger than csv's default limit allows (long notes); cap it sanely.
csv.field_size_limit(1 << 20)

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
        self._binary = binary
        self._lines = _decoded_lines(binary)
        self._reader = csv.reader(self._lines)
        try:
            header = next(self._reader)
        except StopIteration:
            raise _file_error(1, None, "the file is empty: expected a header row") from None
        except _NotUtf8 as exc:
            raise _not_utf8(exc.line, exc.error) from None
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
            self.columns.setdefault(key, index)
        missing = [c for c in required if c not in self.columns]
        if missing:
            raise _file_error(
                1,
                None,
                f"missing required column(s): {', '.join(missing)}; the header has: "
                f"{', '.join(self.header)}",
            )

    def close(self) -> None:
        self._binary.close()

    def find_column(self, pattern: re.Pattern[str]) -> str | None:
        """The first normalized column name matching a pattern (e.g. `cpi score 2022`)."""
        return next((c for c in self.columns if pattern.fullmatch(c)), None)

    def rows(self) -> Iterator[CsvRow]:
        number = 1
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except _NotUtf8 as exc:
                raise _not_utf8(exc.line, exc.error) from None
            except csv.Error as exc:
                raise _file_error(number + 1, None, f"malformed CSV: {exc}") from None
            number = self._reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines and ",,,," trailers carry nothing
            yield CsvRow(number, cells, self.columns)


class _NotUtf8(Exception):
    def __init__(self, line: int, error: UnicodeDecodeError) -> None:
        super().__init__(str(error))
        self.line = line
        self.error = error


def _decoded_lines(binary: IO[bytes]) -> Iterator[str]:
    """Decode line by line, so an encoding error can name its line.

    UTF-8 only (a byte-order mark, as Excel writes, is dropped); a Latin-1 or UTF-16 file is an
    error, never guessed at: a wrongly decoded issuer name would be silently wrong forever.
    """
    for number, raw in enumerate(binary, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8(number, exc) from None


def _file_error(row: int, column: str | None, msg: str) -> InvalidInput:
    return InvalidInput(
        f"The file was rejected: {msg}. Nothing was loaded.",
        errors=[FieldError.in_file(row, column, msg)],
    )


def _not_utf8(row: int, exc: UnicodeDecodeError) -> InvalidInput:
    return _file_error(
        row,
        None,
        f"the file is not UTF-8 (byte 0x{exc.object[exc.start]:02x} cannot be decoded): "
        "save it as UTF-8",
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
