"""The log built for ten years, on Postgres at a small scale (partitions of 2,000 decisions):
partitions kept ahead of the head, the cut-over of an existing log, append-only partitions,
the writer failing closed past the last partition, archiving a partition end to end, and
checking an archive alone (tampering with the file, the manifest or the checkpoint is found).
SQLite keeps one table: the partition commands say they are Postgres-only."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.decisions import partitions, service
from app.decisions.chain import chain_hash
from app.decisions.partitions import ChainNotSound, PostgresOnly
from app.decisions.repository import Partition, PartitionRepository
from app.decisions.signing import (
    CheckpointSigner,
    CheckpointTrust,
    generate_key_pair,
    message,
)
from app.kit.db import Database
from app.kit.errors import Conflict, DatabaseUnavailable, NotFound
from app.kit.metrics import REGISTRY
from app.kit.migrations import alembic_config, upgrade_to_head_async
from app.kit.settings import Settings
from app.kit.time import utcnow
from app.main import create_app
from tests.support.databases import scratch_database
from tests.support.decisions import ORACLE, entry, running_log

SMALL = 2_000
FIRST = "decisions_p0000000000000000001"


def name(start: int) -> str:
    return f"decisions_p{start:019d}"


@dataclasses.dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    signer: CheckpointSigner
    trust: CheckpointTrust


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    private, public, _ = generate_key_pair(tmp_path / "keys")
    return Keys(
        private,
        public,
        CheckpointSigner.from_file(private),
        CheckpointTrust.from_files(None, [public], require_signed=True),
    )


@asynccontextmanager
async def partitioned(tmp_path: Path) -> AsyncIterator[tuple[str, Database]]:
    """A new Postgres database migrated with partitions of 2,000 decisions."""
    async with scratch_database("postgresql", tmp_path) as url:
        await upgrade_to_head_async(Settings(database_url=url, decision_partition_min_rows=SMALL))
        database = Database.from_settings(Settings(database_url=url))
        try:
            yield url, database
        finally:
            await database.dispose()


async def attached(database: Database) -> list[Partition]:
    async with database.sessionmaker() as session:
        return await PartitionRepository(session).partitions()


async def keep(database: Database, ahead: int = 2) -> partitions.PartitionReport:
    """Partitions of the minimum size (``days=0``: not sized from the volume)."""
    return await partitions.keep_ahead_once(database, ahead=ahead, min_rows=SMALL, days=0)


async def append(database: Database, start: int, count: int) -> list[dict[str, Any]]:
    """``count`` decisions through the service's own writer (a connection of its own), 500
    a call, keeping partitions ahead as the service's job would."""
    decided: list[dict[str, Any]] = []
    async with running_log(database, dedicated=True) as log:
        for n in range(start, start + count, 500):
            decided += await log.append([entry(i) for i in range(n, min(n + 500, start + count))])
            await keep(database)
    return decided


async def placement(database: Database) -> dict[str, tuple[int, int, int]]:
    """Each partition's (first seq, last seq, rows), as Postgres stored them."""
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT tableoid::regclass::text, min(seq), max(seq), count(*) FROM decisions "
                "GROUP BY 1"
            )
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def checkpoint_count(database: Database) -> int:
    async with database.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM decision_checkpoints"))).one()[0])


async def verify_live(database: Database, trust: CheckpointTrust) -> Any:
    async with database.sessionmaker() as session:
        return await service.verify(session, None, None, trust)


async def archive(
    database: Database, keys: Keys, through_seq: int, out: Path, **kwargs: Any
) -> partitions.ArchiveResult:
    return await partitions.archive(
        database,
        through_seq=through_seq,
        out_dir=out,
        actor=ORACLE,
        signer=keys.signer,
        trust=keys.trust,
        **kwargs,
    )


async def check_online(database: Database, file: Path, trust: CheckpointTrust) -> Any:
    checkpoints = await partitions.live_checkpoints(database)
    manifest = partitions.read_manifest(manifest_of(file))
    return partitions.verify_archive(file, manifest, checkpoints, trust)


def check_offline(file: Path, trust: CheckpointTrust, manifest: Path | None = None) -> Any:
    loaded = partitions.read_manifest(manifest or manifest_of(file))
    return partitions.verify_archive(file, loaded, None, trust)


def manifest_of(file: Path) -> Path:
    return file.with_name(file.name.removesuffix(".copy.gz") + ".manifest.json")


