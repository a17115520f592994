"""List tokens: the ETag of a list, and what ``since=`` names.

A token names everything a list's verdicts depend on, so that the list can be computed again,
identically, at any later time: the policy version (and an overlay's base version), the data
version (the newest dataset id the list read) and the day it was evaluated for (the engine reads
only the date: durations, expiries, maximum data age). Short hash prefixes of the policy
versions and of the data version's dataset tell a token from another database apart from one of
ours; a checksum tells a mistyped or truncated token apart from an unknown one.

Text: ``ml1.<base64url of the fields joined by "|">.<checksum>``; opaque to clients, parsed here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Literal

from app.kit.errors import FieldError, InvalidInput

Account = Literal["own", "client"]
PREFIX = "ml1"
HASH_PREFIX = 8  # hex characters of a sha256 kept in a token


@dataclass(frozen=True)
class ListToken:
    policy_key: str
    policy_version: int
    policy_sha: str
    base_key: str | None
    base_version: int | None
    base_sha: str | None
    data_version: int
    data_sha: str
    day: dt.date
    # Whose money the list is for (``?portfolio=``: the portfolio's account decides which
    # exceptions apply, seed 001). Encoded only for ``own``: a client list's token is what it
    # was before accounts existed, so custodians' stored ETags stay valid.
    account: Account = "client"

    def encode(self) -> str:
        fields = [
            self.policy_key,
            str(self.policy_version),
            self.policy_sha,
            self.base_key or "",
            "" if self.base_version is None else str(self.base_version),
            self.base_sha or "",
            str(self.data_version),
            self.data_sha,
            self.day.isoformat(),
            *(["own"] if self.account == "own" else []),
        ]
        payload = "|".join(fields).encode("utf-8")
        body = base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")
        return f"{PREFIX}.{body}.{_checksum(payload)}"

    @classmethod
    def decode(cls, text: str, parameter: str = "since") -> ListToken:
        def malformed(why: str) -> InvalidInput:
            return InvalidInput(
                f"{parameter} is not a list token ({why}): pass the ETag (or X-List-Token "
                "header) of a list this service returned, exactly as received.",
                errors=[FieldError(loc=("query", parameter), msg=f"malformed list token: {why}")],
            )

        parts = text.strip().strip('"').split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise malformed(f"expected {PREFIX}.<body>.<checksum>")
        try:
            payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        except (binascii.Error, ValueError):
            raise malformed("its body is not base64url") from None
        if _checksum(payload) != parts[2]:
            raise malformed("its checksum does not match: truncated or mistyped?")
        try:
            fields = payload.decode("utf-8").split("|")
            account: Account = "client"
            if len(fields) == 10 and fields[9] == "own":
                account = "own"
                fields = fields[:9]
            key, version, sha, base_key, base_version, base_sha, data, data_sha, day = fields
            return cls(
                policy_key=key,
                policy_version=int(version),
                policy_sha=sha,
                base_key=base_key or None,
                base_version=int(base_version) if base_version else None,
                base_sha=base_sha or None,
                data_version=int(data),
                data_sha=data_sha,
                day=dt.date.fromisoformat(day),
                account=account,
            )
        except ValueError:  # also a wrong field count (unpacking) and bad UTF-8
            raise malformed("its fields cannot be read") from None


def short_hash(sha256: str | None) -> str:
    """What a token keeps of a sha256 ("-" for none: no data loaded yet)."""
    return sha256[:HASH_PREFIX] if sha256 else "-"


def _checksum(payload: bytes) -> str:
    return hashlib.blake2s(payload, digest_size=4).hexdigest()
