"""Signed decision-log checkpoints: keygen, signing, and what verify reports when the chain AND
the checkpoint table are rewritten, a checkpoint is deleted, signed by a key nobody trusts, or
not signed at all; an auditor verifying with the public key only. Both dialects."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.decisions import service
from app.decisions.chain import chain_hash
from app.decisions.signing import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    CheckpointSigner,
    CheckpointTrust,
    generate_key_pair,
)
from app.kit.db import Database
from app.kit.errors import Conflict
from app.kit.settings import Settings
from app.main import create_app
from tests.conftest import bearer
from tests.support.databases import DIALECTS
from tests.support.decisions import ORACLE, entry, migrated_database, running_log


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    key_id: str


@dataclass(frozen=True)
class Logged:
    url: str
    database: Database
    auditor_key: str


def key_pair(directory: Path) -> KeyPair:
    return KeyPair(*generate_key_pair(directory))


@pytest.fixture
def signing(tmp_path: Path) -> KeyPair:
    return key_pair(tmp_path / "signing")


@pytest.fixture
def stranger(tmp_path: Path) -> KeyPair:
    """A key pair no verifier was told to trust (a forger's, or one never configured)."""
    return key_pair(tmp_path / "stranger")


@pytest.fixture(params=DIALECTS)
async def logged(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Logged]:
    """Ten committed decisions (seq 1-10) in a database of its own, and an auditor's key."""
    async with migrated_database(request.param, tmp_path) as (url, database):
        async with database.sessionmaker() as session, session.begin():
            issued = await auth_service.create_key(
                session, name="auditor", scopes=frozenset({Scope.decisions_read})
            )
        async with running_log(database) as log:
            for n in range(5):
                await log.append([entry(2 * n), entry(2 * n + 1)])
        yield Logged(url, database, issued.key)


async def checkpoint(
    logged: Logged, through_seq: int, signer: KeyPair | None, trust: CheckpointTrust | None = None
) -> None:
    async with logged.database.sessionmaker() as session, session.begin():
        await service.record_checkpoint(
            session,
            through_seq,
            ORACLE,
            archive=f"s3://archive/decisions-{through_seq}.csv.zst",
            archive_sha256="ab" * 32,
            signer=None if signer is None else CheckpointSigner.from_file(signer.private),
            trust=trust,
        )


@asynccontextmanager
async def service_client(logged: Logged, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(database_url=logged.url, index_enabled=False, **settings), logged.database
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=bearer(logged.auditor_key),
        ) as client,
    ):
        yield client


async def verify(logged: Logged, **settings: Any) -> dict[str, Any]:
    """``GET /v1/decisions/verify`` on a service configured with ``settings``."""
    async with service_client(logged, **settings) as client:
        response = await client.get("/v1/decisions/verify")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def statuses(body: dict[str, Any]) -> list[tuple[int, str]]:
    return [(check["seq"], check["status"]) for check in body["checkpoints"]]


Statement = tuple[str, dict[str, Any]]


async def tamper(database: Database, tables: tuple[str, ...], *statements: Statement) -> None:
    """Change tables behind their append-only triggers, as someone with DDL rights would."""
    async with database.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in tables:
                await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            for statement, params in statements:
                await conn.execute(text(statement), params)
            for table in tables:
                await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
            return
        names = ", ".join(f"'{table}'" for table in tables)
        triggers = (
            await conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master "
                    f"WHERE type = 'trigger' AND tbl_name IN ({names})"
                )
            )
        ).all()
        assert len(triggers) == 2 * len(tables)
        for name, _ in triggers:
            await conn.execute(text(f"DROP TRIGGER {name}"))
        for statement, params in statements:
            await conn.execute(text(statement), params)
        for _, sql in triggers:
            await conn.execute(text(sql))


# -- keygen ---------------------------------------------------------------------------------------


