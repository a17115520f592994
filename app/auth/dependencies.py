"""FastAPI dependencies: ``Authorize(Scope.x)`` on an endpoint makes it need that scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.kit.db import read_only_sessions
from app.kit.errors import Forbidden, NotAuthenticated

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer mh_...`")


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise NotAuthenticated(
            "This endpoint needs an API key: send 'Authorization: Bearer <key>'."
        )
    cache: service.KeyCache | None = getattr(request.app.state, "key_cache", None)
    principal = await service.authenticate(
        read_only_sessions(request), credentials.credentials, cache
    )
    request.state.principal = principal
    return principal


def require_scope(principal: Principal, scope: Scope) -> Principal:
    if not principal.has(scope):
        raise Forbidden(
            f"The key {principal.name!r} lacks the scope '{scope.value}' this endpoint "
            "needs. Ask an administrator for a key with that scope."
        )
    return principal


def Authorize(scope: Scope) -> Callable[..., Awaitable[Principal]]:  # noqa: N802
    async def authorized(
        principal: Annotated[Principal, Depends(get_principal)],
    ) -> Principal:
        return require_scope(principal, scope)

    return authorized


def AuthorizeAny(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:  # noqa: N802
    """Any one of ``scopes`` suffices (e.g. authors and approvers may both preview impact)."""

    async def require_one(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not any(principal.has(scope) for scope in scopes):
            wanted = " or ".join(f"'{s.value}'" for s in scopes)
            raise Forbidden(
                f"The key {principal.name!r} lacks the scope {wanted} this endpoint needs."
            )
        return principal

    return require_one


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
