"""``GET /v1/check`` without FastAPI's per-request machinery, for the requests that need none.

A single pre-trade check is the service's hot path, and most of its fixed cost was generic:
routing through every router, resolving the dependency graph (bearer scheme, principal, scope,
checker, the unknown-parameter guard), validating each query parameter through FastAPI's
wrappers. ``CheckFastPath`` sits innermost among the app's middleware (inside the request id,
access log, metrics, header limits and HEAD handling) and answers a ``GET /v1/check`` itself
when, and only when, the request is one the route would accept as it stands:

- only the route's own query parameter names, each at most once, each valid by the route's
  own declared field (the same pydantic validator FastAPI runs: ``Identifier``, ``PolicyKey``,
  ``Rfc3339``);
- ``Authorization: Bearer <key>`` for a key already verified (``KeyCache``) whose principal
  holds the scope ``check``;
- no request body announced (a body limit is the route's business).

Anything else (a missing or unknown key, a bad value, an unknown parameter, a cache miss,
an announced body) goes on to the route, untouched, so every refusal is the route's own
problem+json, byte for byte. The route (``app.screening.endpoints.check_one``) stays the one
definition: its OpenAPI operation, its parameter fields and its answer (``answer_check``,
called by both) are read from it, never restated. Errors the check itself raises (404 unknown
policy, 422 a future ``as_of``, 503) are rendered by the app's own exception handlers.
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.scopes import Scope as AuthScope
from app.auth.service import KeyCache, hash_key
from app.kit.query_params import allowed_query_names
from app.screening.endpoints import answer_check, check_one, checker_of
from app.screening.endpoints import router as screening_router

# The route this path answers for: found by its endpoint, so a renamed path follows.
_ROUTE = next(
    r for r in screening_router.routes if isinstance(r, APIRoute) and r.endpoint is check_one
)
_PATH = _ROUTE.path
# answer_check's parameters, in order, are the route's query parameters.
_PARAMETERS = tuple(inspect.signature(answer_check).parameters)[1:]


class _Fields:
    """The route's query parameter fields by name (FastAPI's own ``ModelField``s)."""

    def __init__(self, route: APIRoute) -> None:
        dependant = route.dependant
        self.by_name = {field.alias: field for field in dependant.query_params}
        # Exactly answer_check's parameters and the only names the route accepts: anything
        # else (a new parameter, a query model, a dependency taking its own) needs this module
        # to be revisited, not silently skipped.
        assert tuple(field.name for field in dependant.query_params) == _PARAMETERS, (
            "GET /v1/check's query parameters and answer_check's disagree"
        )
        assert allowed_query_names(route) == frozenset(self.by_name)


_FIELDS = _Fields(_ROUTE)


def _bearer(scope: Scope) -> str | None:
    """The key of ``Authorization: Bearer <key>`` read as HTTPBearer reads it (the first such
    header; scheme case-insensitive; key stripped), or None (the route then answers 401)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            scheme, _, key = text.partition(" ")
            key = key.strip()
            return key if scheme.lower() == "bearer" and key else None
    return None


def _has_body(scope: Scope) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])


def _parameters(scope: Scope) -> dict[str, Any] | None:
    """The validated query parameters (by name; absent ones None), or None when any is
    unknown, repeated or invalid: the route then answers, with its own 422."""
    query = scope["query_string"]
    # As Starlette's QueryParams splits and decodes them (latin-1, then percent-decoding).
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True) if query else []
    fields = _FIELDS.by_name
    values: dict[str, Any] = dict.fromkeys(_PARAMETERS)
    for name, raw in pairs:
        field = fields.get(name)
        if field is None or values[field.name] is not None:
            return None
        value, errors = field.validate(raw, values, loc=("query", name))
        if errors or value is None:
            return None
        values[field.name] = value
    return values


class CheckFastPath:
    """ASGI middleware: answers ``GET /v1/check`` directly when the route would accept the
    request as it stands (see the module docstring); passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != _PATH
            or scope["method"] != "GET"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        application = scope["app"]
        cache: KeyCache | None = getattr(application.state, "key_cache", None)
        key = _bearer(scope)
        principal = None if cache is None or key is None else cache.get(hash_key(key))
        if principal is None or not principal.has(AuthScope.check) or _has_body(scope):
            await self.app(scope, receive, send)
            return
        parameters = _parameters(scope)
        if parameters is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        # What routing and the principal dependency would have left for the access log, the
        # metrics (labelled by route) and HttpMethodsMiddleware.
        scope["route"] = _ROUTE
        state["principal"] = principal
        checker = checker_of(application, state.get("request_id"), principal)
        try:
            response = await answer_check(checker, **parameters)
        except Exception as exc:
            handler = _handler(application, exc)
            if handler is None:
                raise  # as on the route: the last-resort 500 logs it
            response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)


def _handler(application: Any, exc: Exception) -> Any:
    """The app's exception handler for ``exc`` (nearest class first, as Starlette's
    ExceptionMiddleware looks it up), or None."""
    handlers = application.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers and cls is not Exception:
            return handlers[cls]
    return None
