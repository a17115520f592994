"""The service's one error hierarchy.

Services and repositories raise these; ``app.kit.problems`` maps them, in one place, to RFC 9457
``application/problem+json`` responses. Nothing below the endpoint layer knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldError:
    """One problem with one input location (a body path, a query parameter, a file row/column)."""

    loc: tuple[str | int, ...]
    msg: str
    # For uploaded files: the 1-based line (the header is row 1) and the column's name.
    row: int | None = None
    column: str | None = None

    @classmethod
    def in_file(cls, row: int, column: str | None, msg: str) -> FieldError:
        loc: tuple[str | int, ...] = ("file", row) if column is None else ("file", row, column)
        return cls(loc=loc, msg=msg, row=row, column=column)


class AppError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = headers or {}


class NotAuthenticated(AppError):
    status = 401
    slug = "not-authenticated"
    title = "Not authenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="mayhold"'})


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class FourEyesRequired(Forbidden):
    """The key that proposed something may not also confirm it (a data steward's resolution
    of a published-exclusions entry): another key must."""

    slug = "four-eyes-required"
    title = "Another key must confirm"


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(AppError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(AppError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class InvalidInput(AppError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class ServiceUnavailable(AppError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot serve now (down, restarting, out of connections, locked)."""

    slug = "database-unavailable"
    title = "Database unavailable"
    # Long enough for a restart or a failover to finish, short enough for a desk's retry.
    RETRY_AFTER_SECONDS: ClassVar[int] = 5

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        retry = {"Retry-After": str(self.RETRY_AFTER_SECONDS)}
        super().__init__(detail, errors=errors, headers={**retry, **(headers or {})})
