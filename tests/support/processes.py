"""The `mayhold` command as an operator runs it: one-off commands, and `mayhold serve`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx


def mayhold(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one `mayhold` command on the database at ``url``; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=_environment(url, "WARNING"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def shell(
    command: str, env: dict[str, str] | None = None, *, cwd: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a shell command line as a user types it (``/bin/sh -c``), with this interpreter's
    ``mayhold`` first on PATH; ``env`` adds to (or overrides) this process's environment."""
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["/bin/sh", "-c", command],
        env={**os.environ, "PATH": path, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Where this interpreter's console scripts (``mayhold``) are: the virtualenv's bin directory.
BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(
    url: str, *, log_level: str = "WARNING", capture: bool = False, workers: int = 1
) -> tuple[subprocess.Popen[Any], int]:
    """`mayhold serve --workers N` on a free port (output captured as text, or discarded); the
    process and its port. The caller stops it."""
    port = free_port()
    output: dict[str, Any] = (
        {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        if capture
        else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=_environment(url, log_level),
        **output,
    )
    return process, port


def _environment(url: str, log_level: str) -> dict[str, str]:
    return {**os.environ, "MAYHOLD_DATABASE_URL": url, "MAYHOLD_LOG_LEVEL": log_level}


async def answering(
    client: httpx.AsyncClient,
    path: str = "/healthz",
    *,
    process: subprocess.Popen[Any] | None = None,
    seconds: float = 30,
) -> None:
    """Wait until a started server answers ``path`` with 200 (``/readyz``: and its database is
    at head); fail when ``process`` exits first or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if (await client.get(path)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"mayhold serve exited ({process.returncode}): {stderr}")
        assert time.monotonic() < deadline, f"mayhold serve did not answer {path} in {seconds} s"
        await asyncio.sleep(0.1)
