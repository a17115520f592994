"""Turning a file's rows into staged batches, in a worker thread.

Parsing is CPU-bound Python (identifier check digits, country names, decimals); the worker
thread keeps the event loop answering other requests while a large file is parsed, and parses
batch k+1 while the database takes batch k. (A child process was measured: one parser process
is no faster than the thread, because parsing itself is the ceiling, ~15 us/row; see the
benchmark notes in the README.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.datasets.adapters import Adapter
from app.datasets.adapters.base import MAX_ROW_ERRORS, LoadContext, StagedValues
from app.datasets.csvfile import (
    CellError,
    CsvFile,
    CsvRow,
    SkipRow,
    TableFile,
    XlsxFile,
    is_workbook,
)
from app.kit.errors import FieldError
from app.kit.settings import get_settings

BATCH_ROWS = 20_000
SKIP_EXAMPLES = 10

Batch = list[tuple[Any, ...]]

# A row error's message echoes the cell it is about; a cell may be a megabyte (up to
# ``csvfile.MAX_CELL_CHARS``), and 100 such errors must not make a 100 MB answer.
MESSAGE_CHARS = 500
# A skipped row's example (a territory's name) is kept in the dataset's summary.
EXAMPLE_CHARS = 100


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


@dataclass
class ParseResult:
    rows: int = 0
    errors: list[FieldError] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)


class RowParser:
    """Pulls rows through an adapter; returns staged tuples a batch at a time."""

    def __init__(self, rows: Iterator[CsvRow], adapter: Adapter, ctx: LoadContext) -> None:
        self.rows = rows
        self.adapter = adapter
        self.ctx = ctx
        self.result = ParseResult()
        self.values = StagedValues(type(adapter))

    def next_batch(self) -> Batch | None:
        batch: Batch = []
        result = self.result
        for row in self.rows:
            try:
                staged = list(self.adapter.parse(row, self.ctx))
                self.values.check(staged)
            except CellError as exc:
                result.errors.append(FieldError.in_file(row.number, exc.column, clip(exc.msg)))
                if len(result.errors) >= MAX_ROW_ERRORS:
                    return None
                continue
            except SkipRow as skip:
                result.skipped[skip.reason] += 1
                examples = result.examples.setdefault(skip.reason, [])
                if len(examples) < SKIP_EXAMPLES:
                    examples.append(clip(skip.example, EXAMPLE_CHARS))
                continue
            result.rows += 1
            if not result.errors:  # after the first error only look for more errors
                batch.extend((row.number, *values) for values in staged)
            if len(batch) >= BATCH_ROWS:
                return batch
        return batch or None


def open_csv(
    path: str, adapter: Adapter, ctx: LoadContext, max_bytes: int | None = None
) -> TableFile:
    """Open a file for an adapter: header checks, then the adapter's look at the header.

    The format is told by the content, never by a name or a Content-Type: a file starting
    with a ZIP header is an xlsx workbook (``XlsxFile``; its parts may hold at most
    ``max_bytes`` uncompressed, by default the upload limit), anything else is CSV text.
    """
    binary = open(path, "rb")  # noqa: SIM115 - closed by CsvFile.close
    table: TableFile
    try:
        if is_workbook(binary):
            binary.close()
            limit = max_bytes if max_bytes is not None else get_settings().max_upload_bytes
            table = XlsxFile(path, adapter.required_columns, adapter.column_aliases, limit)
        else:
            table = CsvFile(binary, adapter.required_columns, adapter.column_aliases)
    except BaseException:
        binary.close()
        raise
    try:
        adapter.begin(table, ctx)
    except BaseException:
        table.close()
        raise
    return table


class BatchReader:
    def __init__(self, csvfile: TableFile, adapter: Adapter, ctx: LoadContext) -> None:
        self.parser = RowParser(csvfile.rows(), adapter, ctx)

    @property
    def result(self) -> ParseResult:
        return self.parser.result

    async def next(self) -> Batch | None:
        return await asyncio.to_thread(self.parser.next_batch)
