"""The hash chain of the decision log, and the query columns a decision projects to. Pure code.

What a decision's ``hash`` covers, byte for byte::

    header = canonical_json({"seq": <int>, "decision_id": "<uuid, lowercase hyphenated>",
                             "requested_by": "<key name>", "requested_by_key_id": "<uuid>" | null,
                             "request_id": "<X-Request-ID>" | null})
    hash = sha256(utf8(prev_hash + "\n" + header + "\n" + request + "\n" + payload)).hexdigest()

where ``request`` and ``payload`` are the stored texts, byte for byte (canonical JSON, which
never contains a raw newline, so the four parts cannot be re-cut), ``prev_hash`` is the previous
decision's ``hash`` by ``seq`` (64 zeros, ``GENESIS``, for the first), and ``canonical_json`` is
``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``. In shell terms:
``printf '%s\n%s\n%s\n%s' "$prev_hash" "$header" "$request" "$payload" | sha256sum``.

The payload holds everything the client got (``decision_id``, ``decided_at``, ``as_of``,
``policy``, ``data_version``, ``instrument``, ``issuer``, ``verdict``, ``may_hold``,
``reasons``); the other columns of a row (``isin``, ``verdict``, ``decided_at``...) are a
projection of payload and request for queries, which ``verify`` checks against them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from app.kit.canonical import canonical_bytes, parse_rfc3339
from app.models import VERDICTS

GENESIS = "0" * 64

# Keys the writer adds to every payload; a payload handed to the log must not carry them.
ASSIGNED_KEYS = ("decision_id", "decided_at")


def header_prefix(
    *,
    decision_id: str,
    requested_by: str,
    requested_by_key_id: str | None,
    request_id: str | None,
) -> str:
    """The header's canonical text up to its ``seq`` value: ``seq`` sorts last among the
    header's keys, so ``header == header_prefix(...) + str(seq) + "}"``. The writer renders this
    part before the chain lock; the database (``mayhold_append_decisions``) adds the seq."""
    text = canonical_bytes(
        {
            "seq": 0,
            "decision_id": decision_id,
            "requested_by": requested_by,
            "requested_by_key_id": requested_by_key_id,
            "request_id": request_id,
        }
    ).decode("utf-8")
    if not text.endswith(',"seq":0}'):  # a header key sorting after "seq" would break this
        raise AssertionError(f"decision header does not end with its seq: {text!r}")
    return text[: -len("0}")]


def link_hash(prev_hash: str, prefix: str, seq: int, request: str, payload: str) -> str:
    """The recipe above, from a ``header_prefix``: what ``mayhold_append_decisions`` computes
    in the database (migration ``20261130_decision_sequencer``), byte for byte."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(f"{prefix}{seq}}}".encode())
    digest.update(b"\n")
    digest.update(request.encode("utf-8"))
    digest.update(b"\n")
    digest.update(payload.encode("utf-8"))
    return digest.hexdigest()


def chain_hash(
    prev_hash: str,
    *,
    seq: int,
    decision_id: str,
    requested_by: str,
    requested_by_key_id: str | None,
    request_id: str | None,
    request: str,
    payload: str,
) -> str:
    prefix = header_prefix(
        decision_id=decision_id,
        requested_by=requested_by,
        requested_by_key_id=requested_by_key_id,
        request_id=request_id,
    )
    return link_hash(prev_hash, prefix, seq, request, payload)


class DecisionEntryInvalid(ValueError):
    """A decision handed to the log lacks a field the log needs: a bug of the caller."""


@dataclass(frozen=True, slots=True)
class Projection:
    """The query columns of a decision, derived from its payload (and request)."""

    as_of: dt.datetime
    policy_key: str
    policy_version: int
    policy_sha256: str
    data_version: int
    isin: str | None
    issuer_id: str | None
    verdict: str
    may_hold: bool


def _fail(message: str) -> DecisionEntryInvalid:
    return DecisionEntryInvalid(f"decision payload: {message}")


def _text(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise _fail(f"{name} must be a non-empty string of at most {max_length} characters")
    return value


def _integer(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(f"{name} must be an integer")
    return value


@lru_cache(maxsize=256)
def _parsed_time(text: str) -> dt.datetime:
    # A batch's decisions share one as_of: parse it once.
    return parse_rfc3339(text)


def project(payload: Mapping[str, Any], request: Mapping[str, Any]) -> Projection:
    """The query columns of a JSON-ready payload; ``DecisionEntryInvalid`` if a field is missing.

    ``isin`` is the decided instrument's ISIN or, when the instrument was not known (its
    decision is ``unknown``, ``instrument`` null), the identifier asked for, upper-cased, if it
    has an ISIN's length: an auditor asking about an ISIN finds the decisions given while we
    did not know it too. The identifier asked is the payload's ``requested_isin`` (what the
    checks store, and hashed with the payload), else ``request["instrument"]``.
    """
    if not isinstance(payload, Mapping) or not isinstance(request, Mapping):
        raise _fail("payload and request must be objects")
    try:
        as_of = _parsed_time(payload["as_of"])
    except (KeyError, TypeError, ValueError):
        raise _fail("as_of must be an RFC 3339 time with a timezone") from None
    policy = payload.get("policy")
    if not isinstance(policy, Mapping):
        raise _fail("policy must be an object {key, version, sha256}")
    verdict = payload.get("verdict")
    if verdict not in VERDICTS:
        raise _fail(f"verdict must be one of {', '.join(VERDICTS)}")
    may_hold = payload.get("may_hold")
    if not isinstance(may_hold, bool):
        raise _fail("may_hold must be a boolean")
    instrument = payload.get("instrument")
    issuer = payload.get("issuer")
    if instrument is not None and not isinstance(instrument, Mapping):
        raise _fail("instrument must be an object or null")
    if issuer is not None and not isinstance(issuer, Mapping):
        raise _fail("issuer must be an object or null")
    isin: str | None = None
    if instrument is not None:
        isin = _text(instrument.get("isin"), "instrument.isin", 12)
    else:
        asked = payload.get("requested_isin", request.get("instrument"))
        if isinstance(asked, str) and len(asked.strip()) == 12:
            isin = asked.strip().upper()
    return Projection(
        as_of=as_of,
        policy_key=_text(policy.get("key"), "policy.key", 64),
        policy_version=_integer(policy.get("version"), "policy.version"),
        policy_sha256=_text(policy.get("sha256"), "policy.sha256", 64),
        data_version=_integer(payload.get("data_version"), "data_version"),
        isin=isin,
        issuer_id=(
            _text(issuer.get("issuer_id"), "issuer.issuer_id", 64) if issuer is not None else None
        ),
        verdict=str(verdict),
        may_hold=may_hold,
    )
