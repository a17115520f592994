"""The decision log over ten years (Postgres): partitions kept ahead, archiving, and checking an
archive alone.

**Partitions.** ``decisions`` is partitioned by ``seq`` range (the ``decisions_partitions``
migration); ``decisions_p<first seq, 19 digits>`` holds ``[start, end)``. ``keep_ahead`` keeps
``ahead`` empty partitions beyond the head, each sized for ``days`` (31) days at the busiest
UTC day of the last 30 and today so far (counted from ``(decided_at, seq)`` probes, one per
day boundary), and never smaller than ``min_rows``. It takes an advisory lock for its
transaction, so concurrent runners (the service's ``PartitionKeeper`` in each process, a
cron'd ``mayhold decisions partitions``) take turns and the later ones find nothing to do.
The writer never creates a partition: an insert past the last one fails, its callers get
503, and the next batch succeeds once the job has run.

**Archive** (``archive``): the oldest attached partition whose decisions are all below the
head's partition, in steps that each leave nothing changed if they fail before the next:

1. refuse unless the range ends exactly at that partition's end, no older partition still
   holds decisions, and it does not hold the head (or lie ahead of it);
2. verify the partition's decisions as ``GET /v1/decisions/verify`` does (each hash, each
   link, the query columns; the first links to the checkpoint at ``first - 1``, or genesis);
3. export them in seq order (``COPY (SELECT ... ORDER BY seq) TO STDOUT``, text format: the
   stored texts byte for byte), gzip (deterministic: no name, no time), SHA-256 of the file;
4. read the written file back and chain it again (``chain.chain_hash``): its last hash must be
   the one verify found;
5. record the checkpoint at the partition's last seq with the archive's URI and SHA-256
   (``service.record_checkpoint``: verified again, signed with ``MAYHOLD_CHECKPOINT_KEY_FILE``),
   then write the manifest beside the file;
6. ``DETACH PARTITION ... CONCURRENTLY`` (the detached table keeps an append-only trigger), and
   ``DROP`` it when asked.

**An archive alone** (``verify_archive``): the file's rows chain from the checkpoint before it
(or genesis) to its own checkpoint's hash, the file's SHA-256 is the one that checkpoint signs,
and the checkpoints' signatures verify with the trusted keys; the checkpoints come from the
live database or, offline, from the manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import hashlib
import itertools
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.schemas import Actor
from app.decisions.chain import GENESIS
from app.decisions.repository import (
    ARCHIVE_COLUMNS,
    DecisionRepository,
    Partition,
    PartitionRepository,
    PartitionRows,
    detach_partition,
)
from app.decisions.service import (
    _problem,
    _walk,
    check_checkpoints,
    record_checkpoint,
)
from app.decisions.signing import CheckpointSigner, CheckpointTrust, link_of
from app.kit.canonical import parse_rfc3339, rfc3339
from app.kit.engine import Database
from app.kit.errors import AppError, Conflict
from app.kit.files import AtomicFile
from app.kit.logging import get_logger
from app.kit.metrics import DECISION_PARTITION_ROOM, DECISION_PARTITION_RUN
from app.kit.time import utcnow
from app.models import DecisionCheckpoint

log = get_logger("mayhold.decisions.partitions")

ARCHIVE_FORMAT = "mayhold-decision-archive-1"
COPY_FORMAT = "postgresql-copy-text"
# How long partition DDL waits for its table lock before giving up (the job retries at its
# next run): queued behind a long reader, it would make every writer queue behind it too.
LOCK_TIMEOUT_MS = 5_000
# The volume a partition is sized for: this many days at the busiest recent day.
PARTITION_DAYS = 31
RECENT_DAYS = 30


class PostgresOnly(AppError):
    """Partitions exist on Postgres only; SQLite keeps the log in one table."""

    status = 409
    slug = "postgres-only"
    title = "Postgres only"


class ChainNotSound(Conflict):
    """The range to archive does not verify: nothing was written, recorded or detached."""


def _require_postgres(session: AsyncSession) -> None:
    if session.bind is None or session.bind.dialect.name != "postgresql":
        raise PostgresOnly(
            "Decision-log partitions and archives exist on Postgres only; on SQLite the log is "
            "one table and nothing needs doing."
        )


# -- keeping partitions ahead --------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionReport:
    """After ``keep_ahead``: the head's seq (None: empty log), the size new partitions got,
    every attached partition, and those just created."""

    head: int | None
    size: int
    partitions: list[Partition]
    created: list[Partition]

    @property
    def room(self) -> int:
        """How many more decisions the attached partitions take beyond the head."""
        top = max((p.end for p in self.partitions), default=1)
        return max(0, top - 1 - (self.head or 0))


async def partition_size(
    repository: PartitionRepository,
    head: int | None,
    now: dt.datetime,
    min_rows: int,
    days: int = PARTITION_DAYS,
) -> int:
    """``max(min_rows, days x the most decisions of one UTC day)``, the days being the last 30
    complete ones and today so far (a new deployment's first busy day counts at once). One
    probe of ``(decided_at, seq)`` per day boundary. ``days`` 0: ``min_rows``."""
    if head is None or days == 0:
        return min_rows
    midnight = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
    firsts = []
    for back in range(RECENT_DAYS, -1, -1):
        first = await repository.first_seq_from(midnight - dt.timedelta(days=back))
        firsts.append(head + 1 if first is None else first)
    firsts.append(head + 1)  # today so far
    busiest = max(b - a for a, b in itertools.pairwise(firsts))
    return max(min_rows, days * busiest)


async def keep_ahead(
    session: AsyncSession,
    *,
    ahead: int,
    min_rows: int,
    days: int = PARTITION_DAYS,
    now: dt.datetime | None = None,
) -> PartitionReport:
    """Create partitions until ``ahead`` empty ones lie beyond the head (see the module doc),
    each of ``partition_size``. Idempotent; the caller commits. ``PostgresOnly`` on SQLite."""
    _require_postgres(session)
    if ahead < 1 or min_rows < 1 or days < 0:
        raise ValueError("ahead and min_rows must be at least 1, days at least 0")
    repository = PartitionRepository(session)
    await repository.lock(LOCK_TIMEOUT_MS)
    head = await repository.head_seq()
    partitions = await repository.partitions()
    size = await partition_size(repository, head, now or utcnow(), min_rows, days)
    last = head or 0
    top = max((p.end for p in partitions), default=last + 1)
    empty = sum(1 for p in partitions if p.start > last)
    created: list[Partition] = []
    while empty < ahead:
        created.append(await repository.create(top, top + size))
        top += size
        empty += 1
    return PartitionReport(head, size, [*partitions, *created], created)


async def keep_ahead_once(
    database: Database, *, ahead: int, min_rows: int, days: int = PARTITION_DAYS
) -> PartitionReport:
    async with database.sessionmaker() as session, session.begin():
        return await keep_ahead(session, ahead=ahead, min_rows=min_rows, days=days)


class PartitionKeeper:
    """The service's background job (Postgres): ``keep_ahead`` at start, then every
    ``interval`` seconds. A failed run is logged and retried at the next one."""

    def __init__(
        self, database: Database, *, ahead: int, min_rows: int, days: int, interval: float
    ) -> None:
        self._database = database
        self._ahead = ahead
        self._min_rows = min_rows
        self._days = days
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        # Set once a run has succeeded (what a readiness check or a test can wait for).
        self.ran = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="decision-partitions")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            try:
                report = await keep_ahead_once(
                    self._database, ahead=self._ahead, min_rows=self._min_rows, days=self._days
                )
                self.ran.set()
                DECISION_PARTITION_ROOM.set(report.room)
                DECISION_PARTITION_RUN.set_to_current_time()
                if report.created:
                    log.info(
                        "decision partitions created",
                        partitions=[p.name for p in report.created],
                        size=report.size,
                    )
            except Exception:
                log.exception("keeping decision partitions ahead failed; retrying later")
            await asyncio.sleep(self._interval)


# -- the archive file ----------------------------------------------------------------------------

_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _copy_field(raw: str) -> str | None:
    """One field of COPY's text format: ``\\N`` is NULL; backslash escapes (COPY TO never
    writes octal or hex ones) stand for the character."""
    if raw == "\\N":
        return None
    if "\\" not in raw:
        return raw
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[1]), raw)


def read_archive(path: Path) -> Iterator[dict[str, str | None]]:
    """The rows of an archive file (gzip of COPY text lines, ``ARCHIVE_COLUMNS`` order)."""
    with gzip.open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip(b"\n").decode("utf-8").split("\t")
            if len(fields) != len(ARCHIVE_COLUMNS):
                raise ValueError(
                    f"{path}: line {number} has {len(fields)} fields, not {len(ARCHIVE_COLUMNS)}"
                )
            yield dict(zip(ARCHIVE_COLUMNS, map(_copy_field, fields), strict=True))


def _typed(row: dict[str, str | None]) -> SimpleNamespace:
    """An archive row with the types verify reads (as the database would return it)."""

    def need(name: str) -> str:
        value = row[name]
        if value is None:
            raise ValueError(f"{name} is null")
        return value

    key_id = row["requested_by_key_id"]
    return SimpleNamespace(
        seq=int(need("seq")),
        decision_id=uuid.UUID(need("decision_id")),
        decided_at=dt.datetime.fromisoformat(need("decided_at")),
        as_of=dt.datetime.fromisoformat(need("as_of")),
        policy_key=need("policy_key"),
        policy_version=int(need("policy_version")),
        policy_sha256=need("policy_sha256"),
        data_version=int(need("data_version")),
        isin=row["isin"],
        issuer_id=row["issuer_id"],
        verdict=need("verdict"),
        may_hold={"t": True, "f": False}[need("may_hold")],
        requested_by=need("requested_by"),
        requested_by_key_id=None if key_id is None else uuid.UUID(key_id),
        request_id=row["request_id"],
        request=need("request"),
        payload=need("payload"),
        prev_hash=need("prev_hash"),
        hash=need("hash"),
    )


@dataclass
class ArchiveContent:
    """What an archive file holds, chained: ``problem`` names its first bad row (or None)."""

    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_prev_hash: str | None = None
    last_hash: str | None = None
    first_decided_at: dt.datetime | None = None
    last_decided_at: dt.datetime | None = None
    sha256: str = ""
    problem: str | None = None
    hashes: dict[int, str] = field(default_factory=dict)  # at the seqs asked for


def chain_archive(path: Path, watch: Sequence[int] = ()) -> ArchiveContent:
    """Read an archive file and chain its rows: dense seqs, each prev_hash the previous row's
    hash, each hash recomputed from the stored texts, the query columns agreeing with the
    payload (as verify checks the live log). ``problem`` names the first bad row; the rest is
    still read (range, count, last hash). The first row's prev_hash is taken as given
    (what it must link to is the caller's to check). ``watch``: seqs whose hash to keep."""
    content = ArchiveContent()
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    content.sha256 = digest.hexdigest()
    wanted = set(watch)
    try:
        for raw_row in read_archive(path):
            row = _typed(raw_row)
            if content.first_seq is None:
                content.first_seq, content.first_prev_hash = row.seq, row.prev_hash
                content.first_decided_at = row.decided_at
                expected_seq, prev = row.seq, row.prev_hash
            problem = _problem(row, expected_seq, prev)
            if problem is not None and content.problem is None:
                # The first bad row is named; reading on still gives the file's range.
                content.problem = f"decision {row.seq} ({row.decision_id}): {problem}"
            content.rows += 1
            content.last_seq, content.last_hash = row.seq, row.hash
            content.last_decided_at = row.decided_at
            if row.seq in wanted:
                content.hashes[row.seq] = row.hash
            expected_seq, prev = row.seq + 1, row.hash
    except (OSError, EOFError, ValueError, KeyError, gzip.BadGzipFile) as exc:
        content.problem = f"the file cannot be read as an archive: {exc}"
    if content.problem is None and content.rows == 0:
        content.problem = "the file holds no decisions"
    return content


# -- archiving -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveResult:
    partition: Partition
    file: Path
    manifest: Path
    rows: int
    first_seq: int
    last_seq: int
    sha256: str
    checkpoint: DecisionCheckpoint
    dropped: bool


def _checkpoint_json(row: DecisionCheckpoint, previous: str) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "hash": row.hash,
        "decided_at": rfc3339(row.decided_at),
        "count": row.count,
        "previous_seq": row.previous_seq,
        "previous": previous,
        "recorded_at": rfc3339(row.recorded_at),
        "recorded_by": row.recorded_by,
        "archive": row.archive,
        "archive_sha256": row.archive_sha256,
        "key_id": row.key_id,
        "signature": row.signature,
    }


