"""Request size limits, enforced before any work starts.

Bodies: FastAPI's own ``max_body_size`` (``BODY_MAX_DEFAULT`` on every router, larger limits on
the routes that need them: ``BODY_MAX_*``; not on the app, whose limiter would sit outside the
middleware that makes every error problem+json; dataset uploads are bounded by their own
routes). It refuses a declared ``Content-Length`` over the limit before reading a byte, and a
streamed body as soon as it passes the limit. Headers: bounded
here (uvicorn bounds them too, but not every server in front does, nor the test transport).

Starlette answers a declared oversize body with its own ``text/plain`` 413;
``RequestLimitsMiddleware`` turns that into problem+json like every other error.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit.problems import problem_response

# Every route's default: key creation, approvals and other small JSON bodies.
BODY_MAX_DEFAULT = 64 * 1024
# POST /v1/checks: 10,000 identifiers of at most 64 characters fit (10,000 ISINs are ~160 KB).
BODY_MAX_CHECKS = 1024 * 1024
# A policy document (the shipped ones are a few KB to a few tens of KB).
BODY_MAX_POLICY = 512 * 1024

# All request headers together, and any one of them (a bearer key is ~60 characters).
HEADERS_MAX_TOTAL = 32 * 1024
HEADER_MAX = 8 * 1024


def _headers_too_large(scope: Scope) -> bool:
    total = 0
    for name, value in scope.get("headers", ()):
        size = len(name) + len(value)
        if size > HEADER_MAX:
            return True
        total += size
    return total > HEADERS_MAX_TOTAL


class RequestLimitsMiddleware:
    """431 for oversized headers; problem+json for Starlette's plain-text 413."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _headers_too_large(scope):
            response = problem_response(
                status=431,
                slug="headers-too-large",
                title="Request header fields too large",
                detail=f"The request's headers exceed {HEADER_MAX} bytes for one header or "
                f"{HEADERS_MAX_TOTAL} bytes together; send smaller ones.",
                instance=scope["path"],
                request_id=scope.get("state", {}).get("request_id"),
            )
            await response(scope, receive, send)
            return

        replacing = False

        async def send_problem_413(message: Message) -> None:
            nonlocal replacing
            if message["type"] == "http.response.start" and message["status"] == 413:
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                if content_type.startswith(b"text/plain"):
                    replacing = True
                    response = problem_response(
                        status=413,
                        slug="payload-too-large",
                        title="Payload too large",
                        detail="The request body is larger than this endpoint accepts (see its "
                        "description in the API reference); nothing was read or done.",
                        instance=scope["path"],
                        request_id=scope.get("state", {}).get("request_id"),
                    )
                    await response(scope, receive, send)
                    return
            if replacing:  # the plain-text body that went with it
                return
            await send(message)

        await self.app(scope, receive, send_problem_413)
