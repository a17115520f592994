"""The outermost pieces of every request: request id, access log, metrics, last-resort 500;
and HTTP method semantics (HEAD, OPTIONS, Allow) for every route at once.

A pure ASGI middleware (not ``BaseHTTPMiddleware``): it sits on the pre-trade hot path and must
not buffer or copy bodies, and streamed responses (exclusion lists) must pass through untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit.logging import get_logger
from app.kit.metrics import HTTP_LATENCY, HTTP_REQUESTS
from app.kit.problems import problem_response

REQUEST_ID_HEADER = "x-request-id"
# A caller may pass its own id (an order id, a trace id) so the logs of both systems join up;
# anything that is not a short printable token is replaced with our own.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = get_logger("mayhold.http")


def _incoming_request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    # Label metrics by template (/v1/decisions/{id}), never by raw path: bounded cardinality.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        header_value = request_id.encode("latin-1")

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", header_value))
                # W3C Server-Timing: the server's time up to its answer, so a client can tell
                # it from the network's (a streamed body's own time is not in it).
                server_ms = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={server_ms:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            # Full detail goes to the log, never to the client.
            log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if response_started:
                raise
            response = problem_response(
                status=500,
                slug="internal-error",
                title="Internal server error",
                detail="The service hit an unexpected error. It has been logged; quote the "
                "request id when reporting it.",
                instance=scope["path"],
                request_id=request_id,
            )
            await response(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method: str = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            fields: dict[str, Any] = {
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            }
            principal = scope["state"].get("principal")
            if principal is not None:
                fields["api_key"] = principal.name
            log.info("request", **fields)
            structlog.contextvars.clear_contextvars()


# The request's method as the client sent it, when the app routes it as another (HEAD as GET).
REQUESTED_METHOD = "mayhold.requested_method"


def is_head(scope: Scope) -> bool:
    """Whether the client asked HEAD (routed as GET): an endpoint whose body is costly to
    compute (a list) may then answer its headers without it."""
    return scope.get(REQUESTED_METHOD) == "HEAD"


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(scope: Scope) -> list[str]:
    """Every method some route answers at this path (HEAD with GET, OPTIONS always), sorted; an
    empty list when no route has this path.

    Asks the router itself, one method at a time (FastAPI nests included routers, whose
    routes are not public): only for OPTIONS and 405 answers, never on a served request.
    """
    router = getattr(scope.get("app"), "router", None)
    routes = getattr(router, "routes", ())
    methods = set()
    for method in _METHODS:
        probe: Scope = {
            "type": "http",
            "method": method,
            "path": scope["path"],
            "root_path": scope.get("root_path", ""),
            "headers": [],
        }
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            methods.add(method)
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"})


class HttpMethodsMiddleware:
    """HTTP method semantics for every route at once (RFC 9110, section 9.3):

    - ``HEAD`` is answered as ``GET`` with the same status and headers and no body (a
      custodian's poller reads a list's ``ETag`` so); ``is_head`` lets an endpoint skip
      computing a body nobody reads.
    - ``OPTIONS`` on a path that exists answers 204 with ``Allow`` naming every method of every
      route at that path (a path served by several routes, ``GET``/``POST /v1/keys``, lists
      all); on a path that does not exist, the usual 404 problem.
    - A 405 says the same complete ``Allow``, not only the first matching route's methods.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            allowed = _allowed_methods(scope)
            if allowed:
                await Response(status_code=204, headers={"Allow": ", ".join(allowed)})(
                    scope, receive, send
                )
                return
        # A copy: the server reads its own scope's HEAD to send no body and expect none.
        routed = {**scope, "method": "GET", REQUESTED_METHOD: "HEAD"} if method == "HEAD" else scope

        async def send_fixed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(_allowed_methods(routed)).encode("latin-1")
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow)]}
            elif message["type"] == "http.response.body" and method == "HEAD":
                if message.get("more_body", False):
                    return  # the body of a HEAD answer is never sent; its end is
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(routed, receive, send_fixed)
        finally:
            if "route" in routed:  # the access log and metrics label by the matched route
                scope["route"] = routed["route"]