def _checkpoint_of(data: dict[str, Any]) -> tuple[DecisionCheckpoint, str]:
    """A checkpoint as a manifest states it, and the link it signs as ``previous``."""
    row = DecisionCheckpoint(
        seq=int(data["seq"]),
        hash=str(data["hash"]),
        decided_at=parse_rfc3339(data["decided_at"]),
        recorded_at=parse_rfc3339(data["recorded_at"]),
        recorded_by=str(data["recorded_by"]),
        archive=data.get("archive"),
        archive_sha256=data.get("archive_sha256"),
        previous_seq=data.get("previous_seq"),
        count=data.get("count"),
        key_id=data.get("key_id"),
        signature=data.get("signature"),
    )
    return row, str(data["previous"])


def _chain_links(rows: Sequence[DecisionCheckpoint]) -> list[str]:
    """The ``previous`` each checkpoint of the table signs (rows in seq order, from the first)."""
    links = []
    before: DecisionCheckpoint | None = None
    for row in rows:
        links.append("0" * 64 if before is None else link_of(before.signature, before.hash))
        before = row
    return links


def _out_paths(out_dir: Path, partition: Partition) -> tuple[Path, Path]:
    """The archive file and its manifest in ``out_dir`` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / f"{partition.name}.copy.gz", out_dir / f"{partition.name}.manifest.json"


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise Conflict(f"{path} exists already: not replaced. Nothing was changed.")


def _already_archived(file: Path, manifest: Path, checkpoint: DecisionCheckpoint) -> bool:
    """Whether ``file`` and ``manifest`` are the archive ``checkpoint`` vouches for (a run
    that recorded it and was interrupted before the detach)."""
    if not (file.exists() and manifest.exists()):
        return False
    return _sha256(file) == checkpoint.archive_sha256


def _adopted_archive_written(file: Path, manifest: Path, checkpoint: DecisionCheckpoint) -> bool:
    """Whether an earlier run adopting ``checkpoint`` wrote ``file`` and ``manifest`` (and was
    interrupted before the detach): the manifest ends at its hash and states the file's
    SHA-256."""
    if not (file.exists() and manifest.exists()):
        return False
    try:
        stated = read_manifest(manifest)
    except ValueError:
        return False
    return stated.get("last_hash") == checkpoint.hash and stated.get("file_sha256") == _sha256(file)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def _file_uri(path: Path) -> str:
    return path.resolve().as_uri()


@dataclass(frozen=True)
class _Target:
    """The partition to archive, what it holds, and where its archive goes."""

    partition: Partition
    held: PartitionRows
    first_seq: int  # held's, known not to be None
    file: Path
    manifest: Path
    # Set when a previous run recorded its checkpoint but did not detach it.
    recorded: DecisionCheckpoint | None
    # Set when a checkpoint without an archive (`mayhold decisions checkpoint`) already ends
    # the partition: the archive rests on it instead of recording its own.
    adopted: DecisionCheckpoint | None = None


async def _target(session: AsyncSession, through_seq: int, out_dir: Path) -> _Target:
    """Step 1: the partition ending at ``through_seq``, or a refusal (``Conflict``)."""
    _require_postgres(session)
    repository = PartitionRepository(session)
    partitions = await repository.partitions()
    head = await repository.head_seq()
    partition = next((p for p in partitions if p.last == through_seq), None)
    if partition is None:
        live = DecisionRepository(session)
        done = await live.checkpoint_before(through_seq)
        first_live = await live.first_seq()
        if (
            done is not None
            and done.seq == through_seq
            and (first_live is None or first_live > through_seq)
        ):
            raise Conflict(
                f"The decisions up to {through_seq} were archived already (checkpoint "
                f"{through_seq}, archive {done.archive or 'named in its manifest'}); their "
                "partition is no longer attached. Nothing was changed."
            )
        ends = ", ".join(f"{p.name} ends at {p.last}" for p in partitions) or "none"
        raise Conflict(
            f"Decision {through_seq} is not the last seq of a partition (an archive is one "
            f"whole partition; {ends}). Nothing was changed."
        )
    if head is None or head < partition.end:
        raise Conflict(
            f"{partition.name} holds the head of the log (or lies ahead of it): only a "
            "partition whose decisions are all older than the head's partition can be "
            "archived. Nothing was changed."
        )
    held = await repository.rows_in(partition)
    decisions = DecisionRepository(session)
    first_live = await decisions.first_seq()
    if held.count == 0 or held.first_seq is None:
        raise Conflict(f"{partition.name} holds no decisions: nothing to archive.")
    if first_live is not None and first_live < partition.start:
        older = next(p for p in partitions if p.start <= first_live < p.end)
        raise Conflict(
            f"{older.name} still holds older decisions: archive it first (archives leave "
            "the live log oldest first). Nothing was changed."
        )
    if held.last_seq != partition.last:
        raise Conflict(
            f"{partition.name} ends at {partition.last} but its last decision is "
            f"{held.last_seq}. Nothing was changed."
        )
    file, manifest = _out_paths(out_dir, partition)
    latest = await decisions.latest_checkpoint()
    if latest is not None and latest.seq == through_seq:
        if latest.archive_sha256 is None:
            # Recorded by `mayhold decisions checkpoint`, not by an archive: adopted. Its hash
            # vouches for every row of the file (the chain); the file's SHA-256 is then stated
            # by the manifest alone.
            if _adopted_archive_written(file, manifest, latest):
                return _Target(partition, held, held.first_seq, file, manifest, latest)
            _refuse_existing(file, manifest)
            return _Target(partition, held, held.first_seq, file, manifest, None, latest)
        if not _already_archived(file, manifest, latest):
            raise Conflict(
                f"Decision {through_seq} is checkpointed already by an archive run "
                f"({latest.archive}), but {file} and its manifest are not that archive: give "
                "the --out of the run that recorded it. Nothing was changed."
            )
        return _Target(partition, held, held.first_seq, file, manifest, latest)
    _refuse_existing(file, manifest)
    return _Target(partition, held, held.first_seq, file, manifest, None)


async def archive(
    database: Database,
    *,
    through_seq: int,
    out_dir: Path,
    actor: Actor,
    signer: CheckpointSigner | None,
    trust: CheckpointTrust,
    archive_uri: str | None = None,
    drop: bool = False,
) -> ArchiveResult:
    """Archive the partition ending at ``through_seq`` (see the module doc); refusals change
    nothing (``Conflict``; ``ChainNotSound`` when it does not verify; ``PostgresOnly``).

    Run again after an interruption between the checkpoint and the detach (with the same
    ``out_dir``), it finds its archive and checkpoint and only detaches."""
    sessionmaker: async_sessionmaker[AsyncSession] = database.sessionmaker
    async with sessionmaker() as session, session.begin():
        target = await _target(session, through_seq, out_dir)
    partition, held = target.partition, target.held
    if target.recorded is not None:
        checkpoint = target.recorded
        sha256 = checkpoint.archive_sha256 or _sha256(target.file)
    else:
        checkpoint, sha256 = await _export(
            database, target, actor, signer, trust, archive_uri or _file_uri(target.file)
        )
    # 6. Out of the live table.
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await detach_partition(autocommit, partition.name)
    async with sessionmaker() as session, session.begin():
        repository = PartitionRepository(session)
        if drop:
            await repository.drop(partition.name)
        else:
            await repository.protect_detached(partition.name)
    return ArchiveResult(
        partition,
        target.file,
        target.manifest,
        held.count,
        target.first_seq,
        through_seq,
        sha256,
        checkpoint,
        drop,
    )


async def _export(
    database: Database,
    target: _Target,
    actor: Actor,
    signer: CheckpointSigner | None,
    trust: CheckpointTrust,
    uri: str,
) -> tuple[DecisionCheckpoint, str]:
    """Steps 2-5: verify, export, re-verify the file, checkpoint, manifest."""
    partition, held, file = target.partition, target.held, target.file
    first, last = target.first_seq, partition.last
    sessionmaker = database.sessionmaker
    async with sessionmaker() as session, session.begin():
        # 2. Verify, as GET /v1/decisions/verify does.
        walked = await _walk(DecisionRepository(session), first, last)
        if not walked.ok:
            raise ChainNotSound(
                f"The decisions of {partition.name} do not verify: decision "
                f"{walked.first_bad_seq} ({walked.first_bad_id}): {walked.problem}. Nothing "
                "was changed."
            )
        # 3. Export, gzip (no name, no time: the same rows give the same bytes).
        atomic = AtomicFile(file, replace=False)
        try:
            compressed = gzip.GzipFile(filename="", mode="wb", fileobj=atomic.file, mtime=0)

            async def write(chunk: bytes) -> None:
                compressed.write(chunk)

            await PartitionRepository(session).export(partition, write)
            compressed.close()
            atomic.commit()
        finally:
            atomic.discard()
    # 4. The file, read back and chained again.
    try:
        content = await asyncio.to_thread(chain_archive, file)
        if content.problem is not None or (
            content.first_seq,
            content.last_seq,
            content.rows,
            content.last_hash,
        ) != (first, last, held.count, walked.last_hash):
            raise ChainNotSound(
                f"The archive written to {file} does not reproduce the partition "
                f"({content.problem or 'its range, count or last hash differ'}); it was "
                "removed. Nothing was recorded or detached."
            )
    except BaseException:
        _remove(file)
        raise
    # 5. The checkpoint (verified again, signed), then the manifest.
    if target.adopted is not None:
        checkpoint = target.adopted
    else:
        async with sessionmaker() as session, session.begin():
            checkpoint = await record_checkpoint(
                session,
                last,
                actor,
                archive=uri,
                archive_sha256=content.sha256,
                signer=signer,
                trust=trust,
            )
    async with sessionmaker() as session:
        rows = await DecisionRepository(session).checkpoints_decided_before(None)
    stated = [
        _checkpoint_json(row, link)
        for row, link in zip(rows, _chain_links(rows), strict=True)
        if first - 1 <= row.seq <= last
    ]
    manifest = {
        "format": ARCHIVE_FORMAT,
        "partition": partition.name,
        "file": file.name,
        "archive": uri,
        "compression": "gzip",
        "row_format": COPY_FORMAT,
        "columns": list(ARCHIVE_COLUMNS),
        "first_seq": first,
        "last_seq": last,
        "rows": held.count,
        "first_decided_at": _time(held.first_decided_at),
        "last_decided_at": _time(held.last_decided_at),
        "first_prev_hash": content.first_prev_hash,
        "last_hash": content.last_hash,
        "file_sha256": content.sha256,
        # The checkpoints from the one the first decision links to (absent: genesis) to this
        # archive's own: what an offline check needs (their signatures chain).
        "checkpoints": stated,
    }
    written = AtomicFile(target.manifest, replace=False)
    try:
        written.file.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
        written.commit()
    finally:
        written.discard()
    return checkpoint, content.sha256


# -- checking an archive alone -------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveCheck:
    """What ``verify_archive`` found; ``ok`` when ``problems`` is empty."""

    file: str
    sha256: str
    rows: int
    first_seq: int | None
    last_seq: int | None
    checkpoint_seq: int | None
    checkpoint_status: str | None
    anchor: str  # "genesis", or "checkpoint <seq>"
    source: str  # where the checkpoints came from: "database" or "manifest"
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        loaded = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(loaded, dict) or loaded.get("format") != ARCHIVE_FORMAT:
        raise ValueError(f"{path} is not a {ARCHIVE_FORMAT} manifest")
    return loaded


def verify_archive(
    path: Path,
    manifest: dict[str, Any] | None,
    checkpoints: Sequence[DecisionCheckpoint] | None,
    trust: CheckpointTrust,
) -> ArchiveCheck:
    """Check an archive file alone (see the module doc).

    ``checkpoints``: every checkpoint of the live database in seq order (its whole signature
    chain is checked); None: offline, the manifest's ``checkpoints`` are used instead (their
    signatures and links checked from the first it states). The manifest, when given, must
    agree with the file.
    """
    problems: list[str] = []
    content = chain_archive(path)
    if content.problem is not None:
        problems.append(content.problem)
    source = "database"
    if checkpoints is None:
        if manifest is None:
            raise ValueError("offline, the archive's manifest is needed (its checkpoints)")
        source = "manifest"
        stated = [_checkpoint_of(item) for item in manifest.get("checkpoints", [])]
        rows = [row for row, _ in stated]
        before = None
        if stated:
            before = (stated[0][0].previous_seq or 0, stated[0][1])
        checks = check_checkpoints(rows, trust, before=before)
    else:
        rows = list(checkpoints)
        checks = check_checkpoints(rows, trust)
    by_seq = {row.seq: row for row in rows}
    status = {check.seq: check for check in checks}
    anchor = "genesis"
    own: DecisionCheckpoint | None = None
    if content.first_seq is not None and content.last_seq is not None:
        first, last = content.first_seq, content.last_seq
        if first == 1:
            if content.first_prev_hash != GENESIS:
                problems.append("the first decision is seq 1 but does not link to genesis")
        else:
            anchor_row = by_seq.get(first - 1)
            anchor = f"checkpoint {first - 1}"
            if anchor_row is None:
                problems.append(
                    f"there is no checkpoint {first - 1} for the first decision to link to"
                )
            elif anchor_row.hash != content.first_prev_hash:
                problems.append(
                    f"the first decision's prev_hash is not checkpoint {first - 1}'s hash"
                )
        own = by_seq.get(last)
        if own is None:
            problems.append(f"there is no checkpoint {last} for the archive's last decision")
        else:
            if own.hash != content.last_hash:
                problems.append(f"the last decision's hash is not checkpoint {last}'s hash")
            # None: a checkpoint recorded without an archive and adopted by one (its hash
            # vouches for the rows; the manifest states the file's SHA-256).
            if own.archive_sha256 is not None and own.archive_sha256 != content.sha256:
                problems.append(
                    f"the file's SHA-256 {content.sha256} is not the one checkpoint {last} "
                    f"signs ({own.archive_sha256})"
                )
        inside = [seq for seq in by_seq if first <= seq < last]
        if inside:
            within = chain_archive(path, inside).hashes
            problems.extend(
                f"checkpoint {seq} differs from the archive's decision {seq}"
                for seq in inside
                if within.get(seq) != by_seq[seq].hash
            )
        for check in checks:
            if check.seq > last:
                break
            if check.status == "signed" or (check.status == "unsigned" and check.problem is None):
                continue
            problems.append(f"checkpoint {check.seq} ({check.status}): {check.problem}")
    if manifest is not None:
        expected = {
            "first_seq": content.first_seq,
            "last_seq": content.last_seq,
            "rows": content.rows,
            "first_prev_hash": content.first_prev_hash,
            "last_hash": content.last_hash,
            "file_sha256": content.sha256,
        }
        problems.extend(
            f"the manifest's {name} ({manifest.get(name)}) is not the file's ({value})"
            for name, value in expected.items()
            if manifest.get(name) != value
        )
    own_check = status.get(content.last_seq) if content.last_seq is not None else None
    return ArchiveCheck(
        file=str(path),
        sha256=content.sha256,
        rows=content.rows,
        first_seq=content.first_seq,
        last_seq=content.last_seq,
        checkpoint_seq=None if own is None else own.seq,
        checkpoint_status=None if own_check is None else own_check.status,
        anchor=anchor,
        source=source,
        problems=problems,
    )


async def live_checkpoints(database: Database) -> list[DecisionCheckpoint]:
    async with database.sessionmaker() as session:
        return list(await DecisionRepository(session).checkpoints_decided_before(None))
