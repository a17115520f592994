"""Loading a file: validate everything, then write everything, or write nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.schemas import Actor
from app.datasets.adapters import ADAPTERS
from app.datasets.adapters.base import MAX_ROW_ERRORS, LoadContext, stage_table
from app.datasets.csvfile import CellError, CsvFile, CsvRow, SkipRow
from app.datasets.repository import DatasetRepository, stage_name
from app.datasets.schemas import DatasetKind
from app.kit.bulk import bulk_insert
from app.kit.errors import FieldError, InvalidInput, NotFound
from app.kit.time import utcnow
from app.kit.vocabulary import PROVIDERS
from app.models import Dataset

BATCH_ROWS = 20_000
SKIP_EXAMPLES = 10


@dataclass(frozen=True)
class Upload:
    """An uploaded file, spooled to disk while its SHA-256 was computed."""

    file: IO[bytes]
    sha256: str
    size: int
    name: str | None


async def spool(chunks: AsyncIterator[bytes], name: str | None) -> Upload:
    """Copy a request body to a temporary file, hashing it on the way: memory stays flat."""
    digest = hashlib.sha256()
    file = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, closed there
    size = 0
    async for chunk in chunks:
        digest.update(chunk)
        file.write(chunk)
        size += len(chunk)
    file.seek(0)
    return Upload(file=file, sha256=digest.hexdigest(), size=size, name=name)


def spool_path(path: str) -> Upload:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return Upload(file=open(path, "rb"), sha256=digest.hexdigest(), size=0, name=path)


def _provider(kind: DatasetKind, given: str | None) -> str:
    provider = (given or ADAPTERS[kind].default_provider or "").strip().lower()
    if not provider:
        raise InvalidInput(
            f"A {kind} load needs ?provider=: one of {', '.join(sorted(PROVIDERS))}.",
            errors=[FieldError(loc=("query", "provider"), msg="required for this kind")],
        )
    if provider not in PROVIDERS:
        raise InvalidInput(
            f"Unknown provider {provider!r}: use one of {', '.join(sorted(PROVIDERS))}.",
            errors=[FieldError(loc=("query", "provider"), msg="unknown provider")],
        )
    return provider


@dataclass
class _Parsed:
    rows: int
    errors: list[FieldError]
    skipped: Counter[str]
    examples: dict[str, list[str]]


class _Parser:
    """Runs the CPU-bound row parsing in a worker thread, a batch at a time."""

    def __init__(self, rows: Iterator[CsvRow], adapter: Any, ctx: LoadContext) -> None:
        self.rows = rows
        self.adapter = adapter
        self.ctx = ctx
        self.result = _Parsed(0, [], Counter(), {})

    def next_batch(self) -> list[tuple[Any, ...]] | None:
        batch: list[tuple[Any, ...]] = []
        result = self.result
        for row in self.rows:
            try:
                staged = self.adapter.parse(row, self.ctx)
            except CellError as exc:
                result.errors.append(FieldError.in_file(row.number, exc.column, exc.msg))
                if len(result.errors) >= MAX_ROW_ERRORS:
                    return None
                continue
            except SkipRow as skip:
                result.skipped[skip.reason] += 1
                examples = result.examples.setdefault(skip.reason, [])
                if len(examples) < SKIP_EXAMPLES:
                    examples.append(skip.example)
                continue
            result.rows += 1
            if not result.errors:  # after the first error only keep looking for more
                batch.extend((row.number, *values) for values in staged)
            if len(batch) >= BATCH_ROWS:
                return batch
        return batch or None


async def load_dataset(
    session: AsyncSession,
    actor: Actor,
    kind: DatasetKind,
    upload: Upload,
    *,
    provider: str | None,
    as_of: dt.date | None,
) -> tuple[Dataset, bool]:
    """Load a file; returns the dataset and whether it is new (False: same bytes seen before)."""
    adapter = ADAPTERS[kind]()
    provider = _provider(kind, provider)
    if as_of is None and adapter.as_of_required:
        raise InvalidInput(
            f"A {kind} load needs ?as_of=YYYY-MM-DD: the provider's as-of date for this file.",
            errors=[FieldError(loc=("query", "as_of"), msg="required for this kind")],
        )
    repository = DatasetRepository(session)
    await repository.lock_loads()
    existing = await repository.get_by_content(kind, upload.sha256)
    if existing is not None:
        return existing, False

    # Ids are allocated under the load lock: dense, in load order (an id is a data version).
    dataset_id = await repository.next_id()
    ctx = LoadContext(provider=provider, as_of=as_of)
    csvfile = CsvFile(upload.file, adapter.required_columns, adapter.column_aliases)
    adapter.begin(csvfile, ctx)
    stage = stage_table(stage_name(), adapter)
    await repository.create_stage(stage)
    conn = await repository.connection()
    parser = _Parser(csvfile.rows(), adapter, ctx)
    # Parse the next batch (a worker thread, CPU) while the database takes this one (COPY).
    pending = asyncio.ensure_future(asyncio.to_thread(parser.next_batch))
    try:
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(parser.next_batch))
            if not parser.result.errors:
                await bulk_insert(conn, stage, batch)
                if adapter.publishes_in_batches:
                    rows = (batch[0][0], batch[-1][0])
                    await adapter.publish(conn, stage, dataset_id, ctx, rows)
    finally:
        if not pending.done():  # a failed COPY: let the worker finish before unwinding
            await asyncio.wait([pending])
    parsed = parser.result
    if not parsed.errors:
        parsed.errors = await adapter.check(conn, stage, ctx)
    if parsed.errors:
        errors = sorted(parsed.errors, key=lambda e: (e.row or 0, e.column or ""))
        raise InvalidInput(
            f"The file was rejected: {len(errors)}{'+' if len(errors) >= MAX_ROW_ERRORS else ''}"
            f" row error(s), the first at row {errors[0].row}: {errors[0].msg}. "
            "Nothing was loaded; fix the rows listed in `errors` and load the file again.",
            errors=errors[:MAX_ROW_ERRORS],
        )
    if parsed.rows == 0:
        raise InvalidInput(
            "The file was rejected: it has a header but no data rows. Nothing was loaded.",
            errors=[FieldError.in_file(2, None, "no data rows")],
        )
    if parsed.skipped:
        ctx.note("skipped", dict(parsed.skipped))
        ctx.note("skipped_examples", parsed.examples)
    dataset = await repository.add(
        Dataset(
            id=dataset_id,
            kind=kind.value,
            provider=provider,
            as_of=as_of or utcnow().date(),
            sha256=upload.sha256,
            rows=parsed.rows,
            loaded_at=utcnow(),
            loaded_by=actor.name,
            loaded_by_key_id=actor.key_id,
            source_name=upload.name,
            summary=ctx.summary,
        )
    )
    if not adapter.publishes_in_batches:
        await adapter.publish(conn, stage, dataset.id, ctx)
    await repository.drop_stage(stage)
    return dataset, True


async def get_dataset(session: AsyncSession, dataset_id: int) -> Dataset:
    dataset = await DatasetRepository(session).get(dataset_id)
    if dataset is None:
        raise NotFound(f"No dataset {dataset_id}.")
    return dataset


async def list_datasets(
    session: AsyncSession,
    *,
    kind: DatasetKind | None,
    provider: str | None,
    limit: int,
    before_id: int | None,
) -> list[Dataset]:
    return list(
        await DatasetRepository(session).list(
            kind=kind.value if kind else None, provider=provider, limit=limit, before_id=before_id
        )
    )
