"""Policies: draft versions, four-eyes approval, the version in force, overlays, diffs.

Services flush, never commit (the request commits). Validation of the document itself is in
``document.py``; this module adds what needs the database: the key in the URL, the policy's
fixed base, the base's approved version an overlay is checked against, numbering, approval.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.schemas import Actor
from app.kit.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from app.kit.inputs import quote, refuse_unstorable
from app.kit.time import utcnow
from app.models import Policy, PolicyVersion, VersionStatus
from app.policies.diff import DocumentDiff, diff_documents
from app.policies.document import (
    PolicyDocument,
    PolicyDocumentInvalid,
    canonical_json,
    document_data,
    document_sha256,
    merge_overlay,
    parse_document,
)
from app.policies.repository import PolicyRepository

Format = Literal["json", "yaml"]


@dataclass(frozen=True)
class CreatedVersion:
    policy: Policy
    version: PolicyVersion
    created: bool  # False: the same document was the latest draft already (idempotent retry)


# ---------------------------------------------------------------------------------------------
# Reading documents (JSON or YAML text)
# ---------------------------------------------------------------------------------------------

_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML, made strict for policy documents.

    Only true/false are booleans (YAML 1.1 would read the country code NO, and yes/on/off, as
    booleans); dates stay strings; anchors/aliases are refused (no expansion bombs); a key given
    twice in one mapping is an error, not a silent "last one wins".
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a policy document", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {quote(str(key))} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _body_error(msg: str) -> InvalidInput:
    return InvalidInput(
        f"The policy document cannot be read: {msg}", errors=[FieldError(("body",), msg)]
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {quote(key)} is given twice")
        result[key] = value
    return result


def read_document_text(raw: bytes, fmt: Format) -> Any:
    """Parse a JSON or YAML body; problems are 422 with the line and column (or the path of a
    string holding NUL or a lone surrogate, which no database can store)."""
    data = _parse_document_text(raw, fmt)
    if (where := refuse_unstorable(data)) is not None:
        raise _body_error(
            f"the string at {quote(where)} holds a NUL character or a lone surrogate, which "
            "cannot be stored; remove it"
        )
    return data


def _parse_document_text(raw: bytes, fmt: Format) -> Any:
    if not raw.strip():
        raise _body_error("the body is empty: send a policy document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _body_error(f"not UTF-8 (byte {exc.start})") from None
    if fmt == "json":
        try:
            return json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise _body_error(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        except ValueError as exc:
            raise _body_error(f"invalid JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _body_error(f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise _body_error(f"invalid YAML: {exc}") from None


def format_of_path(path: Path) -> Format:
    return "json" if path.suffix.lower() == ".json" else "yaml"


# ---------------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------------


def _invalid(
    errors: Sequence[FieldError], what: str = "The policy document is not valid"
) -> InvalidInput:
    shown = "; ".join(
        f"{'.'.join(str(p) for p in e.loc) or 'document'}: {e.msg}" for e in errors[:3]
    )
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return InvalidInput(
        f"{what}: {shown}{more}",
        errors=[FieldError(("body", *e.loc), e.msg) for e in errors],
    )


async def _base_for_overlay(
    repository: PolicyRepository, key: str, extends: str
) -> tuple[PolicyVersion | None, list[FieldError]]:
    """The base's latest approved version an overlay is validated against."""
    if extends == key:
        return None, [FieldError(("extends",), "a policy cannot extend itself")]
    base = await repository.get(extends)
    if base is None:
        return None, [FieldError(("extends",), f"there is no policy {extends!r} to extend")]
    if base.extends_key is not None:
        return None, [
            FieldError(
                ("extends",),
                f"{extends!r} is itself an overlay of {base.extends_key!r}; overlays of overlays "
                "are not supported: extend the base policy",
            )
        ]
    approved = await repository.last_approved(base.id)
    if approved is None:
        return None, [
            FieldError(
                ("extends",),
                f"policy {extends!r} has no approved version yet: an overlay is validated "
                "against its base's latest approved version",
            )
        ]
    return approved, []


