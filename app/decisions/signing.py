"""Ed25519 signatures on decision-log checkpoints: keys, key ids, the signed message. Pure code.

A checkpoint vouches that the decision at ``seq`` had ``hash``. Unsigned, it is only as good as
the database it sits in: whoever can rewrite the decisions and re-hash the chain can rewrite the
checkpoint rows too. Signed with a key the database never holds (only its public part is needed
to verify), a rewrite of both no longer verifies. Each checkpoint also signs its link to the
previous one, so a deleted checkpoint breaks the next one's link.

What a checkpoint's ``signature`` covers (hex, 64 bytes, Ed25519 over the UTF-8 bytes of)::

    canonical_json({"format": "mayhold-checkpoint-1", "seq": <int>, "hash": "<64 hex>",
                    "decided_at": "<RFC 3339 Z>", "count": <int>, "previous_seq": <int>,
                    "previous": "<the previous checkpoint's signature, or its hash when it is
                                 unsigned; 64 zeros for the first checkpoint>",
                    "recorded_at": "<RFC 3339 Z>", "recorded_by": "<who>",
                    "key_id": "<32 hex>", "archive": "<URI>" | null,
                    "archive_sha256": "<64 hex>" | null})

``count`` is the number of decisions the checkpoint adds to the previous one (``seq -
previous_seq``: seq is dense), ``previous_seq`` that checkpoint's seq (0 for the first). The
``key_id`` is the first 32 hex digits of the SHA-256 of the raw 32-byte public key: it names the
key, the signature proves it (a key with a colliding id still cannot sign for another).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.kit.canonical import canonical_bytes

MESSAGE_FORMAT = "mayhold-checkpoint-1"
# What the first checkpoint links to, as the first decision links to the genesis hash.
NO_PREVIOUS = "0" * 64
KEY_ID_LENGTH = 32
SIGNATURE_LENGTH = 128  # hex digits of a 64-byte Ed25519 signature

# `mayhold checkpoints keygen` writes these two files.
PRIVATE_KEY_FILE = "checkpoint-signing-key.pem"
PUBLIC_KEY_FILE = "checkpoint-signing-key.pub.pem"


class CheckpointKeyError(ValueError):
    """A configured key file is missing, unreadable or not an Ed25519 key of the right kind."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The id of a public key: sha256 of its raw 32 bytes, hex, first 32 digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_LENGTH]


def message(
    *,
    seq: int,
    hash: str,
    decided_at: dt.datetime,
    count: int,
    previous_seq: int,
    previous: str,
    recorded_at: dt.datetime,
    recorded_by: str,
    key_id: str,
    archive: str | None,
    archive_sha256: str | None,
) -> bytes:
    """The bytes a checkpoint's signature covers (see the module docstring)."""
    return canonical_bytes(
        {
            "format": MESSAGE_FORMAT,
            "seq": seq,
            "hash": hash,
            "decided_at": decided_at,
            "count": count,
            "previous_seq": previous_seq,
            "previous": previous,
            "recorded_at": recorded_at,
            "recorded_by": recorded_by,
            "key_id": key_id,
            "archive": archive,
            "archive_sha256": archive_sha256,
        }
    )


def link_of(signature: str | None, hash: str) -> str:
    """What the next checkpoint signs as ``previous``: this one's signature, else its hash."""
    return signature if signature is not None else hash


@dataclass(frozen=True)
class CheckpointSigner:
    """The private key that signs new checkpoints (``MAYHOLD_CHECKPOINT_KEY_FILE``)."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, signed: bytes) -> str:
        """The Ed25519 signature of ``signed``, hex (128 digits)."""
        return self.private_key.sign(signed).hex()

    @classmethod
    def from_file(cls, path: Path) -> CheckpointSigner:
        """Read an unencrypted PKCS#8 PEM Ed25519 private key; ``CheckpointKeyError`` if not."""
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise CheckpointKeyError(f"checkpoint key file {path}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise CheckpointKeyError(
                f"checkpoint key file {path} is not an unencrypted PEM private key ({exc})"
            ) from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise CheckpointKeyError(f"checkpoint key file {path} is not an Ed25519 key")
        return cls(loaded)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key (SubjectPublicKeyInfo); ``CheckpointKeyError`` if not."""
    try:
        loaded = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise CheckpointKeyError(f"trusted checkpoint key {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise CheckpointKeyError(
            f"trusted checkpoint key {path} is not a PEM public key ({exc})"
        ) from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise CheckpointKeyError(f"trusted checkpoint key {path} is not an Ed25519 key")
    return loaded


@dataclass(frozen=True)
class CheckpointTrust:
    """What a verifier trusts: public keys by key id, and whether an unsigned checkpoint is a
    problem. With no key at all, every signed checkpoint is of an unknown key: nothing is ever
    reported verified-signed without a key to check it by."""

    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    require_signed: bool = False

    @classmethod
    def of(
        cls, public_keys: Iterable[Ed25519PublicKey], *, require_signed: bool = False
    ) -> CheckpointTrust:
        return cls({key_id(key): key for key in public_keys}, require_signed)

    @classmethod
    def from_files(
        cls,
        signing_key_file: Path | None,
        trusted_key_files: Iterable[Path],
        *,
        require_signed: bool,
    ) -> CheckpointTrust:
        """The trusted keys: each file's public key, and the signing key's own public part."""
        keys = [load_public_key(path) for path in trusted_key_files]
        if signing_key_file is not None:
            keys.append(CheckpointSigner.from_file(signing_key_file).public_key)
        return cls.of(keys, require_signed=require_signed)

    def verifies(self, kid: str, signature: str, signed: bytes) -> bool | None:
        """True if the key ``kid`` signed ``signed``; False if not; None if the key is unknown."""
        public_key = self.keys.get(kid)
        if public_key is None:
            return None
        try:
            public_key.verify(bytes.fromhex(signature), signed)
        except (InvalidSignature, ValueError):
            return False
        return True


def generate_key_pair(directory: Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair into ``directory`` (created 0700 if missing): the private
    key as unencrypted PKCS#8 PEM readable by its owner only (0600), the public key as PEM
    (0644). Existing files are never replaced (``FileExistsError``). Returns both paths and
    the key id."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists already: not replaced")
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    return private_path, public_path, key_id(private_key.public_key())


def _write_new(path: Path, content: bytes, mode: int) -> None:
    # O_EXCL: never through an existing file or a planted symlink. Created with `mode` from the
    # start (never readable by others, not even for a moment), then set exactly: the umask
    # may have taken bits the public key should have.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)
        file.write(content)
        file.flush()
        os.fsync(fd)


def signed_message_of(row: Any, previous: str) -> bytes:
    """The message of a stored checkpoint row (``DecisionCheckpoint``), given the link to the
    checkpoint actually before it in the table."""
    return message(
        seq=row.seq,
        hash=row.hash,
        decided_at=row.decided_at,
        count=row.count,
        previous_seq=row.previous_seq,
        previous=previous,
        recorded_at=row.recorded_at,
        recorded_by=row.recorded_by,
        key_id=row.key_id,
        archive=row.archive,
        archive_sha256=row.archive_sha256,
    )
