from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.auth import service
from app.auth.dependencies import Authorize, CurrentPrincipal
from app.auth.schemas import KeyCreate, KeyCreated, KeyRead, Principal, WhoAmI
from app.auth.scopes import Scope
from app.kit.db import DbSession
from app.kit.inputs import Name
from app.kit.limits import BODY_MAX_DEFAULT
from app.kit.openapi import problem_responses
from app.models import ApiKey

router = APIRouter(max_body_size=BODY_MAX_DEFAULT, prefix="/v1", tags=["auth"])

AdminPrincipal = Annotated[Principal, Depends(Authorize(Scope.admin))]


def _read(row: ApiKey) -> KeyRead:
    return KeyRead(
        key_id=row.id,
        name=row.name,
        scopes=[Scope(s) for s in row.scopes],
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


@router.get(
    "/whoami",
    operation_id="getCurrentKey",
    response_model=WhoAmI,
    summary="The API key making this request",
    responses=problem_responses(401),
)
async def whoami(principal: CurrentPrincipal) -> WhoAmI:
    """The key this request authenticated with: `key_id`, `name` and its `scopes`. 401 without
    a valid key. Any valid key."""
    return WhoAmI(key_id=principal.key_id, name=principal.name, scopes=sorted(principal.scopes))


@router.get(
    "/keys",
    operation_id="listKeys",
    response_model=list[KeyRead],
    summary="List API keys (never their secrets)",
    responses=problem_responses(401, 403),
)
async def list_keys(_: AdminPrincipal, session: DbSession) -> list[KeyRead]:
    """Every API key, active and revoked: id, name, scopes, created and revoked times; never a
    secret (only a hash is stored). Scope `admin`."""
    return [_read(row) for row in await service.list_keys(session)]


@router.post(
    "/keys",
    operation_id="createKey",
    response_model=KeyCreated,
    status_code=201,
    summary="Create an API key; the secret is in this response only",
    responses=problem_responses(401, 403, 409),
)
async def create_key(body: KeyCreate, _: AdminPrincipal, session: DbSession) -> KeyCreated:
    """Creates a key with a unique `name` and its `scopes`; the response carries the secret
    (`key`), which is never shown again. 409 when the name is taken; 422 for an unknown scope.
    Scope `admin`."""
    issued = await service.create_key(session, name=body.name, scopes=frozenset(body.scopes))
    return KeyCreated(
        key_id=issued.principal.key_id,
        name=issued.principal.name,
        scopes=sorted(issued.principal.scopes),
        key=issued.key,
    )


@router.post(
    "/keys/{name}/revoke",
    operation_id="revokeKey",
    status_code=204,
    summary="Revoke an API key; it stops working at once",
    description="409 for the last active admin key (create another admin key first); an admin "
    "key may revoke itself while another active admin key remains.",
    responses=problem_responses(401, 403, 404, 409),
)
async def revoke_key(name: Name, request: Request, _: AdminPrincipal, session: DbSession) -> None:
    await service.revoke_key(session, name)
    cache = getattr(request.app.state, "key_cache", None)
    if isinstance(cache, service.KeyCache):
        cache.forget(name)
