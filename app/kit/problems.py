"""The one place where errors become RFC 9457 ``application/problem+json`` responses."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from app.kit.errors import AppError, DatabaseUnavailable, FieldError
from app.kit.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:mayhold:problem:"

log = get_logger("mayhold.errors")

_HTTP_SLUGS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str | None = None,
    request_id: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if request_id is not None:
        body["request_id"] = request_id
    if errors:
        body["errors"] = [_field_error(e) for e in errors]
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _field_error(error: FieldError) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": list(error.loc), "msg": error.msg}
    if error.row is not None:
        item["row"] = error.row
        item["column"] = error.column
    return item


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def _from_app_error(request: Request, exc: AppError) -> JSONResponse:
    return problem_response(
        status=exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        instance=request.url.path,
        request_id=_request_id(request),
        errors=exc.errors,
        headers=exc.headers,
    )


async def _app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if exc.status >= 500:
        log.warning("request failed", error=exc.slug, detail=exc.detail)
    return _from_app_error(request, exc)


def _validation_message(error: dict[str, Any]) -> str:
    msg = str(error.get("msg", "invalid value"))
    if error.get("type") == "extra_forbidden":
        return "unknown field: remove it, or check its spelling against the API reference"
    return msg


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(loc=tuple(err.get("loc", ())), msg=_validation_message(err))
        for err in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for e in errors[:5])
    return problem_response(
        status=422,
        slug="invalid-input",
        title="Invalid input",
        detail=f"The request is not valid: {summary}" if summary else "The request is not valid.",
        instance=request.url.path,
        request_id=_request_id(request),
        errors=errors,
    )


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # The framework's own 400s are bodies it cannot parse (JSON nested past the parser's
        # depth, multipart without a boundary): invalid input, 422 as the contract says.
        reason = exc.detail if isinstance(exc.detail, str) else "unreadable body"
        return problem_response(
            status=422,
            slug="invalid-input",
            title="Invalid input",
            detail=f"The request body cannot be read ({reason}). Send a well-formed body of a "
            "Content-Type this endpoint accepts: see /docs.",
            instance=request.url.path,
            request_id=_request_id(request),
            errors=[FieldError(loc=("body",), msg=reason)],
        )
    slug, title = _HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"There is no endpoint at {request.url.path}. See /docs for the API reference."
    if exc.status_code == 413:  # a body over the route's max_body_size (app/kit/limits.py)
        detail = (
            "The request body is larger than this endpoint accepts (see its description in "
            "the API reference); nothing was done."
        )
    return problem_response(
        status=exc.status_code,
        slug=slug,
        title=title,
        detail=detail,
        instance=request.url.path,
        request_id=_request_id(request),
        headers=dict(exc.headers) if exc.headers else None,
    )


# SQLSTATE classes and codes that mean "the database cannot serve now; the same request will
# work once it is back": connection exceptions (08), insufficient resources (53: too many
# connections, out of memory or disk), operator intervention (57P01 admin shutdown, 57P02 crash
# shutdown, 57P03 cannot connect now: starting up or recovering, 57P04 database dropped),
# and a standby that cannot serve (58P0x: system errors such as I/O failures).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57P", "58")
# SQLite's equivalents arrive as OperationalError: "database is locked" (another writer held
# the lock past the busy timeout), "unable to open database file", "disk I/O error".


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is not available now (503 and retry), as opposed to
    a bug or a bad statement (500). The one classification, for every driver and dialect."""
    if isinstance(exc, SQLAlchemyTimeoutError):  # the pool had no connection to give in time
        return True
    code = _sqlstate(exc)
    if code is not None and code.startswith(_UNAVAILABLE_SQLSTATE_CLASSES):
        return True
    if isinstance(exc, DBAPIError):
        # OperationalError (SQLite locked or unopenable, psycopg connection failures) and
        # InterfaceError (asyncpg: connection closed, does not exist) are the connection's;
        # connection_invalidated: SQLAlchemy recognised a disconnect.
        return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated
    if isinstance(exc, asyncpg.exceptions.InterfaceError | asyncpg.exceptions.PostgresError):
        # Raised unwrapped while connecting (SQLAlchemy wraps only errors on a connection).
        return isinstance(
            exc,
            asyncpg.exceptions.ConnectionDoesNotExistError
            | asyncpg.exceptions.CannotConnectNowError
            | asyncpg.exceptions.TooManyConnectionsError,
        )
    # The socket: refused, reset, unreachable host or network, DNS failure, connect timeout
    # (not every OSError: a missing file is a bug, not an outage).
    return isinstance(exc, ConnectionError | TimeoutError | socket.gaierror) or (
        isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS
    )


_UNREACHABLE_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ETIMEDOUT}
)


async def _database_error_handler(request: Request, exc: Exception) -> Response:
    if not database_unavailable(exc):
        raise exc  # a bug, not an outage: the last-resort 500 logs it in full
    log.warning("database unavailable", error=type(exc).__name__, detail=str(exc)[:200])
    return _from_app_error(
        request,
        DatabaseUnavailable(
            "The database cannot be reached. Nothing was decided or written; retry in "
            f"{DatabaseUnavailable.RETRY_AFTER_SECONDS} seconds.",
        ),
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    # Every class an outage can surface as (database_unavailable decides which instances are).
    for database_error in (
        DBAPIError,
        SQLAlchemyTimeoutError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.PostgresError,
        OSError,
        TimeoutError,
    ):
        app.add_exception_handler(database_error, _database_error_handler)