# -- partitions ahead ----------------------------------------------------------------------------


async def test_partitions_are_kept_ahead_idempotently_and_rows_land_in_their_range(
    tmp_path: Path,
) -> None:
    async with partitioned(tmp_path) as (_, database):
        # The migration made room for the first decisions.
        assert await attached(database) == [
            Partition(FIRST, 1, 2001),
            Partition(name(2001), 2001, 4001),
        ]
        report = await keep(database)
        assert (report.head, report.created) == (None, [])

        await append(database, 0, 2_500)
        assert await placement(database) == {FIRST: (1, 2000, 2000), name(2001): (2001, 2500, 500)}
        # The head is in the second partition: two empty ones beyond it, made once.
        assert [p.start for p in await attached(database)] == [1, 2001, 4001, 6001]
        again = await keep(database)
        assert (again.head, again.created, again.size) == (2500, [], SMALL)

        # Runners at once (several service processes, a cron job): they take turns, and the
        # partitions ahead are made once.
        reports = await asyncio.gather(
            *(
                partitions.keep_ahead_once(database, ahead=4, min_rows=SMALL, days=0)
                for _ in range(4)
            )
        )
        assert sum(len(r.created) for r in reports) == 2
        assert [p.start for p in await attached(database)] == [1, 2001, 4001, 6001, 8001, 10001]

        # Sized from volume: 31 days at the busiest day (today's 2,500, seen today and from
        # tomorrow), never below the minimum.
        async with database.sessionmaker() as session, session.begin():
            sized = await partitions.keep_ahead(
                session, ahead=5, min_rows=SMALL, now=utcnow() + dt.timedelta(days=1)
            )
            repository = PartitionRepository(session)
            today = await partitions.partition_size(repository, 2500, utcnow(), SMALL)
            assert today == 31 * 2_500
            small = await partitions.partition_size(repository, 2500, utcnow(), 10**6)
            assert small == 10**6
        assert sized.size == 31 * 2_500
        assert sized.created == [Partition(name(12001), 12001, 12001 + 31 * 2_500)]


async def test_the_writer_fails_closed_past_the_last_partition_and_recovers(
    tmp_path: Path,
) -> None:
    async with partitioned(tmp_path) as (_, database):
        async with running_log(database, dedicated=True) as log:
            for n in range(0, 4_000, 1_000):
                await log.append([entry(i) for i in range(n, n + 1_000)])
            # No partition for seq 4001: nothing is decided (503), nothing is written.
            with pytest.raises(DatabaseUnavailable, match="no partition for the next decisions"):
                await log.append([entry(4_000)])
            assert (await placement(database)).get(name(4001)) is None
            await keep(database)
            [decided] = await log.append([entry(4_001)])
        assert (await placement(database))[name(4001)] == (4001, 4001, 1)
        async with database.sessionmaker() as session:
            stored = await service.get_decision(session, uuid.UUID(decided["decision_id"]))
        assert stored["audit"]["seq"] == 4001
        result = await verify_live(database, CheckpointTrust())
        assert (result.ok, result.checked) == (True, 4001)


async def test_partitions_are_append_only_directly_too(tmp_path: Path) -> None:
    async with partitioned(tmp_path) as (_, database):
        await append(database, 0, 10)
        statements = [
            f"{verb} {table}{rest}"
            for table in ("decisions", FIRST)
            for verb, rest in (
                ("UPDATE", " SET verdict = 'allowed'"),
                ("DELETE FROM", ""),
                ("TRUNCATE", ""),
            )
        ]
        # Empty partitions (a row trigger has nothing to fire on there), one made by the job.
        await keep(database, ahead=3)
        statements += [f"TRUNCATE {name(2001)}", f"TRUNCATE {name(4001)}"]
        for statement in statements:
            with pytest.raises(DBAPIError, match="append-only"):
                async with database.engine.begin() as conn:
                    await conn.execute(text(statement))
        assert (await placement(database))[FIRST] == (1, 10, 10)


