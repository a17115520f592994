"""The ``mayhold`` command line (see the contract for the commands integrators rely on)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import errno
import json
import logging
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, get_args

# Only what building the parser needs is imported here: `mayhold --help` and `--version` stay
# fast (no SQLAlchemy, FastAPI, alembic, pandas; tests/test_cli_startup.py). Each command imports
# what it uses when it runs; a module imported twice costs nothing.
from app.auth.scopes import Scope
from app.datasets.kinds import DatasetKind, ListMode

if TYPE_CHECKING:
    from tqdm import tqdm

    from app.auth.schemas import IssuedKey
    from app.datasets.schemas import DatasetRead
    from app.decisions.schemas import ChainVerification
    from app.decisions.signing import CheckpointSigner, CheckpointTrust
    from app.kit.errors import AppError
    from app.kit.settings import Settings
    from app.lists import formats as list_formats
    from app.lists import service as lists_service
    from app.policies import service as policy_service


async def _ensure_migrated(settings: Settings) -> None:
    from app.kit.engine import create_engine
    from app.kit.migrations import current_revisions, declared_heads, head_revisions

    engine = create_engine(settings.database_url, settings=settings, pooled=False)
    try:
        current = await current_revisions(engine)
    finally:
        await engine.dispose()
    # Read from the scripts' text: Alembic itself is not imported for a check (a third of the
    # start-up of `mayhold ingest`); only scripts that hide their revisions need it.
    heads = declared_heads(settings.migrations_dir)
    if current != (heads if heads is not None else head_revisions(settings)):
        from sqlalchemy.engine import make_url

        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        raise ValueError(
            f"the database {shown} is not migrated to this release's schema: run 'mayhold "
            "migrate' first (MAYHOLD_DATABASE_URL names the database)"
        )


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve with ``workers`` processes on one socket (uvicorn's process manager above 1).
    Replicas share the database and extend one decision chain (see app.decisions.stores)."""
    import uvicorn

    from app.kit.http_protocol import ProblemHttpToolsProtocol
    from app.kit.logging import get_logger
    from app.kit.migrations import upgrade_to_head

    # A missing or wrong key file stops the command here, before the database is touched.
    _checkpoint_keys(settings)
    upgrade_to_head(settings)
    get_logger("mayhold.cli").info("database migrated to head", database=settings.dialect)
    uvicorn.run(
        "app.main:build_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # logging is ours (JSON lines), see app.kit.logging
        access_log=False,
        proxy_headers=True,
        http=ProblemHttpToolsProtocol,  # a malformed request's 400 is problem+json too
    )


# -- progress ------------------------------------------------------------------------------------

# tqdm rather than rich: one small pure-Python package with no dependencies of its own, and
# `delay=` shows the bar only once the work has taken a second (short commands print nothing
# extra); rich would bring its markup, pygments and its console for one progress line.
_PROGRESS_DELAY_SECONDS = 1.0


