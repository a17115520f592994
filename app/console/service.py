"""What the console's pages show, assembled from the domain services (nothing written here).

Each function returns plain data for a template; the queries stay in the domains'
repositories and services.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.decisions import service as decisions
from app.decisions.repository import DecisionFilters
from app.kit.errors import FieldError, InvalidInput, NotFound
from app.models import VERDICTS
from app.policies import service as policies

# Decisions per page of the search.
SEARCH_PAGE = 50

# What each verdict means; whether it may be held is the policy's (``may_hold``, shown apart).
VERDICT_WORDS = {
    "allowed": "Allowed: no rule of the policy stands against it.",
    "watch": "Watch: a watch rule or list entry of the policy applies.",
    "excluded": "Excluded: a rule or list entry of the policy excludes it.",
    "unknown": "Unknown: the data the policy needs to decide is missing or stale.",
}

RELATION_WORDS = {
    "self": "the issuer itself",
    "parent": "its parent",
    "subsidiary": "its subsidiary",
    "state_owner": "its state owner",
    "underlying": "the underlying",
    "holding": "a fund holding",
}


@dataclass(frozen=True)
class SearchForm:
    """The decision search as typed in the form (every field text; blank: any)."""

    instrument: str = ""
    issuer: str = ""
    portfolio: str = ""
    policy: str = ""
    verdict: str = ""
    from_: str = ""
    to: str = ""
    request_id: str = ""


def parse_time(text: str, name: str) -> dt.datetime | None:
    """A form's time: RFC 3339, or a browser's ``datetime-local`` (no offset: read as UTC)."""
    text = clean(text, name) or ""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name}: not a time; write e.g. 2026-11-30T09:00 (UTC) or 2026-11-30T09:00:00+01:00.",
            errors=[FieldError(loc=("query", name), msg="not a time")],
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# The longest text a search field takes (an identifier, a request id: a few dozen characters).
FIELD_MAX = 128


def clean(text: str, name: str) -> str | None:
    """A form field's text, trimmed; None when blank. ``InvalidInput`` for text no identifier
    has (too long, control characters: nothing to search for, and Postgres cannot hold NUL)."""
    text = text.strip()
    if len(text) > FIELD_MAX or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InvalidInput(f"{name}: at most {FIELD_MAX} characters, no control characters.")
    return text or None


def filters_of(form: SearchForm) -> DecisionFilters:
    """The repository's filters for a search form; ``InvalidInput`` names a bad field."""
    verdict = clean(form.verdict, "verdict")
    if verdict is not None and verdict not in VERDICTS:
        raise InvalidInput(f"verdict: one of {', '.join(VERDICTS)}.")
    start = parse_time(form.from_, "from")
    end = parse_time(form.to, "to")
    if start is not None and end is not None and start >= end:
        raise InvalidInput("from must be before to.")
    instrument = clean(form.instrument, "instrument")
    return DecisionFilters(
        isin=None if instrument is None else instrument.upper(),
        issuer_id=clean(form.issuer, "issuer"),
        policy_key=clean(form.policy, "policy"),
        verdict=verdict,
        decided_from=start,
        decided_before=end,
        request_id=clean(form.request_id, "request id"),
        portfolio_id=clean(form.portfolio, "portfolio"),
    )


def _rule_index(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every item a reason can name (rules, exceptions, position limits), by id."""
    found: dict[str, Mapping[str, Any]] = {}
    for collection in ("rules", "exceptions", "position_limits"):
        for item in document.get(collection) or []:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                found[item["id"]] = item
    return found


async def _document(session: AsyncSession, ref: Any) -> Mapping[str, Any] | None:
    """The document of the version a decision's ``{key, version}`` names; None when this
    database does not hold it (a decision may outlive what it names only if tampered with)."""
    if not isinstance(ref, Mapping):
        return None
    try:
        _, version = await policies.get_version(session, ref["key"], int(ref["version"]))
    except (NotFound, KeyError, TypeError, ValueError):
        return None
    return version.document


async def decision_page(session: AsyncSession, decision_id: uuid.UUID) -> dict[str, Any]:
    """A stored decision with what explains it: each reason's rule (title, source, note) from
    the policy version it names, and the record's chain status. 404 when there is none."""
    stored = await decisions.get_decision(session, decision_id)
    status = await decisions.record_status(session, decision_id)
    policy = stored.get("policy") or {}
    rules: dict[str, Mapping[str, Any]] = {}
    # An overlay's decision names its base version too: the base's rules first, the overlay's
    # own (stricter, or new) over them.
    for ref in (policy.get("base"), policy):
        document = await _document(session, ref)
        if document is not None:
            rules.update(_rule_index(document))
    policy_found = await _document(session, policy) is not None
    reasons = []
    for reason in stored.get("reasons") or []:
        rule = rules.get(reason.get("rule_id", ""), {})
        reasons.append(
            {
                **reason,
                "rule_title": rule.get("title"),
                "source": rule.get("source"),
                "note": rule.get("note"),
                "via_words": [
                    {**step, "words": RELATION_WORDS.get(step.get("relation", ""), "")}
                    for step in reason.get("via") or []
                ],
            }
        )
    return {
        "decision": stored,
        "reasons": reasons,
        "verdict_words": VERDICT_WORDS.get(stored.get("verdict", ""), ""),
        "policy_found": policy_found,
        "chain_status": status,
    }


async def _canonical_version(session: AsyncSession, ref: Any) -> dict[str, Any] | None:
    """``{key, version, sha256, document}``: the canonical document text a decision's policy
    reference names (its sha256 is the reference's); None when not held here."""
    if not isinstance(ref, Mapping):
        return None
    try:
        sha256, canonical = await policies.export_version(session, ref["key"], int(ref["version"]))
    except (NotFound, KeyError, TypeError, ValueError):
        return None
    return {
        "key": ref["key"],
        "version": ref["version"],
        "sha256": sha256,
        "document": canonical.decode("utf-8"),
    }


async def audit_pack(session: AsyncSession, decision_id: uuid.UUID) -> dict[str, Any]:
    """One decision's audit pack: its stored texts and hash, the chain links back to the
    nearest anchor (checkpoint or genesis), the policy version's canonical document and the
    evidence it cites. Everything needed to check the record with standard tools."""
    record = await decisions.stored_record(session, decision_id)
    stored = await decisions.get_decision(session, decision_id)
    policy = stored.get("policy") or {}
    policy_part = await _canonical_version(session, policy)
    if policy_part is not None and "base" in policy:
        policy_part["base"] = await _canonical_version(session, policy["base"])
    evidence = [
        {"rule_id": reason.get("rule_id"), **item}
        for reason in stored.get("reasons") or []
        for item in reason.get("evidence") or []
    ]
    return {
        "format": "mayhold-audit-pack/1",
        "decision_id": str(decision_id),
        "record": record,
        "chain": await decisions.chain_links(session, record["seq"]),
        "policy": policy_part,
        "evidence": evidence,
    }


def pretty(value: Any) -> str:
    """JSON for people (indented); the canonical form is what is hashed, not this."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