async def test_an_existing_log_becomes_the_first_partition(tmp_path: Path) -> None:
    async with scratch_database("postgresql", tmp_path) as url:
        settings = Settings(database_url=url, decision_partition_min_rows=SMALL)
        config = alembic_config(settings)
        await asyncio.to_thread(command.upgrade, config, "20261130_decision_sequencer")
        database = Database.from_settings(Settings(database_url=url))
        try:
            async with running_log(database) as log:
                before = await log.append([entry(n) for n in range(300)])
            await asyncio.to_thread(command.upgrade, config, "head")
            assert await attached(database) == [
                Partition(FIRST, 1, 301),
                Partition(name(301), 301, 2301),
                Partition(name(2301), 2301, 4301),
            ]
            with pytest.raises(DBAPIError, match="append-only"):
                async with database.engine.begin() as conn:
                    await conn.execute(text(f"TRUNCATE {FIRST}"))
            with pytest.raises(DBAPIError, match="append-only"):
                async with database.engine.begin() as conn:
                    await conn.execute(text(f"DELETE FROM {FIRST} WHERE seq = 1"))
            async with running_log(database, dedicated=True) as log:
                after = await log.append([entry(300)])
            assert (await placement(database))[name(301)] == (301, 301, 1)
            async with database.sessionmaker() as session:
                for decided in (before[0], after[0]):
                    found = await service.get_decision(session, uuid.UUID(decided["decision_id"]))
                    assert found["decision_id"] == decided["decision_id"]
            assert (await verify_live(database, CheckpointTrust())).ok
            # The way back: one table with every attached row.
            await asyncio.to_thread(command.downgrade, config, "-1")
            async with database.engine.connect() as conn:
                kind = await conn.execute(
                    text("SELECT relkind::text FROM pg_class WHERE relname = 'decisions'")
                )
                assert kind.scalar_one() == "r"
            assert (await verify_live(database, CheckpointTrust())).checked == 301
            await asyncio.to_thread(command.upgrade, config, "head")
            await asyncio.to_thread(command.check, config)
        finally:
            await database.dispose()


async def test_the_service_keeps_partitions_ahead_in_the_background(tmp_path: Path) -> None:
    async with partitioned(tmp_path) as (url, database):
        app = create_app(
            Settings(
                database_url=url,
                index_enabled=False,
                decision_partition_min_rows=SMALL,
                decision_partition_days=0,
                decision_partitions_ahead=4,
            )
        )
        async with app.router.lifespan_context(app):
            keeper = app.state.partition_keeper
            await asyncio.wait_for(keeper.ran.wait(), timeout=60)
        assert [p.start for p in await attached(database)] == [1, 2001, 4001, 6001]
        # /metrics shows the room left ahead of the head (an empty log: all four partitions)
        room = REGISTRY.get_sample_value("mayhold_decision_partition_room_decisions")
        assert room == 8000
        assert REGISTRY.get_sample_value(
            "mayhold_decision_partition_last_success_timestamp_seconds"
        )


# -- archiving -----------------------------------------------------------------------------------