@contextlib.contextmanager
def _progress(description: str, unit: str, total: int | None = None) -> Iterator[tqdm[Any]]:
    """A progress bar on standard error, shown only on a terminal (never in a pipe, a log or a
    cron mail) and only for work that takes longer than a second."""
    from tqdm import tqdm

    with tqdm(
        desc=description,
        unit=unit,
        unit_scale=unit == "B",
        total=total,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        delay=_PROGRESS_DELAY_SECONDS,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        yield bar


def _data_rows_estimate(path: str) -> int | None:
    """The lines of a CSV file after its header: the progress bar's total (a quoted field may
    span lines, so it is an estimate); None for a workbook, whose rows are not lines."""
    lines = 0
    with open(path, "rb") as source:
        first = source.read(4)
        if first.startswith(b"PK"):
            return None
        lines += first.count(b"\n")
        for chunk in iter(lambda: source.read(1 << 20), b""):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


# -- commands ------------------------------------------------------------------------------------


async def _create_key(settings: Settings, name: str, scopes: frozenset[Scope]) -> IssuedKey:
    from app.auth import service as auth_service
    from app.kit.engine import Database

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session, session.begin():
            return await auth_service.create_key(session, name=name, scopes=scopes)
    finally:
        await database.dispose()


async def _revoke_key(settings: Settings, name: str) -> None:
    from app.auth import service as auth_service
    from app.kit.engine import Database

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session, session.begin():
            await auth_service.revoke_key(session, name)
    finally:
        await database.dispose()


async def _list_keys(settings: Settings) -> list[str]:
    from app.auth import service as auth_service
    from app.kit.engine import Database

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session:
            rows = await auth_service.list_keys(session)
            return [
                f"{r.name}\t{','.join(r.scopes)}\tcreated {r.created_at:%Y-%m-%dT%H:%M:%SZ}"
                + (f"\trevoked {r.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if r.revoked_at else "")
                for r in rows
            ]
    finally:
        await database.dispose()


async def _ingest(
    settings: Settings,
    kind: DatasetKind,
    path: str,
    provider: str | None,
    as_of: dt.date | None,
    mode: ListMode | None = None,
    policy: str | None = None,
) -> tuple[DatasetRead, bool]:
    """``mayhold ingest``: exactly ``POST /v1/datasets`` with the same parameters."""
    from app.auth.schemas import Actor
    from app.datasets import service as datasets_service
    from app.datasets.schemas import DatasetRead
    from app.kit.engine import Database

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    upload = datasets_service.spool_path(path)
    # Counting the lines costs a read of the file (from the page cache: the hash just read
    # it): only worth it when a bar can be shown.
    total = _data_rows_estimate(path) if sys.stderr.isatty() else None
    try:
        with _progress(f"loading {kind.value}", "rows", total) as bar:

            def on_rows(rows: int) -> None:
                bar.update(rows - bar.n)

            async with database.sessionmaker() as session, session.begin():
                dataset, created = await datasets_service.load_dataset(
                    session,
                    Actor.command_line(),
                    kind,
                    upload,
                    provider=provider,
                    as_of=as_of,
                    mode=mode,
                    policy=policy,
                    progress_seconds=settings.load_progress_seconds,
                    on_rows=on_rows,
                )
                return DatasetRead.model_validate(dataset, from_attributes=True), created
    finally:
        upload.discard()
        await database.dispose()


def _flag(name: object) -> str:
    """A request's parameter name as this command line's flag (``as_of`` -> ``--as-of``)."""
    return "--" + str(name).replace("_", "-")


def _print_error(exc: AppError) -> None:
    """The service's error in command-line terms: its query parameters are our flags."""
    detail = re.sub(r"\?([a-z_]+)=", lambda m: _flag(m.group(1)) + " ", exc.detail)
    print(f"mayhold: {detail}", file=sys.stderr)
    for error in exc.errors:
        if error.row is not None:
            where = f"row {error.row}"
        elif len(error.loc) == 2 and error.loc[0] == "query":
            where = _flag(error.loc[1])
        else:
            where = ".".join(map(str, error.loc))
        column = f", {error.column}" if error.column else ""
        print(f"  {where}{column}: {error.msg}", file=sys.stderr)


async def _load_policy(
    settings: Settings, content: bytes, fmt: policy_service.Format
) -> policy_service.CreatedVersion:
    """``mayhold policies load FILE``: a new draft, authored by ``cli:<OS user>`` (no key)."""
    from app.auth.schemas import Actor
    from app.kit.engine import Database
    from app.policies import service as policy_service

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    author = Actor.command_line()
    try:
        async with database.sessionmaker() as session, session.begin():
            return await policy_service.load_policy_file(session, content, fmt, author)
    finally:
        await database.dispose()


async def _export_policy(settings: Settings, key: str, version: int) -> bytes:
    """The canonical JSON of a version (the bytes its sha256 is computed over), verified."""
    from app.kit.engine import Database
    from app.policies import service as policy_service

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session:
            _, canonical = await policy_service.export_version(session, key, version)
            return canonical
    finally:
        await database.dispose()


async def _checkpoint(
    settings: Settings, through_seq: int, archive: str | None, archive_sha256: str | None
) -> str:
    """``mayhold decisions checkpoint``: verify the chain up to a decision and vouch for it,
    signed with ``MAYHOLD_CHECKPOINT_KEY_FILE`` when it is set."""
    from app.auth.schemas import Actor
    from app.decisions import service as decisions_service
    from app.kit.engine import Database

    signer, trust = _checkpoint_keys(settings)
    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session, session.begin():
            checkpoint = await decisions_service.record_checkpoint(
                session,
                through_seq,
                Actor.command_line(),
                archive,
                archive_sha256,
                signer=signer,
                trust=trust,
            )
            signed = "unsigned" if checkpoint.key_id is None else f"key_id={checkpoint.key_id}"
            return (
                f"checkpoint seq={checkpoint.seq} hash={checkpoint.hash} "
                f"decided_at={checkpoint.decided_at.isoformat()} {signed}"
            )
    finally:
        await database.dispose()


def _checkpoints_keygen(directory: Path) -> None:
    """``mayhold checkpoints keygen``: a new signing key pair; the private key is never shown."""
    from app.decisions.signing import generate_key_pair

    private_path, public_path, key_id = generate_key_pair(directory)
    print(f"key_id={key_id}")
    print(f"private key (owner-only, 0600): {private_path}")
    print(f"public key (for verifiers): {public_path}")
    print(
        f"sign with: MAYHOLD_CHECKPOINT_KEY_FILE={private_path}; verify elsewhere with: "
        f"MAYHOLD_CHECKPOINT_TRUSTED_KEYS={public_path}",
        file=sys.stderr,
    )


# Exit status of `mayhold decisions verify` when the chain is broken (1 is any other failure).
EXIT_CHAIN_BROKEN = 3


async def _verify_decisions(
    settings: Settings,
    start: dt.datetime | None,
    end: dt.datetime | None,
    trusted_keys: Sequence[Path] = (),
    require_signed: bool = False,
) -> tuple[ChainVerification, dict[str, Any] | str | None]:
    """``mayhold decisions verify``: ``GET /v1/decisions/verify`` over [start, end); with the
    first bad decision's stored record when the chain is broken (or why it cannot be read).
    Checkpoint signatures are checked against the configured keys and ``trusted_keys``."""
    from app.decisions import service as decisions_service
    from app.decisions.signing import CheckpointTrust
    from app.kit.engine import READ_ONLY_OPTION, Database

    trust = CheckpointTrust.from_files(
        settings.checkpoint_key_file,
        (*settings.checkpoint_trusted_keys, *trusted_keys),
        require_signed=settings.require_signed_checkpoints or require_signed,
    )
    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session:
            # Reading only: on SQLite a long verify must not hold the log's write lock.
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            result = await decisions_service.verify(session, start, end, trust)
            if result.ok or result.first_bad_id is None:
                return result, None
            try:
                record: dict[str, Any] | str = await decisions_service.get_decision(
                    session, result.first_bad_id
                )
            except Exception as exc:  # an altered row may not even parse: say so, keep going
                record = f"its stored record cannot be read: {exc}"
            return result, record
    finally:
        await database.dispose()


@dataclass(frozen=True)
class _DecisionQuery:
    """The filters of ``mayhold decisions export``, as ``GET /v1/decisions`` takes them."""

    instrument: str | None
    issuer_id: str | None
    policy: str | None
    verdict: str | None
    start: dt.datetime | None
    end: dt.datetime | None


async def _export_decisions(settings: Settings, query: _DecisionQuery, out: BinaryIO) -> int:
    """Write every matching decision as one JSON line, in chain order; returns how many.

    The lines are the listing's decisions byte for byte as ``GET /v1/decisions/{id}`` shows
    them (with ``audit``), read in pages of the listing's largest size.
    """
    import orjson

    from app.decisions import service as decisions_service
    from app.decisions.repository import DecisionFilters
    from app.kit.engine import READ_ONLY_OPTION, Database

    await _ensure_migrated(settings)
    filters = DecisionFilters(
        isin=None if query.instrument is None else query.instrument.strip().upper(),
        issuer_id=query.issuer_id,
        policy_key=query.policy,
        verdict=query.verdict,
        decided_from=query.start,
        decided_before=query.end,
    )
    database = Database.from_settings(settings)
    written = 0
    try:
        async with database.sessionmaker() as session:
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            cursor: str | None = None
            with _progress("exporting decisions", "decisions") as bar:
                while True:
                    page = await decisions_service.list_decisions(
                        session, filters, cursor, decisions_service.PAGE_MAX
                    )
                    out.write(b"".join(orjson.dumps(d) + b"\n" for d in page["decisions"]))
                    written += len(page["decisions"])
                    bar.update(len(page["decisions"]))
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
        out.flush()
        return written
    finally:
        await database.dispose()


async def _export_list(
    settings: Settings,
    policy: str,
    fmt: list_formats.ListFormat,
    level: lists_service.Level,
    as_of: dt.datetime | None,
    since: _Since | None,
    out: BinaryIO,
) -> str:
    """``mayhold lists export``: the endpoint's list, written to ``out``; returns its token.

    A token read from ``--since-file`` that the service refuses (truncated, another database's,
    dated after today...) gives the whole list instead, said on standard error: the custodian's
    state is then unknown, and the whole list is the one answer that is right whatever it is.
    A token given with ``--since`` is refused as the endpoint refuses it (exit 1).
    """
    from app.kit.engine import READ_ONLY_OPTION, Database
    from app.kit.errors import InvalidInput, NotFound
    from app.lists import formats as list_formats
    from app.lists import service as lists_service

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session:
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            token = since.token if since is not None else None
            try:
                plan = await lists_service.plan_list(session, policy, level, as_of, token)
            except (InvalidInput, NotFound) as exc:
                if since is None or since.path is None:
                    raise
                # Without the token: an error here (an unknown policy) is the real one.
                plan = await lists_service.plan_list(session, policy, level, as_of, None)
                print(
                    f"mayhold: the token in {since.path} cannot be used ({exc.detail}); "
                    "writing the whole list instead",
                    file=sys.stderr,
                )
            export = await lists_service.load_list(session, plan)
        with _progress(f"exporting the {policy} list", "B") as bar:
            async for chunk in list_formats.render(fmt, export):
                out.write(chunk)
                bar.update(len(chunk))
        out.flush()
        return plan.token
    finally:
        await database.dispose()


@dataclass(frozen=True)
class _Since:
    """The ``since`` token of a list export, and the file it was read from (if any)."""

    token: str
    path: Path | None


def _since(token: str | None, path: Path | None) -> _Since | None:
    """``--since TOKEN``, or ``--since-file PATH``: a missing or blank file (the first night)
    means no token, the whole list."""
    if token is not None:
        return _Since(token, None)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    return _Since(text, path) if text else None


def _refuse_existing(path: Path | None) -> None:
    if path is not None and path.exists():  # fail before the work; commit checks again
        raise FileExistsError(errno.EEXIST, "exists; not replacing it", str(path))


def _lists_export(settings: Settings, args: argparse.Namespace) -> None:
    """Write the list (to ``--out`` or standard output), then ``--token-file``; see
    ``_parser`` for the guarantees. Raises on any failure, leaving both files as they were."""
    from app.kit.files import AtomicFile

    out_path: Path | None = args.out
    _refuse_existing(out_path)
    since = _since(args.since, args.since_file)
    with contextlib.ExitStack() as files:
        out = None if out_path is None else files.enter_context(AtomicFile(out_path, replace=False))
        stream = sys.stdout.buffer if out is None else out.file
        token = asyncio.run(
            _export_list(settings, args.policy, args.format, args.level, args.as_of, since, stream)
        )
        token_file = None
        if args.token_file is not None:
            # Written in full before the list is committed (a full disk fails the night here,
            # with nothing changed), renamed into place after it: the token never names a
            # list the custodian was not given.
            token_file = files.enter_context(AtomicFile(args.token_file, replace=True))
            token_file.file.write(f"{token}\n".encode())
        if out is not None:
            out.commit()
        if token_file is not None:
            token_file.commit()
    print(f"list token: {token}", file=sys.stderr)


class _UsageError(Exception):
    """A flag's value the parser could not judge alone (exit 2, like argparse's own errors)."""


def _decisions_export(settings: Settings, args: argparse.Namespace) -> int:
    """Write the decisions (to ``--output`` or standard output); the file appears complete or
    not at all, and an existing one is never replaced."""
    from app.kit.files import AtomicFile
    from app.models import VERDICTS

    if args.verdict is not None and args.verdict not in VERDICTS:
        raise _UsageError(f"--verdict: must be one of {', '.join(VERDICTS)}")
    _time_range(args.from_, args.to)
    query = _DecisionQuery(
        args.instrument, args.issuer_id, args.policy, args.verdict, args.from_, args.to
    )
    _refuse_existing(args.output)
    with contextlib.ExitStack() as files:
        out = None
        if args.output is not None:
            out = files.enter_context(AtomicFile(args.output, replace=False))
        stream = sys.stdout.buffer if out is None else out.file
        written = asyncio.run(_export_decisions(settings, query, stream))
        if out is not None:
            out.commit()
    print(f"exported {written} decision(s)", file=sys.stderr)
    return 0


def _decisions_verify(settings: Settings, args: argparse.Namespace) -> int:
    _time_range(args.from_, args.to)
    result, record = asyncio.run(
        _verify_decisions(
            settings, args.from_, args.to, args.trusted_key, args.require_signed_checkpoints
        )
    )
    print(result.model_dump_json(indent=2))
    statuses = ", ".join(
        f"{sum(c.status == status for c in result.checkpoints)} {status}"
        for status in sorted({c.status for c in result.checkpoints})
    )
    if result.ok:
        print(
            f"the chain is sound: {result.checked} decision(s) checked; "
            f"checkpoints: {statuses or 'none'}",
            file=sys.stderr,
        )
        return 0
    if result.first_bad_id is None:
        print(
            f"mayhold: checkpoint {result.first_bad_checkpoint_seq} does not hold: "
            f"{result.checkpoint_problem} (checkpoints: {statuses})",
            file=sys.stderr,
        )
        return EXIT_CHAIN_BROKEN
    print(
        f"mayhold: the chain is broken at decision seq {result.first_bad_seq} "
        f"({result.first_bad_id}): {result.problem}",
        file=sys.stderr,
    )
    if isinstance(record, dict):
        print("its stored record:", file=sys.stderr)
        print(json.dumps(record, indent=2, ensure_ascii=False), file=sys.stderr)
    elif record is not None:
        print(f"  ({record})", file=sys.stderr)
    return EXIT_CHAIN_BROKEN


# Exit status of the partition commands on SQLite, where the log is one table.
EXIT_POSTGRES_ONLY = 4


def _postgres_only() -> int:
    print(
        "mayhold: decision-log partitions and archives exist on Postgres only; on SQLite the "
        "log is one table and nothing needs doing",
        file=sys.stderr,
    )
    return EXIT_POSTGRES_ONLY


async def _keep_partitions(settings: Settings, ahead: int, min_rows: int) -> list[str]:
    from app.decisions import partitions
    from app.kit.engine import Database

    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        report = await partitions.keep_ahead_once(
            database, ahead=ahead, min_rows=min_rows, days=settings.decision_partition_days
        )
    finally:
        await database.dispose()
    created = {p.name for p in report.created}
    return [
        f"{p.name} seq [{p.start}, {p.end})" + (" created" if p.name in created else "")
        for p in report.partitions
    ] + [
        f"head seq={report.head if report.head is not None else 'none (empty log)'}; "
        f"{len(report.created)} partition(s) created, of {report.size} decisions each"
    ]


def _decisions_partitions(settings: Settings, args: argparse.Namespace) -> int:
    """``mayhold decisions partitions``: keep ``--ahead`` empty partitions beyond the head."""
    from app.decisions.partitions import PostgresOnly

    if settings.dialect != "postgresql":
        return _postgres_only()
    try:
        lines = asyncio.run(
            _keep_partitions(
                settings,
                args.ahead or settings.decision_partitions_ahead,
                args.min_rows or settings.decision_partition_min_rows,
            )
        )
    except PostgresOnly as exc:
        print(f"mayhold: {exc.detail}", file=sys.stderr)
        return EXIT_POSTGRES_ONLY
    for line in lines:
        print(line)
    return 0


def _checkpoint_keys(settings: Settings) -> tuple[CheckpointSigner | None, CheckpointTrust]:
    """The configured signing key (``MAYHOLD_CHECKPOINT_KEY_FILE``, None without one) and
    the keys verify trusts (its public part, ``MAYHOLD_CHECKPOINT_TRUSTED_KEYS``)."""
    from app.decisions.signing import CheckpointSigner, CheckpointTrust

    signer = (
        None
        if settings.checkpoint_key_file is None
        else CheckpointSigner.from_file(settings.checkpoint_key_file)
    )
    trust = CheckpointTrust.from_files(
        settings.checkpoint_key_file,
        settings.checkpoint_trusted_keys,
        require_signed=settings.require_signed_checkpoints,
    )
    return signer, trust


async def _archive(settings: Settings, args: argparse.Namespace) -> list[str]:
    from app.auth.schemas import Actor
    from app.decisions import partitions
    from app.kit.engine import Database

    signer, trust = _checkpoint_keys(settings)
    await _ensure_migrated(settings)
    database = Database.from_settings(settings)
    try:
        result = await partitions.archive(
            database,
            through_seq=args.through_seq,
            out_dir=args.out,
            actor=Actor.command_line(),
            signer=signer,
            trust=trust,
            archive_uri=args.archive_uri,
            drop=args.drop,
        )
    finally:
        await database.dispose()
    checkpoint = result.checkpoint
    signed = "unsigned" if checkpoint.key_id is None else f"key_id={checkpoint.key_id}"
    return [
        f"archived {result.partition.name}: seq {result.first_seq}-{result.last_seq}, "
        f"{result.rows} decision(s)",
        f"file {result.file} sha256={result.sha256}",
        f"manifest {result.manifest}",
        f"checkpoint seq={checkpoint.seq} hash={checkpoint.hash} {signed}",
        f"{result.partition.name} detached" + (" and dropped" if result.dropped else ""),
    ]


def _decisions_archive(settings: Settings, args: argparse.Namespace) -> int:
    """``mayhold decisions archive``: see ``app.decisions.partitions.archive``."""
    from app.decisions.partitions import ChainNotSound, PostgresOnly

    if settings.dialect != "postgresql":
        return _postgres_only()
    try:
        lines = asyncio.run(_archive(settings, args))
    except PostgresOnly as exc:
        print(f"mayhold: {exc.detail}", file=sys.stderr)
        return EXIT_POSTGRES_ONLY
    except ChainNotSound as exc:
        print(f"mayhold: {exc.detail}", file=sys.stderr)
        return EXIT_CHAIN_BROKEN
    for line in lines:
        print(line)
    return 0


def _decisions_verify_archive(settings: Settings, args: argparse.Namespace) -> int:
    """``mayhold decisions verify-archive``: an archive file checked alone (exit 0 sound, 3
    not)."""
    import dataclasses

    from app.decisions import partitions
    from app.decisions.signing import CheckpointTrust
    from app.kit.engine import Database

    trust = CheckpointTrust.from_files(
        settings.checkpoint_key_file,
        (*settings.checkpoint_trusted_keys, *args.trusted_key),
        require_signed=settings.require_signed_checkpoints or args.require_signed_checkpoints,
    )
    manifest_path: Path | None = args.manifest
    if manifest_path is None:
        guessed = args.file.with_name(args.file.name.removesuffix(".copy.gz") + ".manifest.json")
        manifest_path = guessed if guessed.exists() and guessed != args.file else None
    if args.offline and manifest_path is None:
        raise _UsageError("--offline needs the archive's manifest (--manifest)")
    manifest = None if manifest_path is None else partitions.read_manifest(manifest_path)
    checkpoints = None
    if not args.offline:

        async def read() -> list[Any]:
            await _ensure_migrated(settings)
            database = Database.from_settings(settings)
            try:
                return await partitions.live_checkpoints(database)
            finally:
                await database.dispose()

        checkpoints = asyncio.run(read())
    result = partitions.verify_archive(args.file, manifest, checkpoints, trust)
    print(json.dumps({**dataclasses.asdict(result), "ok": result.ok}, indent=2))
    if result.ok:
        print(
            f"the archive is sound: {result.rows} decision(s), seq {result.first_seq}-"
            f"{result.last_seq}, linked to {result.anchor}, checkpoint {result.checkpoint_seq} "
            f"{result.checkpoint_status} (checkpoints from the {result.source})",
            file=sys.stderr,
        )
        return 0
    for problem in result.problems:
        print(f"mayhold: {problem}", file=sys.stderr)
    return EXIT_CHAIN_BROKEN


def _time_range(start: dt.datetime | None, end: dt.datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise _UsageError("--from must be before --to")


async def _prepare_demo(
    settings: Settings, companies: int = 3000
) -> tuple[IssuedKey, dict[str, str], list[str]]:
    """Load the demo (first run), issue this run's admin key and revoke earlier runs' demo keys
    (one demo key works at a time; keys made with ``mayhold keys create`` are left alone)."""
    from app.auth import service as auth_service
    from app.demo import demo_loaded, load_demo
    from app.kit.engine import Database
    from app.kit.time import utcnow

    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session, session.begin():
            if not await demo_loaded(session):
                print("loading the shipped policies and the sample universe...", flush=True)
            examples = await load_demo(session, companies)
        issued = await _create_key(
            settings, f"demo-{utcnow():%Y%m%dT%H%M%S%f}", frozenset({Scope.admin})
        )
        async with database.sessionmaker() as session, session.begin():
            earlier = [
                key.name
                for key in await auth_service.list_keys(session)
                if key.name.startswith("demo-")
                and key.name != issued.principal.name
                and key.revoked_at is None
            ]
            for name in earlier:
                await auth_service.revoke_key(session, name)
    finally:
        await database.dispose()
    return issued, examples, earlier


def _free_port(host: str, port: int) -> None:
    """Refuse a port already taken before anything is printed or issued (a demo run would
    otherwise print a key and its examples, then fail to serve)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _UsageError(
                f"--port {port}: {host}:{port} is not free ({exc.strerror}); pick another, "
                "e.g. --port 8001"
            ) from None


def _demo(settings: Settings, host: str, port: int) -> None:
    from app.demo import DEFENCE_SHARE, SPONSOR_BOND
    from app.kit.migrations import upgrade_to_head

    _free_port(host, port)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up lines are noise
    upgrade_to_head(settings)
    issued, examples, revoked = asyncio.run(_prepare_demo(settings))
    base = f"http://{host}:{port}"
    auth = '-H "Authorization: Bearer $MAYHOLD_KEY"'
    checks = "\n".join(
        f"  curl -s {auth} '{base}/v1/check?policy=rpf&instrument={isin}'   # {label}"
        for label, isin in sorted(examples.items())
    )
    batch = json.dumps([examples["clean company"], examples["tobacco producer"]])
    orders = ", ".join(
        json.dumps({"instrument": SPONSOR_BOND, "side": "buy", "market_value": value})
        for value in (150_000, 500_000)
    )
    print(
        f"""
mayhold demo on {base}  (database: {settings.database_url})
Policies rpf, asr, dk-pension and pensura are approved; a sample universe and portfolios are loaded.
An admin key for this demo{" (the earlier demo keys are revoked)" if revoked else ""}:

  export MAYHOLD_KEY={issued.key}

The auditor's console: open {base}/console in a browser and sign in with that key.

Try:
  curl -s {base}/readyz
{checks}
  curl -s {auth} -X POST {base}/v1/checks -H 'Content-Type: application/json' \\
       -d '{{"policy": "dk-pension", "instruments": {batch}}}'
  curl -s {auth} {base}/v1/policies/rpf
  curl -s {auth} {base}/v1/datasets
  curl -s {auth} '{base}/v1/lists/rpf?level=issuer'          # the custodian's exclusion list
  curl -s {auth} '{base}/v1/decisions?instrument={examples["tobacco producer"]}'   # the audit trail
  curl -s {auth} '{base}/v1/decisions/verify'                 # the hash chain, unaltered?
  curl -s {auth} '{base}/v1/check?portfolio=ASR-OWN&instrument={DEFENCE_SHARE}'     # allowed
  curl -s {auth} '{base}/v1/check?portfolio=ASR-CLIENT&instrument={DEFENCE_SHARE}'  # excluded
  curl -s {auth} -X POST {base}/v1/checks -H 'Content-Type: application/json' \\
       -d '{{"portfolio": "PENSURA-DB", "orders": [{orders}]}}'   # sponsor limit 5 %
  curl -s {auth} '{base}/v1/portfolios/PENSURA-DB/compliance'  # the post-trade run
  open {base}/docs for the API reference
""",
        flush=True,
    )
    _serve(settings, host, port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mayhold",
        description="mayhold: may we hold X? Serve the API, load data, manage policies, keys "
        "and the decision log. `mayhold COMMAND --help` tells more.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database to head, then serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=_workers, default=1, help="worker processes on the port (default 1)"
    )

    demo = commands.add_parser("demo", help="serve with sample data and print an admin key")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)

    commands.add_parser("migrate", help="upgrade the database to head")

    ingest = commands.add_parser("ingest", help="load a data file (as POST /v1/datasets)")
    ingest.add_argument("--kind", required=True, choices=[k.value for k in DatasetKind])
    ingest.add_argument("--provider", help="who published the data (default per kind)")
    ingest.add_argument("--as-of", type=_date, help="provider as-of YYYY-MM-DD")
    ingest.add_argument(
        "--mode",
        choices=list(get_args(ListMode)),
        help="list-entries only: append to the policies' lists (default) or replace them",
    )
    ingest.add_argument(
        "--policy", help="list-entries only: the one policy the file is (part of) the list of"
    )
    ingest.add_argument("file")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; prints it on the last line")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument(
        "--scopes",
        required=True,
        help=f"comma-separated: {', '.join(s.value for s in Scope)}",
    )
    revoke = key_commands.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("--name", required=True)
    key_commands.add_parser("list", help="list keys (names and scopes, never secrets)")

    policies = commands.add_parser("policies", help="policy documents")
    policy_commands = policies.add_subparsers(dest="policies_command", required=True)
    load = policy_commands.add_parser(
        "load", help="create the policy or add a draft version from a YAML or JSON file"
    )
    load.add_argument("file", type=Path, help="a policy document (.yaml, .yml or .json)")
    export = policy_commands.add_parser(
        "export", help="print a version's canonical JSON (the bytes its sha256 covers)"
    )
    export.add_argument("key")
    export.add_argument("version", type=int)

    decisions = commands.add_parser(
        "decisions",
        help="the decision log",
        description="The decision log: verify, export, checkpoint; on Postgres its partitions "
        "and archives (README, Decision log and Retention).",
    )
    decision_commands = decisions.add_subparsers(dest="decisions_command", required=True)
    checkpoint = decision_commands.add_parser(
        "checkpoint",
        help="verify the chain up to a decision and record its hash (before archiving it), "
        "signed with MAYHOLD_CHECKPOINT_KEY_FILE when it is set",
    )
    checkpoint.add_argument(
        "--through-seq",
        type=int,
        required=True,
        metavar="N",
        help="the seq of the last decision the checkpoint covers",
    )
    checkpoint.add_argument("--archive", help="where the decisions up to it are archived")
    checkpoint.add_argument("--archive-sha256", help="the archive file's SHA-256")
    verify = decision_commands.add_parser(
        "verify",
        help="check that the stored decisions are unaltered (hash chain) over a time range; "
        f"prints the first bad decision and exits {EXIT_CHAIN_BROKEN} when the chain is broken",
    )
    _time_range_flags(verify)
    verify.add_argument(
        "--trusted-key",
        action="append",
        type=Path,
        default=[],
        metavar="PEM_FILE",
        help="an Ed25519 public key (PEM) whose checkpoint signatures to accept, besides "
        "MAYHOLD_CHECKPOINT_TRUSTED_KEYS; repeatable",
    )
    verify.add_argument(
        "--require-signed-checkpoints",
        action="store_true",
        help="report an unsigned checkpoint as a problem (exit "
        f"{EXIT_CHAIN_BROKEN}), as MAYHOLD_REQUIRE_SIGNED_CHECKPOINTS=true does",
    )
    export_decisions = decision_commands.add_parser(
        "export",
        help="write the stored decisions (as GET /v1/decisions filters them), one JSON object a "
        "line, oldest first",
    )
    export_decisions.add_argument("--format", choices=["ndjson"], default="ndjson")
    export_decisions.add_argument("--instrument", help="ISIN")
    export_decisions.add_argument("--issuer-id", help="issuer id")
    export_decisions.add_argument("--policy", help="policy key")
    export_decisions.add_argument("--verdict", help="allowed, watch, excluded or unknown")
    _time_range_flags(export_decisions)
    export_decisions.add_argument(
        "--output",
        "--out",
        type=Path,
        help="write to this new file instead of standard output: it appears complete or not at "
        "all, and an existing file is never replaced (exit 1)",
    )
    partitions = decision_commands.add_parser(
        "partitions",
        help="Postgres: keep empty partitions ahead of the head of the log (idempotent; safe "
        f"to run from several places at once); exit {EXIT_POSTGRES_ONLY} on SQLite",
    )
    partitions.add_argument(
        "--ahead",
        type=_positive,
        help="empty partitions to keep beyond the head (default "
        "MAYHOLD_DECISION_PARTITIONS_AHEAD, 2)",
    )
    partitions.add_argument(
        "--min-rows",
        type=_positive,
        help="the fewest decisions a new partition holds (default "
        "MAYHOLD_DECISION_PARTITION_MIN_ROWS)",
    )
    archive = decision_commands.add_parser(
        "archive",
        help="Postgres: verify the oldest partition, export it (gzip, manifest), re-verify the "
        "file, record a checkpoint for it (signed with MAYHOLD_CHECKPOINT_KEY_FILE) and detach "
        f"it; exit 1 when refused, {EXIT_CHAIN_BROKEN} when it does not verify, "
        f"{EXIT_POSTGRES_ONLY} on SQLite (nothing changed)",
    )
    archive.add_argument(
        "--through-seq",
        type=int,
        required=True,
        metavar="N",
        help="the last seq of the partition to archive: its end minus 1, as `mayhold "
        "decisions partitions` lists them",
    )
    archive.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory for the archive file and its manifest (created; files never replaced)",
    )
    archive.add_argument(
        "--archive-uri",
        help="where the file will be kept (recorded in the checkpoint; default its file: URI)",
    )
    archive.add_argument(
        "--drop", action="store_true", help="drop the partition once detached (default: keep it)"
    )
    verify_archive = decision_commands.add_parser(
        "verify-archive",
        help="check an archive file alone: its rows chain, link to the checkpoint before it, "
        "end at its own checkpoint, whose SHA-256 and signature match; exit "
        f"{EXIT_CHAIN_BROKEN} if not",
    )
    verify_archive.add_argument(
        "file", type=Path, help="the archive file (decisions_p<seq>.copy.gz)"
    )
    verify_archive.add_argument(
        "--manifest", type=Path, help="default: the .manifest.json beside the file"
    )
    verify_archive.add_argument(
        "--offline",
        action="store_true",
        help="take the checkpoints from the manifest, not the database",
    )
    verify_archive.add_argument(
        "--trusted-key",
        action="append",
        type=Path,
        default=[],
        metavar="PEM_FILE",
        help="an Ed25519 public key (PEM) whose checkpoint signatures to accept; repeatable",
    )
    verify_archive.add_argument(
        "--require-signed-checkpoints",
        action="store_true",
        help="report an unsigned checkpoint as a problem",
    )
    checkpoints = commands.add_parser("checkpoints", help="signing decision-log checkpoints")
    checkpoint_commands = checkpoints.add_subparsers(dest="checkpoints_command", required=True)
    keygen = checkpoint_commands.add_parser(
        "keygen",
        help="write a new Ed25519 key pair for signing checkpoints into a directory (the "
        "private key 0600, never printed; existing files are never replaced)",
    )
    keygen.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory for checkpoint-signing-key.pem and .pub.pem (created 0700)",
    )
    lists = commands.add_parser("lists", help="custodian lists (as GET /v1/lists/{policy})")
    list_commands = lists.add_subparsers(dest="lists_command", required=True)
    export_list = list_commands.add_parser(
        "export", help="write a policy's exclusion and watch list to standard output"
    )
    export_list.add_argument("policy")
    export_list.add_argument("--format", choices=["csv", "ndjson", "json"], default="csv")
    export_list.add_argument("--level", choices=["issuer", "instrument"], default="instrument")
    export_list.add_argument(
        "--as-of", type=_timestamp, help="RFC 3339 time, e.g. 2026-06-30T00:00:00Z (default now)"
    )
    since = export_list.add_mutually_exclusive_group()
    since.add_argument("--since", help="a list token: only the rows changed since then")
    since.add_argument(
        "--since-file",
        type=Path,
        help="read the --since token from this file (a --token-file of an earlier run); a "
        "missing or empty file means the whole list (the first run), and so does a token the "
        "service cannot use (said on standard error)",
    )
    export_list.add_argument(
        "--token-file",
        type=Path,
        help="also write this list's token there (for the next --since-file), replacing it "
        "atomically and only once the list is written",
    )
    export_list.add_argument(
        "--out",
        type=Path,
        help="write the list to this new file instead of standard output: it appears complete "
        "or not at all, and an existing file is never replaced (exit 1)",
    )
    return parser


def _time_range_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--from",
        dest="from_",
        metavar="FROM",
        type=_time_or_date,
        help="decided at or after: YYYY-MM-DD (midnight UTC) or an RFC 3339 time with an offset",
    )
    command.add_argument(
        "--to", type=_time_or_date, help="decided before: YYYY-MM-DD or an RFC 3339 time"
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number from 1: {text!r}")
    return int(text)


def _workers(text: str) -> int:
    """``--workers`` of serve: a whole number from 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a number of processes (1 or more): {text!r}")
    return int(text)


def _date(text: str) -> dt.date:
    """``--as-of`` of a load: a calendar date."""
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else _not_a_date(text)
    except ValueError:
        return _not_a_date(text)


def _not_a_date(text: str) -> dt.date:
    raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}")


def _time_or_date(text: str) -> dt.datetime:
    """``--from``/``--to``: a day (its start, in UTC) or a time that says its offset."""
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"not a date (YYYY-MM-DD) or an RFC 3339 time with an offset: {text!r}"
        )
    return parsed.astimezone(dt.UTC)


class _VersionAction(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("mayhold")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed)"
        print(f"mayhold {number}")
        parser.exit()


def _timestamp(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Imported after parsing: `--help`, `--version` and a usage error never pay for them.
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from app.kit.errors import AppError
    from app.kit.logging import configure_logging
    from app.kit.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        # A MAYHOLD_* variable (or .env line) that is not what the setting takes: name it.
        for error in exc.errors():
            name = "MAYHOLD_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"mayhold: {name}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return _run(settings, args)
    except _UsageError as exc:
        print(f"mayhold: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:
        _print_error(exc)
        return 1
    except (ValueError, OSError) as exc:
        print(f"mayhold: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # The database unreachable, missing or refusing us: one line saying so, not a traceback.
        cause = getattr(exc, "orig", None) or exc
        print(f"mayhold: database error: {cause}", file=sys.stderr)
        return 1


def _run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the parsed command; its exit status."""
    if args.command == "serve":
        _serve(settings, args.host, args.port, args.workers)
    elif args.command == "demo":
        _demo(settings, args.host, args.port)
    elif args.command == "migrate":
        from app.kit.migrations import upgrade_to_head

        upgrade_to_head(settings)
        print(f"database migrated to head ({settings.dialect})")
    elif args.command == "ingest":
        loaded, created = asyncio.run(
            _ingest(
                settings,
                DatasetKind(args.kind),
                args.file,
                args.provider,
                args.as_of,
                args.mode,
                args.policy,
            )
        )
        print(loaded.model_dump_json(indent=2))
        if not created:
            print(
                "(these bytes were loaded before with the same parameters: nothing new written)",
                file=sys.stderr,
            )
    elif args.command == "keys":
        return _keys(settings, args)
    elif args.command == "policies":
        _policies(settings, args)
    elif args.command == "decisions":
        if args.decisions_command == "verify":
            return _decisions_verify(settings, args)
        if args.decisions_command == "export":
            return _decisions_export(settings, args)
        if args.decisions_command == "partitions":
            return _decisions_partitions(settings, args)
        if args.decisions_command == "archive":
            return _decisions_archive(settings, args)
        if args.decisions_command == "verify-archive":
            return _decisions_verify_archive(settings, args)
        print(
            asyncio.run(_checkpoint(settings, args.through_seq, args.archive, args.archive_sha256))
        )
    elif args.command == "checkpoints":
        _checkpoints_keygen(args.out)
    elif args.command == "lists":
        _lists_export(settings, args)
    return 0


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth.scopes import parse_scopes

    if args.keys_command == "create":
        try:
            scopes = parse_scopes(args.scopes)
        except ValueError as exc:
            print(f"mayhold: {exc}", file=sys.stderr)
            return 2
        issued = asyncio.run(_create_key(settings, args.name, scopes))
        print(
            f"created key {issued.principal.name!r} with scopes "
            f"{','.join(sorted(issued.principal.scopes))}; it is shown only now:"
        )
        print(issued.key)
    elif args.keys_command == "revoke":
        asyncio.run(_revoke_key(settings, args.name))
        print(f"revoked key {args.name!r}")
    else:
        for line in asyncio.run(_list_keys(settings)):
            print(line)
    return 0


def _policies(settings: Settings, args: argparse.Namespace) -> None:
    from app.policies import service as policy_service

    if args.policies_command == "load":
        content = args.file.read_bytes()
        fmt = policy_service.format_of_path(args.file)
        result = asyncio.run(_load_policy(settings, content, fmt))
        version = result.version
        note = "" if result.created else " (the same document is the latest draft)"
        print(
            f"key={result.policy.key} version={version.version} status={version.status} "
            f"sha256={version.sha256}{note}"
        )
    else:
        exported = asyncio.run(_export_policy(settings, args.key, args.version))
        # The bytes the version's sha256 covers and nothing else (no newline added):
        # `mayhold policies export KEY N | sha256sum` is the auditor's check.
        sys.stdout.buffer.write(exported)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    sys.exit(main())
