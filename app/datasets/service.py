"""Loading a file: validate everything, then write everything, or write nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.schemas import Actor
from app.datasets.adapters import ADAPTERS
from app.datasets.adapters.base import MAX_ROW_ERRORS, LoadContext, stage_table
from app.datasets.adapters.list_entries import POLICY_KEY, unknown_policy_message
from app.datasets.parsing import BatchReader, open_csv
from app.datasets.repository import DatasetRepository, stage_name
from app.datasets.schemas import DatasetKind, ListMode
from app.kit.bulk import bulk_insert
from app.kit.errors import FieldError, InvalidInput, NotFound, PayloadTooLarge
from app.kit.files import SpoolFile
from app.kit.logging import get_logger
from app.kit.metrics import LOAD_SECONDS, ROWS_REJECTED
from app.kit.settings import get_settings
from app.kit.time import latest_provider_date, utcnow
from app.kit.vocabulary import PROVIDERS
from app.models import Base, Dataset
from app.policies.repository import policy_rule_ids

log = get_logger("mayhold.datasets")


@dataclass(frozen=True)
class Upload:
    """A file on disk (an upload spooled while its SHA-256 was computed, or a local file)."""

    path: str
    sha256: str
    size: int
    name: str | None
    spooled: SpoolFile | None = None  # ours, to remove when done

    def discard(self) -> None:
        if self.spooled is not None:
            self.spooled.discard()


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The file is larger than {limit:,} bytes, the most this service accepts "
        "(MAYHOLD_MAX_UPLOAD_BYTES): split it, or ask the operator to raise the limit. "
        "Nothing was loaded."
    )


async def spool(
    chunks: AsyncIterator[bytes],
    name: str | None,
    directory: Path | None = None,
    limit: int | None = None,
) -> Upload:
    """Copy a request body to a spool file of ours, hashing it on the way: memory stays flat.

    ``directory`` and ``limit`` (bytes) default to the settings' ``upload_directory`` and
    ``max_upload_bytes``. Errors: ``PayloadTooLarge`` (413) past ``limit`` bytes. The spool
    file is removed on any error (a client gone mid-upload too); after success, by
    ``Upload.discard``.
    """
    if directory is None or limit is None:
        settings = get_settings()
        directory = directory or settings.upload_directory
        limit = limit or settings.max_upload_bytes
    digest = hashlib.sha256()
    size = 0
    spooled = SpoolFile(directory)
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            digest.update(chunk)
            spooled.write(chunk)
        spooled.finish()
    except BaseException:
        spooled.discard()
        raise
    return Upload(str(spooled.path), digest.hexdigest(), size, name, spooled)


def spool_path(path: str) -> Upload:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return Upload(path, digest.hexdigest(), os.path.getsize(path), path)


# A file's name is provenance, not data: kept as given, cut to what the column holds (a CLI
# path or an ``X-Filename`` header may be longer) and without the NUL no text column holds.
_SOURCE_NAME_CHARS = int(getattr(Dataset.__table__.c.source_name.type, "length", 0) or 300)


def _source_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.replace("\x00", "")
    if len(name) <= _SOURCE_NAME_CHARS:
        return name
    return name[: _SOURCE_NAME_CHARS - 1] + "\u2026"


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


# A load this large changes the table's statistics enough to re-plan the whole-universe reads;
# so does one that adds a tenth or more of what the planner believes the table holds (a young
# database: 5,000 facts checked against planner statistics saying the table is empty took a
# nested-loop plan 38 s; with fresh statistics, a hash join, well under a second).
ANALYZE_FROM_ROWS = 10_000
ANALYZE_FROM_SHARE = 10  # rows * this >= the planner's row count


async def _changes_statistics(repository: DatasetRepository, table: type[Base], rows: int) -> bool:
    """Whether a load of ``rows`` rows makes its table's planner statistics misleading: a
    large load, or one large against what the planner believes is there (never analyzed, or
    analyzed when far smaller)."""
    if rows == 0:
        return False
    if rows >= ANALYZE_FROM_ROWS:
        return True
    planned = await repository.planned_rows(table)
    return planned is not None and rows * ANALYZE_FROM_SHARE >= planned


def _list_parameters(
    kind: DatasetKind, mode: ListMode | None, policy: str | None
) -> tuple[str, str]:
    """(mode, policy) as stored: list-entries only (default append), '' for other kinds."""
    if kind is not DatasetKind.list_entries:
        given = [name for name, value in (("mode", mode), ("policy", policy)) if value is not None]
        if given:
            raise InvalidInput(
                f"{' and '.join(given)} apply to list-entries loads only, not to {kind}: "
                "drop them, or load the file as kind=list-entries.",
                errors=[
                    FieldError(loc=("query", name), msg="only for kind=list-entries")
                    for name in given
                ],
            )
        return "", ""
    if policy is not None and not POLICY_KEY.match(policy):
        raise InvalidInput(
            f"policy={policy!r} is not a policy key (e.g. rpf, dk-pension).",
            errors=[FieldError(loc=("query", "policy"), msg="not a policy key")],
        )
    return mode or "append", policy or ""


async def load_dataset(
    session: AsyncSession,
    actor: Actor,
    kind: DatasetKind,
    upload: Upload,
    *,
    provider: str | None,
    as_of: dt.date | None,
    mode: ListMode | None = None,
    policy: str | None = None,
    progress_seconds: float = 10.0,
    max_bytes: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> tuple[Dataset, bool]:
    """Load a file; returns the dataset and whether it is new (False: the same load again).

    A load is its bytes *and* its parameters (contract, "Loads that replace a list"): kind,
    provider, as_of and, for list-entries, ``mode`` and ``policy``. The same bytes with the same
    parameters answer the existing dataset (a retried upload writes nothing twice); with any
    other parameter they are a new statement and a new dataset (a vendor's byte-identical
    monthly re-export dated anew, the same file from another provider).

    ``as_of`` omitted (kinds that allow it) means the load's date, today in UTC: it counts as
    that date exactly as if given, so the same bytes without as_of answer the existing dataset
    on the day they were loaded and are recorded anew, dated that day, on a later day.

    A long load logs ``dataset loading`` (rows and row errors so far, seconds) every
    ``progress_seconds``; ``on_rows``, if given, is called after each batch with the rows read
    so far (the command line's progress bar).

    The file is CSV text or an xlsx workbook, told by its content (``parsing.open_csv``); a
    workbook's parts may hold at most ``max_bytes`` uncompressed (default: the settings'
    ``max_upload_bytes``, the upload limit), else a 413.

    Errors: 422 (``InvalidInput``) for bad parameters (e.g. ``policy`` naming no policy) or
    rows, nothing written; 409
    (``Conflict``) for a list-entries replace older than the policy's current list.
    """
    adapter = ADAPTERS[kind]()
    provider = _provider(kind, provider)
    if as_of is None and adapter.as_of_required:
        raise InvalidInput(
            f"A {kind} load needs ?as_of=YYYY-MM-DD: the provider's as-of date for this file.",
            errors=[FieldError(loc=("query", "as_of"), msg="required for this kind")],
        )
    list_mode, list_policy = _list_parameters(kind, mode, policy)
    latest = latest_provider_date()
    if as_of is not None and as_of > latest:
        raise InvalidInput(
            f"as_of={as_of.isoformat()} is in the future: a provider's as-of date is a day "
            f"it has seen, at most {latest.isoformat()} (today in UTC plus a day for time "
            "zones). Give the date the file's data is as of. Nothing was loaded.",
            errors=[FieldError(loc=("query", "as_of"), msg="after today (UTC) plus one day")],
        )
    dated = as_of or utcnow().date()
    repository = DatasetRepository(session)
    if list_policy:
        # A replace for a misspelt policy would record an empty list nothing reads.
        known = await policy_rule_ids(await repository.connection())
        if list_policy not in known:
            raise InvalidInput(
                f"policy={list_policy!r}: {unknown_policy_message(list_policy, known)}. "
                "Nothing was loaded.",
                errors=[FieldError(loc=("query", "policy"), msg="unknown policy")],
            )
    await repository.lock_loads()
    existing = await repository.get_same_load(
        kind.value, upload.sha256, provider, dated, list_mode, list_policy
    )
    if existing is not None:
        return existing, False

    # Ids are allocated under the load lock: dense, in load order (an id is a data version).
    dataset_id = await repository.next_id()
    ctx = LoadContext(
        provider=provider,
        as_of=as_of,
        dated=dated,
        dataset_id=dataset_id,
        mode=list_mode,
        policy=list_policy,
        latest=latest,
    )
    # Header errors surface before any work; CSV or xlsx is told by the content.
    csvfile = open_csv(upload.path, adapter, ctx, max_bytes)
    batches = BatchReader(csvfile, adapter, ctx)
    stage = stage_table(stage_name(), adapter)
    await repository.create_stage(stage)
    conn = await repository.connection()
    started = time.perf_counter()
    reported = started
    try:
        # The next batch is parsed (worker thread) while the database takes this one.
        pending = asyncio.ensure_future(batches.next())
        try:
            while (batch := await pending) is not None:
                pending = asyncio.ensure_future(batches.next())
                if on_rows is not None:
                    on_rows(batches.result.rows)
                if time.perf_counter() - reported >= progress_seconds:
                    reported = time.perf_counter()
                    log.info(
                        "dataset loading",
                        dataset_id=dataset_id,
                        kind=kind.value,
                        sha256=upload.sha256,
                        bytes=upload.size,
                        rows=batches.result.rows,
                        errors=len(batches.result.errors),
                        seconds=round(reported - started, 1),
                    )
                if not batches.result.errors:
                    await bulk_insert(conn, stage, batch)
                    if adapter.publishes_in_batches:
                        await adapter.publish(conn, stage, dataset_id, ctx)
                        await repository.clear_stage(stage)
        finally:
            if not pending.done():  # a failed COPY: let the worker finish before unwinding
                await asyncio.wait([pending])
    finally:
        csvfile.close()
    parsed = batches.result
    streamed = time.perf_counter()
    filled = adapter.filled_table()
    if filled is not None and adapter.publishes_in_batches and parsed.rows and not parsed.errors:
        # The rows are in the table already and the whole-file checks below select them by
        # this load's dataset id: planner statistics from before the load say no row has it
        # (an estimate of 1 row: nested loops over every identifier; 3,000 facts into an
        # analyzed table took 6.6 s to check, with fresh statistics 0.03 s). So always
        # fresh statistics first; the loads are serialized (``lock_loads``), so the
        # ANALYZE's table lock waits on nothing but autovacuum. The next whole-universe
        # read (the compiled index) is planned on them too.
        await repository.analyze(filled)
    if not parsed.errors:
        parsed.errors = await adapter.check(conn, adapter.checked_rows(stage, dataset_id), ctx)
    checked = time.perf_counter()
    if parsed.errors:
        LOAD_SECONDS.labels(kind=kind.value, outcome="rejected").observe(
            time.perf_counter() - started
        )
        ROWS_REJECTED.labels(kind=kind.value).inc(len(parsed.errors))
        log.info(
            "dataset rejected",
            kind=kind.value,
            sha256=upload.sha256,
            errors=len(parsed.errors),
            first_row=min(e.row or 0 for e in parsed.errors),
        )
        errors = sorted(parsed.errors, key=lambda e: (e.row or 0, e.column or ""))
        raise InvalidInput(
            f"The file was rejected: {len(errors)}{'+' if len(errors) >= MAX_ROW_ERRORS else ''}"
            f" row error(s), the first at row {errors[0].row}: {errors[0].msg}. "
            "Nothing was loaded; fix the rows listed in `errors` and load the file again.",
            errors=errors[:MAX_ROW_ERRORS],
        )
    if parsed.rows == 0 and not adapter.allows_no_rows(ctx):
        hint = (
            " To empty a policy's list, load a header-only file with mode=replace&policy=KEY."
            if kind is DatasetKind.list_entries
            else ""
        )
        raise InvalidInput(
            "The file was rejected: it has a header but no data rows. Nothing was loaded." + hint,
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
            as_of=dated,
            sha256=upload.sha256,
            rows=parsed.rows,
            loaded_at=utcnow(),
            loaded_by=actor.name,
            loaded_by_key_id=actor.key_id,
            source_name=_source_name(upload.name),
            summary=ctx.summary,
            mode=list_mode,
            policy=list_policy,
        )
    )
    if not adapter.publishes_in_batches:
        await adapter.publish(conn, stage, dataset.id, ctx)
    await repository.drop_stage(stage)
    if (
        filled is not None
        and not adapter.publishes_in_batches
        and await _changes_statistics(repository, filled, parsed.rows)
    ):
        await repository.analyze(filled)  # for the next whole-universe read
    LOAD_SECONDS.labels(kind=kind.value, outcome="loaded").observe(time.perf_counter() - started)
    log.info(
        "dataset loaded",
        dataset_id=dataset.id,
        kind=kind.value,
        provider=provider,
        rows=parsed.rows,
        stream_seconds=round(streamed - started, 3),
        check_seconds=round(checked - streamed, 3),
        total_seconds=round(time.perf_counter() - started, 3),
    )
    return dataset, True


async def get_dataset(session: AsyncSession, dataset_id: int) -> Dataset:
    dataset = await DatasetRepository(session).get(dataset_id)
    if dataset is None:
        raise NotFound(f"No dataset {dataset_id}.")
    return dataset


async def list_datasets(
    session: AsyncSession,
    *,
    kind: str | None,
    provider: str | None,
    limit: int,
    before_id: int | None,
) -> list[Dataset]:
    return list(
        await DatasetRepository(session).list(
            kind=kind, provider=provider, limit=limit, before_id=before_id
        )
    )
