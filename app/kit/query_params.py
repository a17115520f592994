"""Unknown query parameters are a 422, not silently ignored.

A misspelt ``as_of`` (``asof=2025-03-12``) would otherwise answer for *now* and look right. The
allowed names come from the route's own declared parameters, computed once per route.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

_allowed_by_route: dict[int, frozenset[str]] = {}


def _declared_query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        for field in current.query_params:
            annotation = field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                # A query-parameter model (``Annotated[Filters, Query()]``) accepts its fields.
                names.update(info.alias or name for name, info in annotation.model_fields.items())
            else:
                names.add(field.alias)
        pending.extend(current.dependencies)
    return frozenset(names)


def allowed_query_names(route: APIRoute) -> frozenset[str]:
    key = id(route)
    allowed = _allowed_by_route.get(key)
    if allowed is None:
        allowed = _allowed_by_route[key] = _declared_query_names(route.dependant)
    return allowed


async def forbid_unknown_query_params(request: Request) -> None:
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = allowed_query_names(route)
    unknown = [name for name in request.query_params if name not in allowed]
    if unknown:
        hint = f"; accepted: {', '.join(sorted(allowed))}" if allowed else "; none are accepted"
        raise RequestValidationError(
            [
                {
                    "type": "unknown_query_parameter",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter{hint}",
                    "input": request.query_params[name],
                }
                for name in unknown
            ]
        )