async def create_version(
    session: AsyncSession, key: str, data: Any, author: Actor
) -> CreatedVersion:
    """Validate a document and store it as the next draft version of ``key``.

    The first version creates the policy; ``extends`` is fixed by it. An overlay is validated
    against its base's latest approved version (422 if the base has none). Posting the document
    of the latest draft again returns that draft (created=False).
    """
    repository = PolicyRepository(session)
    errors: list[FieldError] = []
    document: PolicyDocument | None = None
    try:
        document = parse_document(data)
    except PolicyDocumentInvalid as exc:
        errors.extend(exc.errors)
    raw = data if isinstance(data, Mapping) else {}
    if isinstance(raw.get("key"), str) and raw["key"] != key:
        errors.append(
            FieldError(("key",), f"the document's key {raw['key']!r} is not the URL's {key!r}")
        )
    policy = await repository.get(key, for_update=True)
    extends = raw.get("extends")
    if (
        policy is not None
        and (extends is None or isinstance(extends, str))
        and extends != policy.extends_key
    ):
        was = f"extends {policy.extends_key!r}" if policy.extends_key else "extends no policy"
        errors.append(
            FieldError(("extends",), f"policy {key!r} {was}; a new version cannot change it")
        )
    base_version: PolicyVersion | None = None
    if document is not None and document.extends is not None and not errors:
        base_version, base_errors = await _base_for_overlay(repository, key, document.extends)
        errors.extend(base_errors)
        if base_version is not None:
            base_document = PolicyDocument.model_validate(base_version.document)
            errors.extend(merge_overlay(base_document, document).problems)
    if errors or document is None:
        raise _invalid(errors)

    sha256 = document_sha256(document)
    if policy is None:
        policy = Policy(key=key, extends_key=document.extends, created_by=author.name)
        try:
            async with session.begin_nested():
                await repository.add(policy)
        except IntegrityError:
            raise Conflict(
                f"policy {key!r} was created by another request at the same time; retry"
            ) from None
        latest = None
    else:
        latest = await repository.latest(policy.id)
        if latest and latest.status == VersionStatus.draft.value and latest.sha256 == sha256:
            return CreatedVersion(policy=policy, version=latest, created=False)
    version = PolicyVersion(
        policy_id=policy.id,
        version=latest.version + 1 if latest else 1,
        status=VersionStatus.draft.value,
        document=document_data(document),
        sha256=sha256,
        base_version=base_version.version if base_version else None,
        created_by=author.name,
        created_by_key_id=author.key_id,
    )
    try:
        async with session.begin_nested():
            await repository.add_version(version)
    except IntegrityError:
        raise Conflict(f"another version of {key!r} was created at the same time; retry") from None
    return CreatedVersion(policy=policy, version=version, created=True)


async def load_policy_file(
    session: AsyncSession, content: bytes, fmt: Format, author: Actor
) -> CreatedVersion:
    """The command line's ``mayhold policies load FILE``: the key comes from the document."""
    data = read_document_text(content, fmt)
    key = data.get("key") if isinstance(data, Mapping) else None
    if not isinstance(key, str) or not key:
        raise _invalid([FieldError(("key",), "the document has no key")])
    return await create_version(session, key, data, author)


async def _policy(repository: PolicyRepository, key: str, *, for_update: bool = False) -> Policy:
    policy = await repository.get(key, for_update=for_update)
    if policy is None:
        raise NotFound(f"there is no policy {key!r}")
    return policy


async def _version(repository: PolicyRepository, policy: Policy, number: int) -> PolicyVersion:
    version = await repository.version(policy.id, number)
    if version is None:
        raise NotFound(f"policy {policy.key!r} has no version {number}")
    return version