async def test_archive_end_to_end_then_verify_live_and_each_archive_alone(
    tmp_path: Path, keys: Keys
) -> None:
    out = tmp_path / "archive"
    async with partitioned(tmp_path) as (_, database):
        decided = await append(database, 0, 4_500)
        first = await archive(database, keys, 2000, out)
        assert (first.partition.name, first.first_seq, first.last_seq, first.rows) == (
            FIRST,
            1,
            2000,
            2000,
        )
        assert first.checkpoint.key_id == keys.signer.key_id
        written = hashlib.sha256(first.file.read_bytes()).hexdigest()
        assert first.checkpoint.archive_sha256 == written
        assert [p.start for p in await attached(database)] == [2001, 4001, 6001, 8001]
        # Detached, kept, still append-only.
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.execute(text(f"UPDATE {FIRST} SET verdict = 'allowed'"))

        # The live log verifies across the boundary: decision 2001 links to checkpoint 2000.
        live = await verify_live(database, keys.trust)
        assert (live.ok, live.checked, live.from_seq, live.checkpoint_seq) == (
            True,
            2500,
            2001,
            2000,
        )
        assert [c.status for c in live.checkpoints] == ["signed"]
        async with database.sessionmaker() as session:
            gone = uuid.UUID(decided[0]["decision_id"])
            with pytest.raises(
                NotFound,
                match="live log, which starts at seq 2001; the decisions up to 2000 were archived",
            ):
                await service.get_decision(session, gone)
            kept = await service.get_decision(session, uuid.UUID(decided[4_499]["decision_id"]))
            assert kept["audit"]["seq"] == 4500

        # The file holds the stored rows byte for byte: they chain again, from genesis.
        manifest = json.loads(manifest_of(first.file).read_text())
        assert manifest["first_prev_hash"] == "0" * 64
        assert (manifest["rows"], manifest["file_sha256"]) == (2000, first.sha256)
        assert [c["seq"] for c in manifest["checkpoints"]] == [2000]
        for check in (
            await check_online(database, first.file, keys.trust),
            check_offline(first.file, keys.trust),
        ):
            assert check.ok, check.problems
            assert (check.rows, check.checkpoint_seq, check.checkpoint_status) == (
                2000,
                2000,
                "signed",
            )

        # The next one links to the first archive's checkpoint, live and alone; dropped. A
        # writer connected all along keeps appending across the detach.
        async with running_log(database, dedicated=True) as log:
            await log.append([entry(4_500)])
            second = await archive(database, keys, 4000, out, drop=True)
            [last] = await log.append([entry(4_501)])
        async with database.sessionmaker() as session:
            stored = await service.get_decision(session, uuid.UUID(last["decision_id"]))
        assert stored["audit"]["seq"] == 4502
        assert second.first_seq == 2001
        async with database.engine.connect() as conn:
            exists = await conn.execute(text(f"SELECT to_regclass('{name(2001)}')"))
            assert exists.scalar_one() is None
        for check in (
            await check_online(database, second.file, keys.trust),
            check_offline(second.file, keys.trust),
        ):
            assert check.ok, check.problems
            assert check.anchor == "checkpoint 2000"
        live = await verify_live(database, keys.trust)
        assert (live.ok, live.checked, live.checkpoint_seq) == (True, 502, 4000)
        # Verify-archive with a key it was not told to trust: not vouched for.
        stranger = CheckpointTrust(require_signed=True)
        assert not check_offline(first.file, stranger).ok


async def test_an_archive_restores_byte_for_byte_into_another_database(
    tmp_path: Path, keys: Keys
) -> None:
    """``COPY decisions FROM STDIN`` of the unzipped file into a new database gives the rows
    the detached partition holds, byte for byte, and they verify there from genesis."""
    async with partitioned(tmp_path / "live") as (_, database):
        await append(database, 0, 2_500)
        done = await archive(database, keys, 2000, tmp_path / "archive")
        digest = (
            "SELECT md5(string_agg(concat_ws('|', seq, decision_id, decided_at, as_of, "
            "policy_key, policy_version, policy_sha256, data_version, isin, issuer_id, verdict, "
            "may_hold, requested_by, requested_by_key_id, request_id, request, payload, "
            "prev_hash, hash), E'\\n' ORDER BY seq)) FROM {table}"
        )
        async with database.engine.connect() as conn:
            original = (await conn.execute(text(digest.format(table=FIRST)))).scalar_one()
        manifest = partitions.read_manifest(manifest_of(done.file))
        async with partitioned(tmp_path / "restored") as (_, restored):
            async with restored.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                columns = manifest["columns"]
                with gzip.open(done.file, "rb") as rows:
                    await driver.copy_to_table("decisions", source=rows, columns=columns)
                copied = (await conn.execute(text(digest.format(table="decisions")))).scalar_one()
            assert copied == original
            result = await verify_live(restored, CheckpointTrust())
            assert (result.ok, result.checked, result.last_hash) == (
                True,
                2000,
                manifest["last_hash"],
            )


async def test_archive_refusals_change_nothing(tmp_path: Path, keys: Keys) -> None:
    out = tmp_path / "archive"
    async with partitioned(tmp_path) as (_, database):
        await append(database, 0, 4_500)
        layout = await attached(database)

        async def refused(error: type[Exception], match: str, through_seq: int) -> None:
            with pytest.raises(error, match=match):
                await archive(database, keys, through_seq, out)
            assert await attached(database) == layout
            assert await checkpoint_count(database) == 0
            assert not out.exists() or list(out.iterdir()) == []

        await refused(Conflict, "not the last seq of a partition", 1999)
        await refused(Conflict, "holds the head", 6000)
        await refused(Conflict, f"{FIRST} still holds older decisions", 4000)
        # A decision rewritten behind the triggers' back: the partition does not verify.
        async with database.engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {FIRST} DISABLE TRIGGER USER"))
            await conn.execute(
                text(
                    f"UPDATE {FIRST} SET payload = replace(payload, 'Zürich', 'Zurich') "
                    "WHERE seq = 17"
                )
            )
            await conn.execute(text(f"ALTER TABLE {FIRST} ENABLE TRIGGER USER"))
        await refused(ChainNotSound, "decision 17", 2000)


