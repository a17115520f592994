"""Reading uploaded CSV files as a stream: encoding, delimiter and header checks, cell parsers.

An xlsx workbook (Freedom House and TI publish them) is read by ``XlsxFile`` into the same
``CsvRow`` objects, so one adapter reads both forms of a publisher's file alike.

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
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from app.kit.errors import FieldError, InvalidInput, PayloadTooLarge

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


class TableFile:
    """A file's header and rows, whatever it is stored as (CSV text or an xlsx sheet)."""

    header: list[str]
    columns: dict[str, int]  # normalized header -> index
    header_row: int = 1  # the header's row number (a workbook may have a title above it)

    def find_column(self, pattern: re.Pattern[str]) -> str | None:
        """The first normalized column name matching a pattern (e.g. `cpi score 2022`)."""
        return next((c for c in self.columns if pattern.fullmatch(c)), None)

    def rows(self) -> Iterator[CsvRow]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DuplicateColumn(ValueError):
    def __init__(self, column: str, msg: str) -> None:
        super().__init__(msg)
        self.column = column
        self.msg = msg


def header_columns(header: list[str], aliases: dict[str, str]) -> dict[str, int]:
    """Each header cell's name as the adapter knows it (normalized, aliases applied) -> its
    index; a name given twice is a ``DuplicateColumn`` whose message says which."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        key = normalize_header(name)
        key = aliases.get(key, key)
        if not key:
            continue  # unnamed trailing columns, as spreadsheets export them
        if key in columns:
            # Which of the two is meant cannot be known: silently taking one would load
            # the wrong values for every row.
            first = columns[key]
            same = (
                f"the column {name!r} is there twice"
                if header[first] == name
                else f"the columns {header[first]!r} and {name!r} are the same column twice"
            )
            raise DuplicateColumn(
                name, f"{same} (columns {first + 1} and {index + 1}): keep one and load again"
            )
        columns[key] = index
    return columns


def missing_columns_message(missing: list[str], header: list[str], aliases: dict[str, str]) -> str:
    """Which required columns are missing (with the other spellings accepted for each) and
    the header as it was seen."""
    named = []
    for column in missing:
        variants = sorted(a for a, target in aliases.items() if target == column)
        named.append(f"{column} (or {' / '.join(variants)})" if variants else column)
    seen = ", ".join(h for h in header if h) or "(nothing)"
    return f"missing required column(s): {'; '.join(named)}; the header has: {seen}"


class CsvFile(TableFile):
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
        try:
            self.columns = header_columns(self.header, aliases)
        except DuplicateColumn as exc:
            raise _file_error(1, exc.column, exc.msg) from None
        missing = [c for c in required if c not in self.columns]
        if missing:
            raise _file_error(1, None, missing_columns_message(missing, self.header, aliases))

    def close(self) -> None:
        self._lines.close()

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


# ------------------------------------------------------------------------------ workbooks

# An xlsx workbook is a ZIP archive: a local file header comes first.
XLSX_MAGIC = b"PK\x03\x04"
# Publishers put a title row or notes above the header: it is looked for this far down.
HEADER_SEARCH_ROWS = 10
# Excel's own sheet limits: a sheet claiming more is not a spreadsheet anyone saved.
MAX_SHEET_ROWS = 1_048_576
MAX_SHEET_COLUMNS = 16_384
# What openpyxl holds whole in memory (shared strings, styles, the workbook part): at most this
# much uncompressed; the sheets themselves are streamed, bounded by the upload limit.
MAX_WORKBOOK_PART_BYTES = 16 * MAX_RECORD_CHARS


def is_workbook(binary: IO[bytes]) -> bool:
    """Whether a file is an xlsx workbook (a ZIP archive), by its first bytes."""
    start = binary.read(len(XLSX_MAGIC))
    binary.seek(0)
    return start == XLSX_MAGIC


def cell_text(value: object) -> str:
    """A workbook cell as its CSV export would write it: whole numbers without `.0`
    (3, not 3.0), other numbers in their shortest form, dates (and midnight date-times) in ISO
    8601, empty cells as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


