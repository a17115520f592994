"""The outermost piece of every request: request id, access log, metrics, last-resort 500.

A pure ASGI middleware (not ``BaseHTTPMiddleware``): it sits on the pre-trade hot path and must
not buffer or copy bodies, and streamed responses (exclusion lists) must pass through untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
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