async def test_an_archive_interrupted_before_the_detach_resumes(tmp_path: Path, keys: Keys) -> None:
    out = tmp_path / "archive"
    async with partitioned(tmp_path) as (_, database):
        await append(database, 0, 2_500)
        # A run that recorded its checkpoint and stopped before the detach.
        async with database.sessionmaker() as session:
            target = await partitions._target(session, 2000, out)
        await partitions._export(database, target, ORACLE, keys.signer, keys.trust, "s3://a/b")
        assert (await attached(database))[0].start == 1
        # Elsewhere, it is refused (the checkpoint names another archive).
        with pytest.raises(Conflict, match="checkpointed already"):
            await archive(database, keys, 2000, tmp_path / "elsewhere")
        resumed = await archive(database, keys, 2000, out)
        assert resumed.checkpoint.archive == "s3://a/b"
        assert (await attached(database))[0].start == 2001
        assert await checkpoint_count(database) == 1
        assert check_offline(resumed.file, keys.trust).ok


async def test_a_plain_checkpoint_at_a_partition_s_end_is_adopted_by_its_archive(
    tmp_path: Path, keys: Keys
) -> None:
    """`mayhold decisions checkpoint --through-seq 2000` before the archive (checkpoints only
    move forward, so the archive cannot record its own): the archive rests on that checkpoint,
    whose hash vouches for every row of the file; once archived, asking again says so."""
    out = tmp_path / "archive"
    async with partitioned(tmp_path) as (_, database):
        await append(database, 0, 2_500)
        async with database.sessionmaker() as session, session.begin():
            plain = await service.record_checkpoint(
                session, 2000, ORACLE, signer=keys.signer, trust=keys.trust
            )
        assert plain.archive is None
        done = await archive(database, keys, 2000, out)
        assert (done.checkpoint.seq, done.checkpoint.archive) == (2000, None)
        assert await checkpoint_count(database) == 1
        assert (await attached(database))[0].start == 2001
        assert done.sha256 == hashlib.sha256(done.file.read_bytes()).hexdigest()
        assert json.loads(manifest_of(done.file).read_text())["file_sha256"] == done.sha256
        online = await check_online(database, done.file, keys.trust)
        assert online.ok, online.problems
        offline = check_offline(done.file, keys.trust)
        assert offline.ok, offline.problems
        # The rows are still proven by the checkpoint's hash: one altered row is found.
        forged = tmp_path / "forged.copy.gz"
        rows = gzip.decompress(done.file.read_bytes())
        forged.write_bytes(gzip.compress(rows.replace("Zürich".encode(), b"Zurich", 1)))
        assert not check_offline(forged, keys.trust, manifest_of(done.file)).ok
        assert (await verify_live(database, keys.trust)).ok
        with pytest.raises(Conflict, match="were archived already"):
            await archive(database, keys, 2000, tmp_path / "again")


