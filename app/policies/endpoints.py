from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.dependencies import Authorize, CurrentPrincipal
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.kit.db import DbSession
from app.kit.errors import PayloadTooLarge, UnsupportedMediaType
from app.kit.inputs import PolicyKey, Rfc3339, RowNumber
from app.kit.limits import BODY_MAX_DEFAULT, BODY_MAX_POLICY
from app.kit.openapi import problem_responses
from app.kit.time import utcnow
from app.models import Policy, PolicyVersion
from app.policies import service
from app.policies.diff import CollectionDiff, FieldChange
from app.policies.schemas import (
    Actor,
    ApproveRequest,
    CollectionDiffRead,
    FieldChangeRead,
    ItemChangesRead,
    ItemRef,
    PolicyRead,
    PolicySummary,
    VersionCreated,
    VersionDiff,
    VersionRead,
    VersionSummary,
)

router = APIRouter(max_body_size=BODY_MAX_DEFAULT, prefix="/v1/policies", tags=["policies"])

WritePrincipal = Annotated[Principal, Depends(Authorize(Scope.policies_write))]
ApprovePrincipal = Annotated[Principal, Depends(Authorize(Scope.policies_approve))]

MAX_DOCUMENT_BYTES = BODY_MAX_POLICY
_MEDIA_TYPES: dict[str, service.Format] = {
    "application/json": "json",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
}
_DOCUMENT = {"schema": {"$ref": "#/components/schemas/PolicyDocument"}}
_DOCUMENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A policy document: JSON, or YAML with Content-Type: application/yaml "
        f"(also application/x-yaml, text/yaml). At most {MAX_DOCUMENT_BYTES} bytes.",
        "content": {"application/json": _DOCUMENT, "application/yaml": _DOCUMENT},
    }
}


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"A policy document is at most {MAX_DOCUMENT_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise PayloadTooLarge(f"A policy document is at most {MAX_DOCUMENT_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _format(request: Request) -> service.Format:
    media_type = request.headers.get("content-type", "application/json").split(";")[0]
    fmt = _MEDIA_TYPES.get(media_type.strip().lower())
    if fmt is None:
        raise UnsupportedMediaType(
            f"Send the policy document as application/json or application/yaml, not {media_type!r}."
        )
    return fmt


def _created_by(version: PolicyVersion) -> Actor:
    return Actor(name=version.created_by, key_id=version.created_by_key_id)


def _summary(version: PolicyVersion) -> VersionSummary:
    return VersionSummary(
        version=version.version,
        status=version.status,
        sha256=version.sha256,
        created_at=version.created_at,
        created_by=_created_by(version),
        approved_at=version.approved_at,
        approved_by=(
            Actor(name=version.approved_by, key_id=version.approved_by_key_id)
            if version.approved_by is not None
            else None
        ),
        effective_from=version.effective_from,
    )


def _read(policy: Policy, version: PolicyVersion) -> VersionRead:
    return VersionRead(
        **_summary(version).model_dump(),
        key=policy.key,
        extends=policy.extends_key,
        base_version=version.base_version,
        document=version.document,
    )


def _title(version: PolicyVersion) -> str:
    return str(version.document.get("title", ""))


@router.post(
    "/{key}/versions",
    operation_id="createPolicyVersion",
    response_model=VersionCreated,
    status_code=201,
    summary="Add a draft version (the first creates the policy)",
    description="Validates the document against the metric vocabulary (and, for an overlay, "
    "against its base's latest approved version) and stores it as the next draft. 422 lists "
    "every problem with its path in the document. Posting the latest draft's document again "
    "answers 200 with that draft.",
    responses={
        200: {"description": "The same document is already the latest draft."},
        **problem_responses(401, 403, 409, 413, 415),
    },
    openapi_extra=_DOCUMENT_BODY,
    max_body_size=MAX_DOCUMENT_BYTES,
)
async def create_version(
    key: PolicyKey,
    request: Request,
    response: Response,
    principal: WritePrincipal,
    session: DbSession,
) -> VersionCreated:
    fmt = _format(request)
    data = service.read_document_text(await _read_body(request), fmt)
    result = await service.create_version(session, key, data, principal.actor)
    if not result.created:
        response.status_code = 200
    return VersionCreated(
        key=result.policy.key,
        version=result.version.version,
        status=result.version.status,
        sha256=result.version.sha256,
        created_at=result.version.created_at,
        created_by=_created_by(result.version),
    )


@router.post(
    "/{key}/versions/{version}/approve",
    operation_id="approvePolicyVersion",
    response_model=VersionRead,
    summary="Approve a draft (four eyes: not by the key that drafted it)",
    description="Makes the draft immutable and schedules it: it is in force from effective_from "
    "(default now; never in the past; after every earlier approval) until a later version "
    "takes effect. 403 for the drafting key, 409 for a version that is not a draft.",
    responses=problem_responses(401, 403, 404, 409),
)
async def approve_version(
    key: PolicyKey,
    version: RowNumber,
    principal: ApprovePrincipal,
    session: DbSession,
    body: ApproveRequest | None = None,
) -> VersionRead:
    policy, approved = await service.approve(
        session,
        key,
        version,
        principal.actor,
        body.effective_from if body else None,
    )
    return _read(policy, approved)


@router.get(
    "",
    operation_id="listPolicies",
    response_model=list[PolicySummary],
    summary="List policies",
    responses=problem_responses(401),
)
async def list_policies(_: CurrentPrincipal, session: DbSession) -> list[PolicySummary]:
    """Every policy: key, title, the overlay's base (`extends`), the latest version and
    the version in force now (null while none is approved and effective). Any valid key."""
    return [
        PolicySummary(
            key=o.policy.key,
            title=_title(o.latest),
            extends=o.policy.extends_key,
            created_at=o.policy.created_at,
            latest_version=o.latest.version,
            in_force_version=o.in_force,
        )
        for o in await service.list_policies(session)
    ]


@router.get(
    "/{key}",
    operation_id="getPolicy",
    response_model=PolicyRead,
    summary="A policy and its versions",
    responses=problem_responses(401, 404),
)
async def get_policy(key: PolicyKey, _: CurrentPrincipal, session: DbSession) -> PolicyRead:
    """A policy and the summary of each of its versions (status, sha256, author,
    approver, effective date). 404 for an unknown key. Any valid key."""
    overview, versions = await service.get_policy(session, key)
    return PolicyRead(
        key=overview.policy.key,
        title=_title(overview.latest),
        extends=overview.policy.extends_key,
        created_at=overview.policy.created_at,
        created_by=overview.policy.created_by,
        latest_version=overview.latest.version,
        in_force_version=overview.in_force,
        versions=[_summary(v) for v in versions],
    )


@router.get(
    "/{key}/in-force",
    operation_id="getPolicyInForce",
    response_model=VersionRead,
    summary="The version in force at a time",
    description="The approved version with the latest effective_from <= at (default now); 404 "
    "when none is.",
    responses=problem_responses(401, 404),
)
async def get_in_force(
    key: PolicyKey,
    _: CurrentPrincipal,
    session: DbSession,
    at: Annotated[Rfc3339 | None, Query(description="RFC 3339 with offset; default now.")] = None,
) -> VersionRead:
    policy, version = await service.get_in_force(session, key, at or utcnow())
    return _read(policy, version)


@router.get(
    "/{key}/versions/{version}",
    operation_id="getPolicyVersion",
    response_model=VersionRead,
    summary="One version: the document, its status, hash, author, approver and effective date",
    responses=problem_responses(401, 404),
)
async def get_version(
    key: PolicyKey, version: RowNumber, _: CurrentPrincipal, session: DbSession
) -> VersionRead:
    """One version of a policy: its document as validated, its status (`draft`, `approved`),
    the sha256 of its canonical JSON, who drafted and who approved it, and from when it is in
    force. 404 for an unknown policy or version. Any valid key."""
    policy, row = await service.get_version(session, key, version)
    return _read(policy, row)


@router.get(
    "/{key}/versions/{version}/document",
    operation_id="getPolicyVersionDocument",
    response_class=Response,
    summary="One version's canonical JSON: exactly the bytes its sha256 covers",
    description=(
        "The version's document as hashed: the fields its author gave, JSON with sorted keys "
        "and compact separators, UTF-8, nothing added (no trailing newline), so "
        "`curl ... | sha256sum` prints the version's `sha256`. The `ETag` is that sha256. "
        "The same bytes as `mayhold policies export KEY VERSION`."
    ),
    responses={
        200: {"content": {"application/json": _DOCUMENT}, "description": "The canonical JSON."},
        **problem_responses(401, 404),
    },
)
async def get_version_document(
    key: PolicyKey, version: RowNumber, _: CurrentPrincipal, session: DbSession
) -> Response:
    sha256, canonical = await service.export_version(session, key, version)
    return Response(canonical, media_type="application/json", headers={"ETag": f'"{sha256}"'})


def _changes(changes: Sequence[FieldChange]) -> list[FieldChangeRead]:
    return [
        FieldChangeRead(path=c.path, change=c.change, before=c.before, after=c.after)
        for c in changes
    ]


def _collection(diff: CollectionDiff) -> CollectionDiffRead:
    def ref(item: Any) -> ItemRef:
        title = item.get("title")
        return ItemRef(id=str(item["id"]), title=title if isinstance(title, str) else None)

    return CollectionDiffRead(
        added=[ref(i) for i in diff.added],
        removed=[ref(i) for i in diff.removed],
        changed=[ItemChangesRead(id=c.id, changes=_changes(c.changes)) for c in diff.changed],
    )


@router.get(
    "/{key}/versions/{version}/diff",
    operation_id="diffPolicyVersion",
    response_model=VersionDiff,
    summary="What changed from version `against` (default: the previous one) to this version",
    description="Rules, exceptions and position limits added, removed and changed field by "
    "field (matched by id); every other field by path.",
    responses=problem_responses(401, 404),
)
async def diff_version(
    key: PolicyKey,
    version: RowNumber,
    _: CurrentPrincipal,
    session: DbSession,
    against: Annotated[RowNumber | None, Query(description="The version to compare with.")] = None,
) -> VersionDiff:
    after, before, diff = await service.diff_versions(session, key, version, against)
    return VersionDiff(
        key=key,
        version=after.version,
        against=before.version,
        sha256=after.sha256,
        against_sha256=before.sha256,
        identical=diff.empty,
        rules=_collection(diff.collections["rules"]),
        exceptions=_collection(diff.collections["exceptions"]),
        position_limits=_collection(diff.collections["position_limits"]),
        changes=_changes(diff.changes),
    )