class XlsxFile(TableFile):
    """One sheet of an xlsx workbook read row by row, as the CSV machinery reads a CSV file.

    The sheet read is the first (in the workbook's order) whose header row holds every column
    the adapter requires; the header row is looked for in each sheet's first
    ``HEADER_SEARCH_ROWS`` rows, since publishers put a title or notes above it. Row numbers
    are the sheet's own (as Excel shows them), in errors and as each fact's ``source_row``.
    Cells read as their CSV export has them (``cell_text``): formulas by their saved value.

    Bounded whatever the workbook claims: it is read with openpyxl in read-only (streaming)
    mode, sheet dimensions are ignored (a claimed A1:XFD1048576 allocates nothing); the
    archive's parts may hold at most the upload limit uncompressed (``max_bytes``: a zip bomb is
    a 413), the parts openpyxl keeps in memory (shared strings, styles) at most
    ``MAX_WORKBOOK_PART_BYTES``; a cell at most ``MAX_CELL_CHARS`` characters, a row at most
    ``MAX_RECORD_CHARS`` and ``MAX_SHEET_COLUMNS`` cells, a sheet at most ``MAX_SHEET_ROWS``
    rows (beyond: a 422 naming the row).
    """

    def __init__(
        self,
        path: str,
        required: tuple[str, ...],
        aliases: dict[str, str],
        max_bytes: int,
    ) -> None:
        _check_archive(path, max_bytes)
        import openpyxl  # imported here: only workbook uploads pay for it

        # An open file, not the path: openpyxl judges a path by its extension (a spool file
        # has none); the content was judged already.
        self._binary = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            try:
                self._book = openpyxl.load_workbook(
                    self._binary, read_only=True, data_only=True, keep_links=False
                )
            except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
                raise _file_error(1, None, f"the workbook cannot be read ({exc})") from None
            try:
                self._open_sheet(required, aliases)
            except BaseException:
                self._book.close()
                raise
        except BaseException:
            self._binary.close()
            raise

    def _open_sheet(self, required: tuple[str, ...], aliases: dict[str, str]) -> None:
        closest: tuple[int, str, int, list[str]] | None = None  # (found, sheet, row, header)
        for sheet in self._book.worksheets:
            rows = self._sheet_rows(sheet)
            try:
                for number, cells in rows:
                    if number > HEADER_SEARCH_ROWS:
                        break
                    header = [c.strip() for c in cells]
                    try:
                        columns = header_columns(header, aliases)
                    except DuplicateColumn as exc:
                        if all(c in _loose_columns(header, aliases) for c in required):
                            raise _file_error(number, exc.column, exc.msg) from None
                        continue
                    found = sum(c in columns for c in required)
                    if found == len(required):
                        self.sheet = sheet.title
                        self.header_row = number
                        self.header = header
                        self.columns = columns
                        self._rows = rows
                        return
                    if closest is None or found > closest[0]:
                        closest = (found, sheet.title, number, header)
            except BaseException:
                rows.close()
                raise
            rows.close()
        if closest is None:
            raise _file_error(1, None, "the workbook has no rows: expected a header row")
        _, title, number, header = closest
        missing = [c for c in required if c not in _loose_columns(header, aliases)]
        raise _file_error(
            number,
            None,
            f"no sheet has a header row (in its first {HEADER_SEARCH_ROWS} rows) with every "
            f"required column; the closest, sheet {title!r} row {number}: "
            + missing_columns_message(missing, header, aliases),
        )

    def _sheet_rows(self, sheet: Any) -> Generator[tuple[int, list[str]], None, None]:
        """(row number, cells as text) for every row of a sheet, blank ones included."""
        sheet.reset_dimensions()  # stored dimensions are a claim, not a size to allocate
        number = 0
        try:
            for values in sheet.iter_rows(values_only=True):
                number += 1
                if number > MAX_SHEET_ROWS:
                    raise _file_error(
                        number, None, f"a sheet has more than {MAX_SHEET_ROWS:,} rows"
                    )
                if len(values) > MAX_SHEET_COLUMNS:
                    raise _file_error(
                        number, None, f"a row has more than {MAX_SHEET_COLUMNS:,} cells"
                    )
                cells = [cell_text(v) for v in values]
                total = 0
                for cell in cells:
                    if len(cell) > MAX_CELL_CHARS:
                        raise _file_error(
                            number, None, f"a cell is longer than {MAX_CELL_CHARS:,} characters"
                        )
                    total += len(cell)
                if total > MAX_RECORD_CHARS:
                    raise _file_error(
                        number, None, f"a row is longer than {MAX_RECORD_CHARS:,} characters"
                    )
                yield number, cells
        except InvalidInput:
            raise
        except (zipfile.BadZipFile, zlib.error, OSError, SyntaxError, ValueError) as exc:
            # A damaged part (bad CRC, broken XML: ParseError is a SyntaxError), found while
            # streaming: the row it was found at names where.
            raise _file_error(number + 1, None, f"the workbook is damaged ({exc})") from None

    def rows(self) -> Iterator[CsvRow]:
        for number, cells in self._rows:
            if not any(cells):
                continue  # blank rows carry nothing, as in CSV
            yield CsvRow(number, cells, self.columns)

    def close(self) -> None:
        if hasattr(self, "_rows"):
            self._rows.close()
        self._book.close()
        self._binary.close()


def _loose_columns(header: list[str], aliases: dict[str, str]) -> set[str]:
    return {aliases.get(normalize_header(h), normalize_header(h)) for h in header}


def _check_archive(path: str, max_bytes: int) -> None:
    """The workbook's parts, by the sizes the archive declares (zipfile never inflates a part
    past its declared size): 413 past ``max_bytes`` together, 422 for an in-memory part past
    ``MAX_WORKBOOK_PART_BYTES`` or an archive that is no archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        msg = f"the file looks like a workbook but is not one ({exc})"
        raise _file_error(1, None, msg) from None
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise PayloadTooLarge(
            f"The workbook holds {total:,} bytes uncompressed, more than {max_bytes:,}, the most "
            "this service accepts (MAYHOLD_MAX_UPLOAD_BYTES): save the sheet as CSV, split it, "
            "or ask the operator to raise the limit. Nothing was loaded."
        )
    for member in members:
        streamed = member.filename.startswith("xl/worksheets/")
        if not streamed and member.file_size > MAX_WORKBOOK_PART_BYTES:
            raise _file_error(
                1,
                None,
                f"the workbook's part {member.filename!r} holds {member.file_size:,} bytes "
                f"uncompressed, more than the {MAX_WORKBOOK_PART_BYTES:,} read into memory",
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