async def test_offline_archive_checks_trust_the_configured_key_file(
    tmp_path: Path, keys: Keys
) -> None:
    """The key file's public part is trusted by every verify, the offline check of an archive
    too (the fresh-user report: online signed, offline unknown_key)."""
    out = tmp_path / "archive"
    async with partitioned(tmp_path) as (url, database):
        await append(database, 0, 2_500)
        done = await archive(database, keys, 2000, out)
    env = {"MAYHOLD_CHECKPOINT_KEY_FILE": str(keys.private)}
    result = run(
        url, "verify-archive", str(done.file), "--offline", "--manifest",
        str(manifest_of(done.file)), **env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# -- tampering with an archive -------------------------------------------------------------------


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def forge(file: Path, seq: int) -> str:
    """Rewrite one decision of an archive and re-chain every hash after it, as a forger with
    the file would; returns the new last hash."""
    rows = list(partitions.read_archive(file))
    prev = rows[0]["prev_hash"]
    for row in rows:
        if row["seq"] == str(seq):
            row["payload"] = str(row["payload"]).replace("Zürich", "Zurich")
        row["prev_hash"] = prev
        row["hash"] = chain_hash(
            str(prev),
            seq=int(str(row["seq"])),
            decision_id=str(row["decision_id"]),
            requested_by=str(row["requested_by"]),
            requested_by_key_id=row["requested_by_key_id"],
            request_id=row["request_id"],
            request=str(row["request"]),
            payload=str(row["payload"]),
        )
        prev = row["hash"]
    lines = "".join("\t".join(map(_copy_text, row.values())) + "\n" for row in rows)
    file.write_bytes(gzip.compress(lines.encode("utf-8"), mtime=0))
    return str(prev)


async def test_tampering_with_the_file_the_manifest_or_the_checkpoint_is_found(
    tmp_path: Path, keys: Keys
) -> None:
    out = tmp_path / "archive"
    async with partitioned(tmp_path) as (_, database):
        await append(database, 0, 2_500)
        done = await archive(database, keys, 2000, out)
        manifest_path = manifest_of(done.file)
        original_file, original_manifest = done.file.read_bytes(), manifest_path.read_text()

        # One decision altered in the file: its hash no longer matches, nor the file's SHA-256.
        forged = out / "forged.copy.gz"
        rows = gzip.decompress(original_file).replace("Zürich".encode(), b"Zurich", 1)
        forged.write_bytes(gzip.compress(rows, mtime=0))
        check = check_offline(forged, keys.trust, manifest_path)
        assert not check.ok
        assert any("decision 1 " in p and "altered" in p for p in check.problems)
        assert any("SHA-256" in p for p in check.problems)

        # The whole file re-chained, and the manifest rewritten to match (its checkpoint too):
        # the checkpoint's signature no longer verifies.
        last_hash = forge(done.file, 17)
        sha = hashlib.sha256(done.file.read_bytes()).hexdigest()
        manifest = json.loads(original_manifest)
        manifest |= {"last_hash": last_hash, "file_sha256": sha}
        manifest["checkpoints"][-1] |= {"hash": last_hash, "archive_sha256": sha}
        manifest_path.write_text(json.dumps(manifest))
        check = check_offline(done.file, keys.trust)
        assert not check.ok
        assert check.checkpoint_status == "bad_signature"
        assert check.problems == [
            "checkpoint 2000 (bad_signature): its signature (key "
            f"{keys.signer.key_id}) does not match it: the checkpoint, or the link to the one "
            "before it, was rewritten"
        ]
        # ... and re-signed by the forger's own key: a key nobody trusts.
        _, _, _ = generate_key_pair(tmp_path / "forger")
        forger = CheckpointSigner.from_file(tmp_path / "forger" / "checkpoint-signing-key.pem")
        stated = manifest["checkpoints"][-1]
        stated["key_id"] = forger.key_id
        stated["signature"] = forger.sign(
            message(
                seq=stated["seq"],
                hash=stated["hash"],
                decided_at=dt.datetime.fromisoformat(stated["decided_at"]),
                count=stated["count"],
                previous_seq=stated["previous_seq"],
                previous=stated["previous"],
                recorded_at=dt.datetime.fromisoformat(stated["recorded_at"]),
                recorded_by=stated["recorded_by"],
                key_id=forger.key_id,
                archive=stated["archive"],
                archive_sha256=stated["archive_sha256"],
            )
        )
        manifest_path.write_text(json.dumps(manifest))
        assert check_offline(done.file, keys.trust).checkpoint_status == "unknown_key"

        # The same rewrite of the file and of the checkpoint table, checked against the
        # database: the stored checkpoint no longer verifies either.
        async with database.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE decision_checkpoints DISABLE TRIGGER USER"))
            await conn.execute(
                text("UPDATE decision_checkpoints SET hash = :h, archive_sha256 = :s"),
                {"h": last_hash, "s": sha},
            )
            await conn.execute(text("ALTER TABLE decision_checkpoints ENABLE TRIGGER USER"))
        manifest_path.write_text(original_manifest)
        checkpoints = await partitions.live_checkpoints(database)
        check = partitions.verify_archive(done.file, None, checkpoints, keys.trust)
        assert check.checkpoint_status == "bad_signature"
        assert not check.ok

        # A manifest that misstates the file.
        done.file.write_bytes(original_file)
        manifest = json.loads(original_manifest)
        manifest["rows"] = 1999
        manifest_path.write_text(json.dumps(manifest))
        check = check_offline(done.file, keys.trust)
        assert check.problems == ["the manifest's rows (1999) is not the file's (2000)"]


# -- the commands --------------------------------------------------------------------------------


def run(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "MAYHOLD_DATABASE_URL": url,
        "MAYHOLD_LOG_LEVEL": "WARNING",
        "MAYHOLD_DECISION_PARTITION_DAYS": "0",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "decisions", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
async def test_commands_on_postgres(tmp_path: Path, keys: Keys) -> None:
    out = tmp_path / "archive"
    async with partitioned(tmp_path) as (url, database):
        await append(database, 0, 2_100)
        done = run(url, "partitions", "--ahead", "3", "--min-rows", str(SMALL))
        assert done.returncode == 0, done.stderr
        assert f"{name(8001)} seq [8001, 10001) created" in done.stdout
        assert "1 partition(s) created" in done.stdout
        again = run(url, "partitions", "--ahead", "3", "--min-rows", str(SMALL))
        assert "0 partition(s) created" in again.stdout

        signing = {"MAYHOLD_CHECKPOINT_KEY_FILE": str(keys.private)}
        refused = run(url, "archive", "--through-seq", "2001", "--out", str(out), **signing)
        assert refused.returncode == 1
        assert "not the last seq of a partition" in refused.stderr
        done = run(url, "archive", "--through-seq", "2000", "--out", str(out), **signing)
        assert done.returncode == 0, done.stderr
        assert f"archived {FIRST}: seq 1-2000, 2000 decision(s)" in done.stdout
        file = out / f"{FIRST}.copy.gz"

        trusted = ("--trusted-key", str(keys.public), "--require-signed-checkpoints")
        checked = run(url, "verify-archive", str(file), *trusted)
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["ok"] is True
        offline = run(
            "sqlite+aiosqlite:////nonexistent/x.db",
            "verify-archive",
            str(file),
            "--offline",
            *trusted,
        )
        assert offline.returncode == 0, offline.stderr
        assert "checkpoints from the manifest" in offline.stderr
        untrusted = run(url, "verify-archive", str(file), "--require-signed-checkpoints")
        assert untrusted.returncode == 3
        assert "unknown_key" in untrusted.stderr
        verify = run(url, "verify", *trusted)
        assert verify.returncode == 0, verify.stderr


async def test_sqlite_keeps_one_table_and_its_decisions(tmp_path: Path) -> None:
    """The migration on SQLite only trades the unique key on decision_id for an index (a
    table rebuild): the decisions stay, verified, and the triggers are made again."""
    async with scratch_database("sqlite", tmp_path) as url:
        config = alembic_config(Settings(database_url=url))
        await asyncio.to_thread(command.upgrade, config, "20261130_decision_sequencer")
        database = Database.from_settings(Settings(database_url=url))
        try:
            async with running_log(database) as log:
                decided = await log.append([entry(n) for n in range(20)])
            await asyncio.to_thread(command.upgrade, config, "head")
            result = await verify_live(database, CheckpointTrust())
            assert (result.ok, result.checked) == (True, 20)
            async with database.sessionmaker() as session:
                found = await service.get_decision(session, uuid.UUID(decided[7]["decision_id"]))
            assert found == decided[7] | {"audit": found["audit"]}
            for statement in ("UPDATE decisions SET verdict = 'allowed'", "DELETE FROM decisions"):
                with pytest.raises(DBAPIError, match="append-only"):
                    async with database.engine.begin() as conn:
                        await conn.execute(text(statement))
        finally:
            await database.dispose()


@pytest.mark.slow
async def test_commands_on_sqlite_say_they_are_postgres_only(tmp_path: Path) -> None:
    async with scratch_database("sqlite", tmp_path) as url:
        await upgrade_to_head_async(Settings(database_url=url))
        database = Database.from_settings(Settings(database_url=url))
        try:
            async with running_log(database) as log:
                await log.append([entry(0), entry(1)])
            # One table, append-only still after the rebuild that dropped the unique key.
            with pytest.raises(DBAPIError, match="append-only"):
                async with database.engine.begin() as conn:
                    await conn.execute(text("UPDATE decisions SET verdict = 'allowed'"))
            with pytest.raises(PostgresOnly):
                await partitions.keep_ahead_once(database, ahead=2, min_rows=SMALL)
        finally:
            await database.dispose()
        for args in (("partitions",), ("archive", "--through-seq", "2", "--out", str(tmp_path))):
            done = run(url, *args)
            assert done.returncode == 4
            assert "on Postgres only" in done.stderr
        assert run(url, "verify").returncode == 0
