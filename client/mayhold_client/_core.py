"""What the sync and async clients share: building each request, and reading each answer.

The clients only send: every path, parameter and header is decided here, once, so ``Client`` and
``AsyncClient`` cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx

from mayhold_client.errors import MayholdError, error_from_response
from mayhold_client.models import ListDownload, ListRow, Order, Verdict

USER_AGENT = "mayhold-client/0.1.0"
# A list of a whole universe can take a while to compute and stream; a check answers in
# milliseconds. Connecting is bounded separately: a service that is down fails fast.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# The listing's largest page (GET /v1/decisions?limit=): fewest round trips for an export.
DECISIONS_PAGE = 1000

Level = Literal["issuer", "instrument"]


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request, independent of the client that sends it."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _time(name: str, value: dt.datetime) -> str:
    if value.tzinfo is None:
        # The service takes RFC 3339 times with an offset only: a naive time is ambiguous.
        raise ValueError(f"{name} needs a timezone (e.g. datetime.now(datetime.UTC))")
    return value.isoformat()


def _segment(value: str) -> str:
    return quote(value, safe="")


def _params(**values: str | dt.datetime | int | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        key = name.rstrip("_")  # from_ -> from
        params[key] = _time(key, value) if isinstance(value, dt.datetime) else str(value)
    return params


def check(
    policy: str | None,
    instrument: str | None,
    issuer: str | None,
    portfolio: str | None,
    as_of: dt.datetime | None,
) -> Call:
    return Call(
        "GET",
        "/v1/check",
        _params(
            policy=policy, instrument=instrument, issuer=issuer, portfolio=portfolio, as_of=as_of
        ),
    )


def check_batch(
    policy: str | None,
    instruments: Sequence[str] | None,
    orders: Sequence[Order] | None,
    portfolio: str | None,
    as_of: dt.datetime | None,
) -> Call:
    if isinstance(instruments, str):  # a lone ISIN would be read as 12 one-letter instruments
        raise TypeError("instruments must be a sequence of identifiers, not one string")
    body: dict[str, Any] = {}
    if policy is not None:
        body["policy"] = policy
    if portfolio is not None:
        body["portfolio"] = portfolio
    if instruments is not None:
        body["instruments"] = list(instruments)
    if orders is not None:
        body["orders"] = [order.to_json() for order in orders]
    if as_of is not None:
        body["as_of"] = _time("as_of", as_of)
    return Call("POST", "/v1/checks", json=body)


def quoted_etag(etag: str) -> str:
    """An entity tag as ``If-None-Match`` takes it: a bare list token is quoted."""
    etag = etag.strip()
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def download_list(
    policy: str,
    level: Level,
    etag: str | None,
    since_token: str | None,
    as_of: dt.datetime | None,
    portfolio: str | None,
) -> Call:
    headers = {"Accept": "application/x-ndjson"}
    if etag is not None:
        headers["If-None-Match"] = quoted_etag(etag)
    return Call(
        "GET",
        f"/v1/lists/{_segment(policy)}",
        _params(format="ndjson", level=level, since=since_token, as_of=as_of, portfolio=portfolio),
        headers=headers,
    )


def list_answer(
    response: httpx.Response, etag: str | None, since_token: str | None, lines: Iterable[str]
) -> ListDownload:
    """The download from a 200 (its NDJSON ``lines``) or a 304 (no body)."""
    header = response.headers.get("X-List-Token") or response.headers.get("ETag") or etag or ""
    token = header.removeprefix("W/").strip().strip('"')
    if response.status_code == 304:
        return ListDownload(token=token, rows=(), not_modified=True, delta=since_token is not None)
    rows = tuple(ListRow.from_json(parse_json(line)) for line in lines if line.strip())
    return ListDownload(token=token, rows=rows, not_modified=False, delta=since_token is not None)


def decisions(
    instrument: str | None,
    issuer_id: str | None,
    policy: str | None,
    verdict: Verdict | None,
    decided_from: dt.datetime | None,
    decided_before: dt.datetime | None,
    cursor: str | None,
    page_size: int,
) -> Call:
    return Call(
        "GET",
        "/v1/decisions",
        _params(
            instrument=instrument,
            issuer_id=issuer_id,
            policy=policy,
            verdict=verdict,
            from_=decided_from,
            to=decided_before,
            cursor=cursor,
            limit=page_size,
        ),
    )


def decision(decision_id: str) -> Call:
    return Call("GET", f"/v1/decisions/{_segment(str(decision_id))}")


def verify(decided_from: dt.datetime | None, decided_before: dt.datetime | None) -> Call:
    return Call("GET", "/v1/decisions/verify", _params(from_=decided_from, to=decided_before))


def parse_json(content: str | bytes) -> Any:
    """JSON with its numbers as ``Decimal`` (a revenue share of 5.1 % stays 5.1, exactly)."""
    return json.loads(content, parse_float=Decimal)


def error(response: httpx.Response, content: bytes) -> MayholdError:
    """The exception for an error response whose body has been read."""
    try:
        body = parse_json(content) if content else None
    except ValueError:  # not JSON: a proxy's error page, say
        body = None
    return error_from_response(
        response.status_code, response.reason_phrase, body, content.decode("utf-8", "replace")
    )


def headers(api_key: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, **extra}