async def approve(
    session: AsyncSession,
    key: str,
    number: int,
    approver: Actor,
    effective_from: datetime | None = None,
) -> tuple[Policy, PolicyVersion]:
    """Approve a draft: four eyes (not its author), effective now or later, never backdated."""
    repository = PolicyRepository(session)
    policy = await _policy(repository, key, for_update=True)
    version = await _version(repository, policy, number)
    if version.status != VersionStatus.draft.value:
        raise Conflict(
            f"version {number} of {key!r} is {version.status}; only a draft can be approved"
        )
    if (
        approver.key_id is not None and approver.key_id == version.created_by_key_id
    ) or approver.name == version.created_by:
        raise Forbidden(
            f"four eyes: version {number} of {key!r} was drafted by {version.created_by!r}; "
            "another key must approve it"
        )
    now = utcnow()
    effective = effective_from or now
    if effective < now:
        raise InvalidInput(
            "effective_from is in the past: an approval cannot be backdated (past decisions stay "
            "explained by the version that was in force).",
            errors=[FieldError(("body", "effective_from"), "must not be in the past")],
        )
    last = await repository.last_approved(policy.id)
    if last is not None and last.effective_from is not None and effective <= last.effective_from:
        raise Conflict(
            f"version {last.version} of {key!r} takes effect at "
            f"{last.effective_from.isoformat()}; a later approval must take effect after it"
        )
    if policy.extends_key is not None:
        base, problems = await _base_for_overlay(repository, key, policy.extends_key)
        if base is not None:
            document = PolicyDocument.model_validate(version.document)
            problems = list(
                merge_overlay(PolicyDocument.model_validate(base.document), document).problems
            )
        if problems:
            raise Conflict(
                f"version {number} of {key!r} no longer passes against its base "
                f"{policy.extends_key!r} (it changed since the draft): post a new draft",
                errors=[FieldError(("document", *p.loc), p.msg) for p in problems],
            )
    version.status = VersionStatus.approved.value
    version.approved_at = now
    version.approved_by = approver.name
    version.approved_by_key_id = approver.key_id
    version.effective_from = effective
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"version {number} of {key!r} was approved concurrently; reload") from None
    return policy, version


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyOverview:
    policy: Policy
    latest: PolicyVersion
    in_force: int | None


async def list_policies(session: AsyncSession) -> list[PolicyOverview]:
    repository = PolicyRepository(session)
    policies = await repository.list_all()
    latest = await repository.latest_per_policy()
    in_force = await repository.in_force_numbers(utcnow())
    return [
        PolicyOverview(policy=p, latest=latest[p.id], in_force=in_force.get(p.id))
        for p in policies
        if p.id in latest
    ]


async def get_policy(
    session: AsyncSession, key: str
) -> tuple[PolicyOverview, Sequence[PolicyVersion]]:
    repository = PolicyRepository(session)
    policy = await _policy(repository, key)
    versions = await repository.versions(policy.id)
    in_force = await repository.in_force(policy.id, utcnow())
    overview = PolicyOverview(
        policy=policy, latest=versions[-1], in_force=in_force.version if in_force else None
    )
    return overview, versions


async def get_version(session: AsyncSession, key: str, number: int) -> tuple[Policy, PolicyVersion]:
    repository = PolicyRepository(session)
    policy = await _policy(repository, key)
    return policy, await _version(repository, policy, number)


async def export_version(session: AsyncSession, key: str, number: int) -> tuple[str, bytes]:
    """A version's sha256 and its canonical JSON: exactly the bytes the sha256 covers (UTF-8,
    no trailing newline), so that ``sha256sum`` of them is the published hash. The stored
    document is hashed again first: ``ValueError`` if it no longer matches (it cannot, short of
    tampering with the database: approved versions are guarded by triggers). 404 as
    ``get_version``."""
    _, version = await get_version(session, key, number)
    canonical = canonical_json(PolicyDocument.model_validate(version.document))
    if hashlib.sha256(canonical).hexdigest() != version.sha256:
        raise ValueError(f"version {number} of {key!r} does not match its stored sha256")
    return version.sha256, canonical


async def get_in_force(
    session: AsyncSession, key: str, at: datetime
) -> tuple[Policy, PolicyVersion]:
    repository = PolicyRepository(session)
    policy = await _policy(repository, key)
    version = await repository.in_force(policy.id, at)
    if version is None:
        raise NotFound(f"no version of policy {key!r} is in force at {at.isoformat()}")
    return policy, version


async def get_version_in_force(session: AsyncSession, key: str, at: datetime) -> PolicyVersion:
    """The approved version of ``key`` with the latest effective_from <= ``at`` (else 404)."""
    return (await get_in_force(session, key, at))[1]


async def diff_versions(
    session: AsyncSession, key: str, number: int, against: int | None
) -> tuple[PolicyVersion, PolicyVersion, DocumentDiff]:
    repository = PolicyRepository(session)
    policy = await _policy(repository, key)
    version = await _version(repository, policy, number)
    if against is None:
        if number == 1:
            raise InvalidInput(
                "version 1 has no previous version: name one with ?against=",
                errors=[FieldError(("query", "against"), "required for version 1")],
            )
        against = number - 1
    other = await _version(repository, policy, against)
    return version, other, diff_documents(other.document, version.document)
