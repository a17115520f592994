"""The service's errors (RFC 9457 problem+json) as exceptions.

Every error response carries ``type``, ``title``, ``status`` and ``detail``; validation errors add
``errors`` (each with ``loc`` and ``msg``; file rows add ``row`` and ``column``). The exception
raised is chosen by status: catch ``MayholdError`` for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Conflict",
    "FieldError",
    "MayholdError",
    "NotAuthenticated",
    "NotFound",
    "PermissionDenied",
    "ServiceUnavailable",
    "ValidationError",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation problem: where (``loc``: e.g. ``("query", "instrument")``,
    ``("body", "orders", 0, "side")``), what, and for an uploaded file the row and column."""

    loc: tuple[str | int, ...]
    msg: str
    row: int | None = None
    column: str | None = None


class MayholdError(Exception):
    """An error response from the service (or a response that is not the service's at all, such
    as a proxy's 502 page: then ``type`` is ``about:blank`` and ``detail`` its text)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type: str = "about:blank",  # RFC 9457 names the member "type"
        errors: tuple[FieldError, ...] = (),
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors
        self.request_id = request_id  # quote it when asking the service's operators for help


class NotAuthenticated(MayholdError):
    """401: no API key, or a wrong or revoked one."""


class PermissionDenied(MayholdError):
    """403: the key lacks the scope the endpoint needs."""


class NotFound(MayholdError):
    """404: no such policy, decision, portfolio..."""


class Conflict(MayholdError):
    """409: the request contradicts the service's state (e.g. a stale list replacement)."""


class ValidationError(MayholdError):
    """422: the request is not valid; ``errors`` says where. Nothing was done."""


class ServiceUnavailable(MayholdError):
    """503: a dependency (the database) is unavailable; nothing was done. Retry later."""


_BY_STATUS: dict[int, type[MayholdError]] = {
    401: NotAuthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    503: ServiceUnavailable,
}


def _field_error(raw: Any) -> FieldError:
    loc = raw.get("loc") if isinstance(raw, dict) else None
    return FieldError(
        loc=tuple(loc) if isinstance(loc, list) else (),
        msg=str(raw.get("msg", "")) if isinstance(raw, dict) else str(raw),
        row=raw.get("row") if isinstance(raw, dict) else None,
        column=raw.get("column") if isinstance(raw, dict) else None,
    )


def error_from_response(status: int, reason: str, body: Any, text: str) -> MayholdError:
    """The exception for an error response: ``body`` is its parsed JSON (None if it had none)."""
    cls = _BY_STATUS.get(status, MayholdError)
    if isinstance(body, dict) and "title" in body and "detail" in body:
        errors = body.get("errors") or []
        return cls(
            status,
            str(body["title"]),
            str(body["detail"]),
            type=str(body.get("type", "about:blank")),
            errors=tuple(_field_error(e) for e in errors if isinstance(errors, list)),
            request_id=body.get("request_id"),
        )
    return cls(status, reason or "Error", text[:500] or reason)
