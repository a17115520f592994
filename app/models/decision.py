"""The decision log: every answered decision, append-only and hash-chained.

Written only by ``app.decisions.log.DecisionLog`` (group commit); never updated or deleted
(triggers on Postgres and SQLite, see the ``decisions`` migration). On Postgres the table is
partitioned by ``seq`` range (``decisions_p<start seq>``, see the ``decisions_partitions``
migration and ``app.decisions.partitions``); SQLite keeps one table.

``payload`` and ``request`` are the canonical JSON *text* (not JSON/JSONB): the bytes returned
to the client and the bytes the hash covers, which a JSON type would re-format. The other
columns are a projection of them for queries (by instrument, issuer, policy, verdict, time);
``verify`` checks that they agree with the payload. The chain recipe is in
``app.decisions.chain``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK

VERDICTS = ("allowed", "watch", "excluded", "unknown")


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint(
            "verdict IN (" + ", ".join(f"'{v}'" for v in VERDICTS) + ")", name="verdict"
        ),
        # "Decisions about an instrument (or an issuer), newest first, cursor by seq": one
        # index range scan read backwards (WHERE isin = ? AND seq < ? ORDER BY seq DESC). A time
        # range maps to a seq range through (decided_at, seq): decided_at never decreases along
        # seq (the writer makes it so), so "the first seq at or after T" is one index probe.
        Index(None, "decided_at", "seq"),
        Index(None, "isin", "seq"),
        Index(None, "issuer_id", "seq"),
        # Listing by policy pages the same way; a client mandate's decisions may be a tiny
        # share of the log, which a scan of the primary key would read through to fill a page.
        Index(None, "policy_key", "seq"),
        # GET /v1/decisions/{id}. Not unique: on Postgres the table is partitioned by seq and a
        # unique index must contain the partition key; a decision_id is unique by being a
        # uuid4 the writer draws (122 random bits), on both dialects alike.
        Index(None, "decision_id"),
    )

    # The chain's order: dense (1, 2, 3...), assigned by the writer under the chain lock.
    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    decided_at: Mapped[dt.datetime]
    as_of: Mapped[dt.datetime]
    policy_key: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int]
    policy_sha256: Mapped[str] = mapped_column(String(64))
    data_version: Mapped[int] = mapped_column(BigInteger)
    isin: Mapped[str | None] = mapped_column(String(12))
    issuer_id: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    may_hold: Mapped[bool]
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    request_id: Mapped[str | None] = mapped_column(String(128))
    request: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class DecisionCheckpoint(Base):
    """A vouched-for point of the chain: the decision at ``seq`` had ``hash``.

    Recorded (append-only) once the chain up to ``seq`` has been verified, typically before the
    decisions up to it are archived and removed from the live table: ``verify`` then links the
    first live decision after them to this hash, and a later rewrite of the chain through
    ``seq`` no longer reproduces it. Signed (``key_id``, ``signature``), and chained to the
    previous checkpoint by its signature, it also resists a rewrite of this table itself.
    """

    __tablename__ = "decision_checkpoints"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime]
    recorded_at: Mapped[dt.datetime]
    recorded_by: Mapped[str] = mapped_column(String(200))
    # Where the decisions up to seq were archived, and the archive file's SHA-256.
    archive: Mapped[str | None] = mapped_column(String(500))
    archive_sha256: Mapped[str | None] = mapped_column(String(64))
    # The checkpoint chain (app.decisions.signing): the checkpoint this one follows (0 for the
    # first), and how many decisions it adds to it (seq - previous_seq). Null on checkpoints
    # recorded before they were chained.
    previous_seq: Mapped[int | None] = mapped_column(BigInteger)
    count: Mapped[int | None] = mapped_column(BigInteger)
    # Who signed it (sha256 of the raw Ed25519 public key, first 32 hex digits) and the
    # signature (hex) over its canonical message; both null on an unsigned checkpoint.
    key_id: Mapped[str | None] = mapped_column(String(32))
    signature: Mapped[str | None] = mapped_column(String(128))