def keygen(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAYHOLD_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "app.cli", "checkpoints", "keygen", "--out", str(directory)]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def test_keygen_writes_an_owner_only_private_key_and_never_prints_it(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    done = keygen(directory)
    assert done.returncode == 0, done.stderr
    private, public = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    secret = private.read_text()
    assert "PRIVATE KEY" in secret
    body = secret.splitlines()[1]  # the base64 of the key itself
    assert body not in done.stdout + done.stderr
    assert "PRIVATE KEY" not in done.stdout + done.stderr
    signer = CheckpointSigner.from_file(private)
    loaded = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(loaded, Ed25519PublicKey)
    assert loaded.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert f"key_id={signer.key_id}" in done.stdout.splitlines()

    again = keygen(directory)  # never replaces a key
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert private.read_text() == secret


# -- signed, rewritten, deleted, unknown, unsigned -----------------------------------------------


async def test_a_signed_checkpoint_verifies_and_its_signature_is_the_documented_one(
    logged: Logged, signing: KeyPair
) -> None:
    await checkpoint(logged, 4, signing)
    await checkpoint(logged, 8, signing)
    body = await verify(logged, checkpoint_key_file=signing.private)
    assert (body["ok"], body["checked"], body["first_bad_checkpoint_seq"]) == (True, 10, None)
    assert statuses(body) == [(4, "signed"), (8, "signed")]
    first, second = body["checkpoints"]
    assert (first["count"], first["previous_seq"], first["previous"]) == (4, 0, "0" * 64)
    assert (second["count"], second["previous_seq"]) == (4, 4)
    assert second["previous"] == first["signature"]  # chained by the previous signature
    assert first["key_id"] == signing.key_id

    # The README's recipe, without mayhold: json.dumps of the signed fields, Ed25519.
    public = serialization.load_pem_public_key(signing.public.read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    for check in body["checkpoints"]:
        signed = {
            key: check[key]
            for key in (
                "seq",
                "hash",
                "decided_at",
                "count",
                "previous_seq",
                "previous",
                "recorded_at",
                "recorded_by",
                "key_id",
                "archive",
                "archive_sha256",
            )
        }
        signed["format"] = "mayhold-checkpoint-1"
        text_ = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        public.verify(bytes.fromhex(check["signature"]), text_.encode("utf-8"))  # raises if bad

    # An auditor with the public key only: no private key in the verifier's settings.
    audited = await verify(logged, checkpoint_trusted_keys=(signing.public,))
    assert (audited["ok"], statuses(audited)) == (True, [(4, "signed"), (8, "signed")])


async def test_rewriting_the_chain_and_the_checkpoint_is_a_bad_signature(
    logged: Logged, signing: KeyPair
) -> None:
    """The forger alters decision 3, re-hashes every decision after it and rewrites the
    checkpoint's hash: the chain is consistent again, only the signature gives it away."""
    await checkpoint(logged, 6, signing)
    async with logged.database.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM decisions ORDER BY seq"))).all()
    statements: list[Statement] = []
    prev = rows[1].hash
    for row in rows[2:]:
        payload = row.payload
        if row.seq == 3:
            payload = payload.replace('"excluded"', '"allowed"')
            assert payload != row.payload
        rehashed = chain_hash(
            prev,
            seq=row.seq,
            decision_id=str(uuid.UUID(str(row.decision_id))),
            requested_by=row.requested_by,
            requested_by_key_id=str(uuid.UUID(str(row.requested_by_key_id))),
            request_id=row.request_id,
            request=row.request,
            payload=payload,
        )
        verdict = ", verdict = 'allowed'" if row.seq == 3 else ""
        statements.append(
            (
                "UPDATE decisions SET payload = :payload, prev_hash = :prev, hash = :hash"
                f"{verdict} WHERE seq = :seq",
                {"payload": payload, "prev": prev, "hash": rehashed, "seq": row.seq},
            )
        )
        if row.seq == 6:
            statements.append(
                ("UPDATE decision_checkpoints SET hash = :hash WHERE seq = 6", {"hash": rehashed})
            )
        prev = rehashed
    await tamper(logged.database, ("decisions", "decision_checkpoints"), *statements)

    body = await verify(logged, checkpoint_trusted_keys=(signing.public,))
    # every decision links and matches its hash, and the checkpoint's hash: a perfect forgery
    assert (body["first_bad_id"], body["checked"]) == (None, 10)
    assert body["ok"] is False
    assert statuses(body) == [(6, "bad_signature")]
    assert body["first_bad_checkpoint_seq"] == 6
    assert "rewritten" in body["checkpoint_problem"]
    assert body["problem"].startswith("checkpoint 6:")
    assert body["last_hash"] is None

    # A verifier trusting no key cannot vouch for the checkpoint either: never "signed".
    blind = await verify(logged, checkpoint_trusted_keys=())
    assert (blind["ok"], statuses(blind)) == (False, [(6, "unknown_key")])

    # Nothing is ever chained onto a bad checkpoint.
    trust = CheckpointTrust.from_files(signing.private, (), require_signed=False)
    with pytest.raises(Conflict, match=r"Checkpoint 6 \(bad_signature\)"):
        await checkpoint(logged, 9, signing, trust)


async def test_deleting_a_checkpoint_breaks_the_checkpoint_chain(
    logged: Logged, signing: KeyPair
) -> None:
    for seq in (3, 6, 9):
        await checkpoint(logged, seq, signing)
    await tamper(
        logged.database,
        ("decision_checkpoints",),
        ("DELETE FROM decision_checkpoints WHERE seq = 6", {}),
    )
    body = await verify(logged, checkpoint_key_file=signing.private)
    assert statuses(body) == [(3, "signed"), (9, "broken_chain")]
    assert (body["ok"], body["first_bad_checkpoint_seq"]) == (False, 9)
    assert "follows checkpoint 6" in body["checkpoint_problem"]
    assert "deleted" in body["checkpoint_problem"]
    assert body["first_bad_id"] is None  # the decisions themselves are sound


async def test_a_checkpoint_signed_by_an_untrusted_key_is_an_unknown_key(
    logged: Logged, signing: KeyPair, stranger: KeyPair
) -> None:
    await checkpoint(logged, 5, signing)
    await checkpoint(logged, 7, stranger)
    body = await verify(logged, checkpoint_key_file=signing.private)
    assert statuses(body) == [(5, "signed"), (7, "unknown_key")]
    assert (body["ok"], body["first_bad_checkpoint_seq"]) == (False, 7)
    assert stranger.key_id in body["checkpoint_problem"]
    # trusting both keys (a rotated key, say): both are signed
    both = await verify(
        logged, checkpoint_key_file=signing.private, checkpoint_trusted_keys=(stranger.public,)
    )
    assert (both["ok"], statuses(both)) == (True, [(5, "signed"), (7, "signed")])


async def test_unsigned_checkpoints_are_unsigned_and_a_problem_when_signing_is_required(
    logged: Logged, signing: KeyPair
) -> None:
    # One recorded before checkpoints were chained (the new columns null), one unsigned now.
    async with logged.database.engine.begin() as conn:
        row = (
            await conn.execute(text("SELECT hash, decided_at FROM decisions WHERE seq = 2"))
        ).one()
        await conn.execute(
            text(
                "INSERT INTO decision_checkpoints (seq, hash, decided_at, recorded_at, "
                "recorded_by) VALUES (2, :hash, :at, :at, 'ops')"
            ),
            {"hash": row.hash, "at": row.decided_at},
        )
    await checkpoint(logged, 4, None)
    body = await verify(logged, checkpoint_key_file=signing.private)
    assert statuses(body) == [(2, "unsigned"), (4, "unsigned")]
    assert (body["ok"], body["signatures_required"]) == (True, False)
    assert [check["problem"] for check in body["checkpoints"]] == [None, None]
    assert body["checkpoints"][1]["previous"] == body["checkpoints"][0]["hash"]

    required = await verify(
        logged, checkpoint_key_file=signing.private, require_signed_checkpoints=True
    )
    assert (required["ok"], required["signatures_required"]) == (False, True)
    assert required["first_bad_checkpoint_seq"] == 2
    assert "unsigned" in required["checkpoint_problem"]

    # Required, but no key to sign with: nothing is recorded unsigned.
    requiring = CheckpointTrust.from_files(None, (signing.public,), require_signed=True)
    with pytest.raises(Conflict, match="no signing key"):
        await checkpoint(logged, 8, None, requiring)
    # A signed checkpoint after them chains to the last unsigned one's hash (the unsigned ones
    # before it do not stop it being recorded, even when signatures are required).
    await checkpoint(logged, 8, signing, requiring)
    later = await verify(logged, checkpoint_trusted_keys=(signing.public,))
    assert statuses(later) == [(2, "unsigned"), (4, "unsigned"), (8, "signed")]
    assert later["checkpoints"][2]["previous"] == later["checkpoints"][1]["hash"]
    # Required now: the signed checkpoint vouches for the unsigned ones before it (its message
    # holds the last one's hash, which covers every decision before it): a log signed from
    # some day on verifies; they are still reported unsigned, never signed.
    vouched = await verify(
        logged, checkpoint_trusted_keys=(signing.public,), require_signed_checkpoints=True
    )
    assert (vouched["ok"], statuses(vouched)) == (
        True,
        [(2, "unsigned"), (4, "unsigned"), (8, "signed")],
    )
    assert [check["problem"] for check in vouched["checkpoints"]] == [None, None, None]
    # An unsigned checkpoint after the last signed one is still a problem when required.
    await checkpoint(logged, 9, None)
    trailing = await verify(
        logged, checkpoint_trusted_keys=(signing.public,), require_signed_checkpoints=True
    )
    assert (trailing["ok"], trailing["first_bad_checkpoint_seq"]) == (False, 9)
    assert "unsigned" in trailing["checkpoint_problem"]


# -- the command line: signing with the key file, auditing with the public key --------------------


async def test_command_line_signs_with_the_key_file_and_verifies_with_the_public_key(
    logged: Logged, signing: KeyPair
) -> None:
    env = {
        **os.environ,
        "MAYHOLD_DATABASE_URL": logged.url,
        "MAYHOLD_LOG_LEVEL": "WARNING",
        "MAYHOLD_CHECKPOINT_KEY_FILE": str(signing.private),
    }

    def run(*arguments: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app.cli", "decisions", *arguments]
        return subprocess.run(
            command, env={**env, **extra}, capture_output=True, text=True, check=False
        )

    done = await asyncio.to_thread(run, "checkpoint", "--through-seq", "6")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"key_id={signing.key_id}")

    # The auditor: no private key, only the public one, signatures required.
    env.pop("MAYHOLD_CHECKPOINT_KEY_FILE")
    audit = await asyncio.to_thread(
        run, "verify", "--trusted-key", str(signing.public), "--require-signed-checkpoints"
    )
    assert audit.returncode == 0, audit.stderr
    result = json.loads(audit.stdout)
    assert (result["ok"], statuses(result)) == (True, [(6, "signed")])
    assert "1 signed" in audit.stderr
    by_setting = await asyncio.to_thread(
        run, "verify", MAYHOLD_CHECKPOINT_TRUSTED_KEYS=str(signing.public)
    )
    assert by_setting.returncode == 0, by_setting.stderr

    # Without the public key, the signature cannot be checked: never reported signed.
    blind = await asyncio.to_thread(run, "verify")
    assert blind.returncode == 3
    assert statuses(json.loads(blind.stdout)) == [(6, "unknown_key")]
    assert "checkpoint 6 does not hold" in blind.stderr
    # A key file that is not a key: refused, nothing verified.
    bad = await asyncio.to_thread(run, "verify", "--trusted-key", str(signing.private))
    assert (bad.returncode, "not a PEM public key" in bad.stderr) == (1, True)


# -- the README's recipe: an auditor with jq, openssl and the public key --------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_recipe() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("Without mayhold, from the API's answer")
    match = re.search(r"^```bash\n(.*?)^```", text[start:], re.DOTALL | re.MULTILINE)
    assert match, "no recipe"
    return match.group(1)


async def test_the_readme_recipe_checks_signatures_with_openssl(
    logged: Logged, signing: KeyPair
) -> None:
    for tool in ("jq", "openssl", "basenc"):
        assert shutil.which(tool), f"the README's recipe needs {tool}"
    await checkpoint(logged, 3, signing)
    await checkpoint(logged, 6, signing)

    async def run_recipe() -> list[str]:
        async with service_client(logged, checkpoint_key_file=signing.private) as client:
            answer = (await client.get("/v1/decisions/verify")).content
        served = signing.public.parent / "answer.json"
        served.write_bytes(answer)
        # The recipe as written; its `curl` answers what the service answered.
        script = f"curl() {{ cat '{served}'; }}\n{readme_recipe()}"
        ran = subprocess.run(
            ["/bin/sh", "-c", script],
            env={**os.environ, "BASE": "http://t", "KEY": logged.auditor_key},
            cwd=signing.public.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        return ran.stdout.splitlines()

    assert await run_recipe() == [
        "checkpoint 3: Signature Verified Successfully",
        "checkpoint 6: Signature Verified Successfully",
    ]
    # The archive a checkpoint names, swapped behind the triggers: openssl sees it too.
    await tamper(
        logged.database,
        ("decision_checkpoints",),
        ("UPDATE decision_checkpoints SET archive = 's3://elsewhere' WHERE seq = 6", {}),
    )
    assert await run_recipe() == [
        "checkpoint 3: Signature Verified Successfully",
        "checkpoint 6: Signature Verification Failure",
    ]
