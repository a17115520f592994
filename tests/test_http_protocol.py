"""The server's own answer to a request it cannot parse is problem+json (app/kit/http_protocol.py),
over a real socket to uvicorn with the protocol ``mayhold serve`` runs."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn

from app.kit.http_protocol import ProblemHttpToolsProtocol
from app.kit.settings import Settings
from app.main import create_app


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    # No database is reached: the protocol answers before the app sees a request.
    config = uvicorn.Config(
        create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", index_enabled=False)),
        host="127.0.0.1",
        port=port,
        http=ProblemHttpToolsProtocol,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    yield port
    server.should_exit = True
    await task


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"POST /v1/checks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_http_is_a_problem(server_port: int, request_bytes: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
    writer.write(request_bytes)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request"
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert problem["type"] == "urn:mayhold:problem:malformed-http"
    assert problem["status"] == 400
    assert "nothing was done" in problem["detail"]


async def test_a_wellformed_request_still_reaches_the_app(server_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'{"status":"ok"}')
