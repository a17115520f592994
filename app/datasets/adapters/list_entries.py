"""`list-entries`: the policy owner's own decisions about issuers.

A load appends to or replaces policies' lists (contract, "Loads that replace a list"):
* ``mode=append`` (the default): its entries join each named policy's list; an entry for an
  (issuer, list) already there updates it (a renewed exception, a new reason) unless the one
  in force was decided later (then it is ``superseded``: the newest decision stands);
* ``mode=replace``: the file is the complete list of each policy it names, or of ``policy``
  when given (every row must then name it; a header-only file empties that list). Recorded in
  ``list_replacements``. A replace dated (``as_of``) before the policy's current replacing list
  is refused with 409 naming that list: an older list never silently supersedes a newer one
  (load it with mode=append to add its entries, or with its true, later date).
What a policy's list is at a data version is ``list_entries_in_force``'s decision alone; the
load's ``summary`` says what it changed against the list before it (``added``, ``removed``,
``changed`` with what changed, each with a count and a few examples, and ``unchanged``), and
which of its entries do not take effect (``superseded``: an entry in force for the same
issuer and list was decided later; the file's entry stays in the history).
Exceptions must carry their approval reference and an expiry. Every row must name a policy
that exists (any status), and a ``rules`` cell only rules some version of it declares.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, insert, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause

from app.datasets.adapters.base import (
    MAX_ROW_ERRORS,
    SUMMARY_EXAMPLES,
    Adapter,
    LoadContext,
    duplicate_errors,
    provider_date,
    resolved_refs,
    unresolved_ref_errors,
)
from app.datasets.csvfile import CellError, CsvRow, optional_date, parse_date
from app.datasets.repository import list_entries_in_force, newest_list_replacements
from app.datasets.schemas import DatasetKind
from app.kit.errors import Conflict, FieldError
from app.models import ListEntry, ListReplacement
from app.policies.repository import policy_rule_ids

# ``sponsor``: the sponsoring employer (seed 002); its group is every issuer under the same
# ultimate parent (position limits).
LISTS = ("exclusion", "inclusion", "focus", "dialogue", "watch", "exception", "sponsor")
POLICY_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# What an entry says beyond its key (policy, issuer, list): a difference is a change.
_CONTENT = ("reason", "decided_on", "reference", "review_on", "expires_on", "rule_ids")
_RULE_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # a policy document's rule id
_RULE_SEPARATORS = re.compile(r"[\s,;]+")


def _rule_ids(row: CsvRow, kind: str) -> str | None:
    """The optional ``rules`` cell: the rule ids an inclusion is decided for (comma, semicolon
    or space separated), kept space-separated and sorted. An inclusion naming none lifts the
    hits established by data dated on or before its decided_on (the engine's ``_readmits``)."""
    text = row.get("rules")
    if not text:
        return None
    if kind != "inclusion":
        raise CellError("rules", f"only an inclusion names the rules it lifts, not a {kind} entry")
    ids = sorted({i for i in _RULE_SEPARATORS.split(text) if i})
    bad = [i for i in ids if not _RULE_ID.match(i) or len(i) > 64]
    if bad:
        raise CellError("rules", f"{bad[0]!r} is not a rule id (e.g. norms-violators, tobacco)")
    joined = " ".join(ids)
    if len(joined) > 1000:
        raise CellError("rules", "names too many rules (at most 1,000 characters)")
    return joined


class ListEntriesAdapter(Adapter):
    kind = DatasetKind.list_entries
    filled = ListEntry
    required_columns = ("policy", "issuer ref", "list", "reason", "decided on")
    default_provider = "internal"
    as_of_required = False
    stage_columns = (
        ("policy_key", str),
        ("issuer_ref", str),
        ("list", str),
        ("reason", str),
        ("decided_on", dt.date),
        ("reference", str),
        ("review_on", dt.date),
        ("expires_on", dt.date),
        ("rule_ids", str),
    )
    stored_as = {
        "policy_key": ListEntry.policy_key,
        "issuer_ref": ListEntry.issuer_ref,
        "list": ListEntry.list,
        "reason": ListEntry.reason,
        "reference": ListEntry.reference,
        "rule_ids": ListEntry.rule_ids,
    }
    column_labels = {"policy_key": "policy", "rule_ids": "rules"}

    def parse(self, row: CsvRow, ctx: LoadContext) -> Iterable[tuple[Any, ...]]:
        policy = row.require("policy")
        if not POLICY_KEY.match(policy):
            raise CellError("policy", f"{policy!r} is not a policy key (e.g. rpf, dk-pension)")
        if ctx.policy and policy != ctx.policy:
            raise CellError(
                "policy",
                f"{policy!r} is not the policy this load is for (policy={ctx.policy}): every "
                "row must name it",
            )
        kind = row.require("list").lower()
        if kind not in LISTS:
            raise CellError("list", f"{kind!r} is not one of {', '.join(LISTS)}")
        # The decision's date is the list's "as of" (the latest decided_on wins): never in the
        # future. A review or expiry date may rightly be.
        decided_on = provider_date(
            "decided_on", parse_date("decided_on", row.require("decided on")), ctx
        )
        expires_on = optional_date(row, "expires on")
        if expires_on and expires_on < decided_on:
            raise CellError("expires_on", f"expires ({expires_on}) before it was decided")
        reference = row.get("reference")
        if kind == "exception" and not (reference and expires_on):
            raise CellError(
                "reference" if not reference else "expires_on",
                "an exception needs its approval reference and an expiry date",
            )
        return [
            (
                policy,
                row.require("issuer ref"),
                kind,
                row.require("reason"),
                decided_on,
                reference or None,
                optional_date(row, "review on"),
                expires_on,
                _rule_ids(row, kind),
            )
        ]

    def allows_no_rows(self, ctx: LoadContext) -> bool:
        # A published list that revokes its last exclusions: the policy's list becomes empty.
        return ctx.mode == "replace" and bool(ctx.policy)

    async def check(
        self, conn: AsyncConnection, stage: FromClause, ctx: LoadContext
    ) -> list[FieldError]:
        errors = (
            await _policy_errors(conn, stage)
            + await duplicate_errors(
                conn, stage, ["policy_key", "issuer_ref", "list"], "policy, issuer_ref and list"
            )
            + await unresolved_ref_errors(conn, stage, "issuer_ref")
        )
        if errors:
            return errors
        staged = await self._staged(conn, stage)
        errors = _same_issuer_errors(staged)
        if errors:
            return errors
        named = {row["policy"] for row in staged}
        replaced = ({ctx.policy} if ctx.policy else named) if ctx.mode == "replace" else set()
        before_version = ctx.dataset_id - 1
        await _refuse_older_replace(conn, replaced, before_version, ctx)
        rows = await conn.execute(list_entries_in_force(before_version, sorted(named | replaced)))
        before = {_key(entry): entry for entry in (dict(r._mapping) for r in rows)}
        after = {k: v for k, v in before.items() if k[0] not in replaced}
        superseded: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
        for row in staged:
            # list_entries_in_force's rule: the latest decided_on wins, ties by the later load
            # (this one). An older decision appended late is history, not the list.
            held = after.get(_key(row))
            if held is not None and held["decided_on"] > row["decided_on"]:
                superseded.append((row, held))
            else:
                after[_key(row)] = row
        ctx.summary.update(_changes(before, after))
        ctx.note("superseded", _superseded(superseded))
        ctx.note("mode", ctx.mode)
        if replaced:
            ctx.note("replaced", sorted(replaced))
        return []

    async def _staged(self, conn: AsyncConnection, stage: FromClause) -> list[dict[str, Any]]:
        """The file's rows with the issuer each names (every reference resolves by now)."""
        resolved = resolved_refs(stage, "issuer_ref", conn.dialect.name)
        query = (
            select(
                stage.c.source_row,
                stage.c.policy_key.label("policy"),
                resolved.c.issuer_id,
                stage.c.list,
                *(stage.c[c] for c in _CONTENT),
            )
            .join(resolved, resolved.c.ref == stage.c.issuer_ref)
            .order_by(stage.c.source_row)
        )
        return [dict(r._mapping) for r in await conn.execute(query)]

    async def publish(
        self,
        conn: AsyncConnection,
        stage: Table,
        dataset_id: int,
        ctx: LoadContext,
    ) -> None:
        resolved = resolved_refs(stage, "issuer_ref", conn.dialect.name)
        columns = [name for name, _ in self.stage_columns]
        await conn.execute(
            insert(ListEntry).from_select(
                ["dataset_id", "source_row", "issuer_id", *columns],
                select(
                    literal(dataset_id),
                    stage.c.source_row,
                    resolved.c.issuer_id,
                    *(stage.c[c] for c in columns),
                ).join(resolved, resolved.c.ref == stage.c.issuer_ref),
            )
        )
        if ctx.mode != "replace":
            return
        replaced = (
            select(literal(dataset_id), literal(ctx.policy))
            if ctx.policy
            else select(literal(dataset_id), stage.c.policy_key).distinct()
        )
        await conn.execute(
            insert(ListReplacement).from_select(["dataset_id", "policy_key"], replaced)
        )


# How many keys or rule ids an error message lists before it says how many more there are.
_LISTED = 20


def listed_names(names: Iterable[str]) -> str:
    """Names for an error message, sorted, the first ``_LISTED`` of them ('none' if empty)."""
    ordered = sorted(names)
    if not ordered:
        return "none"
    more = len(ordered) - _LISTED
    return ", ".join(ordered[:_LISTED]) + (f", ... ({more} more)" if more > 0 else "")


def unknown_policy_message(key: str, known: Iterable[str]) -> str:
    return (
        f"unknown policy {key!r}: no policy has this key (known: {listed_names(known)}); "
        "check the spelling, or create the policy first (POST /v1/policies/{key}/versions)"
    )


async def _policy_errors(conn: AsyncConnection, stage: FromClause) -> list[FieldError]:
    """Rows naming a policy that does not exist (any status counts), or, in ``rules``, a rule
    that no version of their policy declares: a typo would otherwise load an entry that never
    applies (an exclusion of policy ``rfp``, an inclusion for rule ``tobbaco``)."""
    declared = await policy_rule_ids(conn)
    query = (
        select(stage.c.source_row, stage.c.policy_key, stage.c.rule_ids)
        .where(or_(stage.c.policy_key.not_in(sorted(declared)), stage.c.rule_ids.is_not(None)))
        .order_by(stage.c.source_row)
    )
    errors = []
    for row, policy, rule_ids in await conn.execute(query):
        if policy not in declared:
            errors.append(
                FieldError.in_file(row, "policy", unknown_policy_message(policy, declared))
            )
        elif unknown := [r for r in (rule_ids or "").split() if r not in declared[policy]]:
            errors.append(
                FieldError.in_file(
                    row,
                    "rules",
                    f"{unknown[0]!r} is not a rule of policy {policy!r}: no version of it "
                    f"declares it (its rules: {listed_names(declared[policy])})",
                )
            )
        if len(errors) >= MAX_ROW_ERRORS:
            break
    return errors


def _key(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    policy = entry["policy"] if "policy" in entry else entry["policy_key"]
    return (policy, entry["issuer_id"], entry["list"])


def _same_issuer_errors(staged: list[dict[str, Any]]) -> list[FieldError]:
    """Two rows putting the same issuer on the same list of a policy, by different references
    (an issuer_id and an ISIN of it): which would count? Rejected like any duplicate."""
    first: dict[tuple[str, str, str], int] = {}
    errors = []
    for row in staged:
        seen = first.setdefault(_key(row), row["source_row"])
        if seen != row["source_row"]:
            errors.append(
                FieldError.in_file(
                    row["source_row"],
                    "issuer_ref",
                    f"duplicate entry: row {seen} puts the same issuer ({row['issuer_id']}) on "
                    f"the same list of {row['policy']}",
                )
            )
    return errors[:MAX_ROW_ERRORS]


async def _refuse_older_replace(
    conn: AsyncConnection, replaced: set[str], version: int, ctx: LoadContext
) -> None:
    """409 when a policy's current replacing list is dated after this replace."""
    if not replaced:
        return
    assert ctx.dated is not None
    newest: dict[str, tuple[int, dt.date]] = {}
    for policy, dataset_id, as_of in await conn.execute(
        newest_list_replacements(version, sorted(replaced))
    ):
        newest.setdefault(policy, (dataset_id, as_of))
    newer = sorted((p, d, a) for p, (d, a) in newest.items() if a > ctx.dated)
    if newer:
        policy, dataset_id, as_of = newer[0]
        raise Conflict(
            f"The list of policy {policy!r} was last replaced by dataset {dataset_id}, dated "
            f"{as_of.isoformat()}, after this file's as_of {ctx.dated.isoformat()}: an older "
            "list never replaces a newer one. Load it with mode=append to add its entries, or "
            "with its true as_of if it is the newer list. Nothing was loaded."
        )


def _changes(
    before: Mapping[tuple[str, str, str], Mapping[str, Any]],
    after: Mapping[tuple[str, str, str], Mapping[str, Any]],
) -> dict[str, Any]:
    """What a load changed in the lists it touched, keyed (policy, issuer_id, list).

    Each part is ``{count, examples}`` (at most ``SUMMARY_EXAMPLES``, in key order); an example
    is ``{policy, issuer_id, list}``, and a ``changed`` one also says what changed:
    ``changes: {field: {before, after}}`` for each of ``_CONTENT`` that differs (dates ISO)."""

    def example(key: tuple[str, str, str]) -> dict[str, Any]:
        policy, issuer_id, kind = key
        return {"issuer_id": issuer_id, "list": kind, "policy": policy}

    def listed(keys: list[tuple[str, str, str]], detail: bool = False) -> dict[str, Any]:
        examples = []
        for key in sorted(keys)[:SUMMARY_EXAMPLES]:
            shown = example(key)
            if detail:
                shown["changes"] = {
                    c: {"before": _json(before[key][c]), "after": _json(after[key][c])}
                    for c in _CONTENT
                    if after[key][c] != before[key][c]
                }
            examples.append(shown)
        return {"count": len(keys), "examples": examples}

    added = [k for k in after if k not in before]
    removed = [k for k in before if k not in after]
    kept = [k for k in after if k in before]
    changed = [k for k in kept if any(after[k][c] != before[k][c] for c in _CONTENT)]
    return {
        "added": listed(added),
        "removed": listed(removed),
        "changed": listed(changed, detail=True),
        "unchanged": len(kept) - len(changed),
    }


def _superseded(pairs: list[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """The file's entries that do not take effect: an entry in force for the same (policy,
    issuer, list) was decided later. ``{count, examples: [{policy, issuer_id, list, row,
    decided_on, in_force: {decided_on, dataset_id, reason}}]}``; the entries stay recorded."""
    examples = [
        {
            "policy": row["policy"],
            "issuer_id": row["issuer_id"],
            "list": row["list"],
            "row": row["source_row"],
            "decided_on": _json(row["decided_on"]),
            "in_force": {
                "decided_on": _json(held["decided_on"]),
                "dataset_id": held["dataset_id"],
                "reason": held["reason"],
            },
        }
        for row, held in pairs[:SUMMARY_EXAMPLES]
    ]
    return {"count": len(pairs), "examples": examples}


def _json(value: Any) -> Any:
    """A summary value as JSON (the summary is a JSON column): dates as ISO text."""
    return value.isoformat() if isinstance(value, dt.date) else value
