"""``Client`` (blocking) and ``AsyncClient`` (asyncio): the same methods, the same answers.

Both take the service's base URL and an API key; each method needs the key's scope (``check``,
``lists:read``, ``decisions:read``). Errors raise ``MayholdError`` subclasses (401, 403, 404,
409, 422, 503); a network failure raises httpx's ``TransportError``. Pass ``http=`` to bring
your own ``httpx.Client``/``httpx.AsyncClient`` (proxies, certificates, a test transport); the
client then leaves closing it to you.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any

import httpx

from mayhold_client import _core
from mayhold_client._core import Call, Level
from mayhold_client.models import (
    ChainVerification,
    Decision,
    ListDownload,
    Order,
    StoredDecision,
    Verdict,
)

__all__ = ["AsyncClient", "Client"]


class _Base:
    def __init__(self, base_url: str, api_key: str) -> None:
        if not api_key:
            raise ValueError("an API key is needed (mayhold keys create, or POST /v1/keys)")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key

    def _request_args(self, call: Call) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": self._base_url + call.path,
            "params": call.params,
            "json": call.json,
            "headers": _core.headers(self._api_key, call.headers),
        }


class Client(_Base):
    """The blocking client: ``with Client(url, key) as mayhold: mayhold.check(...)``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout | float = _core.DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _json(self, call: Call) -> Any:
        response = self._http.request(**self._request_args(call))
        if response.status_code >= 400:
            raise _core.error(response, response.content)
        return _core.parse_json(response.content)

    def check(
        self,
        policy: str | None = None,
        *,
        instrument: str | None = None,
        issuer: str | None = None,
        portfolio: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> Decision:
        """``GET /v1/check``: may we hold this instrument (ISIN, CUSIP, SEDOL or FIGI) or this
        issuer (id or LEI) under ``policy``, or in ``portfolio`` (its policy and account)?
        ``as_of`` (timezone-aware) asks about a past time. The decision is logged before it
        is returned. Raises ``ValidationError`` (422) for a bad identifier or combination,
        ``NotFound`` for an unknown policy or portfolio."""
        return Decision.from_json(
            self._json(_core.check(policy, instrument, issuer, portfolio, as_of))
        )

    def check_batch(
        self,
        policy: str | None = None,
        *,
        instruments: Sequence[str] | None = None,
        orders: Sequence[Order] | None = None,
        portfolio: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> list[Decision]:
        """``POST /v1/checks``: up to 10,000 ``instruments``, or pre-trade ``orders`` in
        ``portfolio`` (each judged on the current holdings, position limits included); the
        decisions in the order asked."""
        body = self._json(_core.check_batch(policy, instruments, orders, portfolio, as_of))
        return [Decision.from_json(d) for d in body["decisions"]]

    def download_list(
        self,
        policy: str,
        *,
        etag: str | None = None,
        since_token: str | None = None,
        level: Level = "instrument",
        as_of: dt.datetime | None = None,
        portfolio: str | None = None,
    ) -> ListDownload:
        """``GET /v1/lists/{policy}`` (NDJSON, streamed): the exclusion and watch list.

        ``etag``: the token of the list you hold; unchanged, the answer is ``not_modified``
        with no rows (a 304: nothing computed or sent). ``since_token``: that same token, to
        receive only the rows added, removed or changed since (``rows[i].change``). A token
        the service cannot use (another database's, malformed) raises ``ValidationError``:
        download the whole list then (no ``since_token``).
        """
        call = _core.download_list(policy, level, etag, since_token, as_of, portfolio)
        with self._http.stream(**self._request_args(call)) as response:
            if response.status_code >= 400:
                raise _core.error(response, response.read())
            return _core.list_answer(response, etag, since_token, response.iter_lines())

    def decisions(
        self,
        *,
        instrument: str | None = None,
        issuer_id: str | None = None,
        policy: str | None = None,
        verdict: Verdict | None = None,
        decided_from: dt.datetime | None = None,
        decided_before: dt.datetime | None = None,
        page_size: int = _core.DECISIONS_PAGE,
    ) -> Iterator[StoredDecision]:
        """``GET /v1/decisions``: the logged decisions matching every filter given, oldest
        first, following the cursor page by page (lazily: stop iterating to stop asking)."""
        cursor: str | None = None
        while True:
            call = _core.decisions(
                instrument,
                issuer_id,
                policy,
                verdict,
                decided_from,
                decided_before,
                cursor,
                page_size,
            )
            page = self._json(call)
            for body in page["decisions"]:
                yield StoredDecision.from_json(body)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def decision(self, decision_id: str) -> StoredDecision:
        """``GET /v1/decisions/{id}``: one logged decision, as returned, with its audit record;
        ``NotFound`` if there is none."""
        return StoredDecision.from_json(self._json(_core.decision(decision_id)))

    def verify_decisions(
        self, *, decided_from: dt.datetime | None = None, decided_before: dt.datetime | None = None
    ) -> ChainVerification:
        """``GET /v1/decisions/verify``: are the decisions of [from, before) unaltered?"""
        return ChainVerification.from_json(self._json(_core.verify(decided_from, decided_before)))


class AsyncClient(_Base):
    """The asyncio client: ``async with AsyncClient(url, key) as mayhold: await
    mayhold.check(...)``. Same methods and answers as ``Client``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout | float = _core.DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _json(self, call: Call) -> Any:
        response = await self._http.request(**self._request_args(call))
        if response.status_code >= 400:
            raise _core.error(response, response.content)
        return _core.parse_json(response.content)

    async def check(
        self,
        policy: str | None = None,
        *,
        instrument: str | None = None,
        issuer: str | None = None,
        portfolio: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> Decision:
        """See ``Client.check``."""
        return Decision.from_json(
            await self._json(_core.check(policy, instrument, issuer, portfolio, as_of))
        )

    async def check_batch(
        self,
        policy: str | None = None,
        *,
        instruments: Sequence[str] | None = None,
        orders: Sequence[Order] | None = None,
        portfolio: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> list[Decision]:
        """See ``Client.check_batch``."""
        body = await self._json(_core.check_batch(policy, instruments, orders, portfolio, as_of))
        return [Decision.from_json(d) for d in body["decisions"]]

    async def download_list(
        self,
        policy: str,
        *,
        etag: str | None = None,
        since_token: str | None = None,
        level: Level = "instrument",
        as_of: dt.datetime | None = None,
        portfolio: str | None = None,
    ) -> ListDownload:
        """See ``Client.download_list``."""
        call = _core.download_list(policy, level, etag, since_token, as_of, portfolio)
        async with self._http.stream(**self._request_args(call)) as response:
            if response.status_code >= 400:
                raise _core.error(response, await response.aread())
            lines = [line async for line in response.aiter_lines()]
            return _core.list_answer(response, etag, since_token, lines)

    async def decisions(
        self,
        *,
        instrument: str | None = None,
        issuer_id: str | None = None,
        policy: str | None = None,
        verdict: Verdict | None = None,
        decided_from: dt.datetime | None = None,
        decided_before: dt.datetime | None = None,
        page_size: int = _core.DECISIONS_PAGE,
    ) -> AsyncIterator[StoredDecision]:
        """See ``Client.decisions``: ``async for stored in mayhold.decisions(...)``."""
        cursor: str | None = None
        while True:
            call = _core.decisions(
                instrument,
                issuer_id,
                policy,
                verdict,
                decided_from,
                decided_before,
                cursor,
                page_size,
            )
            page = await self._json(call)
            for body in page["decisions"]:
                yield StoredDecision.from_json(body)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    async def decision(self, decision_id: str) -> StoredDecision:
        """See ``Client.decision``."""
        return StoredDecision.from_json(await self._json(_core.decision(decision_id)))

    async def verify_decisions(
        self, *, decided_from: dt.datetime | None = None, decided_before: dt.datetime | None = None
    ) -> ChainVerification:
        """See ``Client.verify_decisions``."""
        return ChainVerification.from_json(
            await self._json(_core.verify(decided_from, decided_before))
        )
