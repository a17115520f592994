"""Loading files through the real HTTP endpoint, as a data steward's tooling would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import bearer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
# The published files live beside the repository (shared/data/real), in CI as on a laptop.
REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"

UNIVERSE = ("issuers", "instruments")


def real_file(relative: str) -> Path:
    path = REAL_DATA / relative
    assert path.exists(), f"{path} is missing: the repository must sit beside shared/"
    return path


async def load(
    client: httpx.AsyncClient,
    key: str,
    kind: str,
    body: Path | bytes | str,
    **params: str,
) -> httpx.Response:
    if isinstance(body, Path):
        content = body.read_bytes()
    elif isinstance(body, str):
        content = body.encode("utf-8")
    else:
        content = body
    return await client.post(
        "/v1/datasets",
        params={"kind": kind, **params},
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "text/csv"},
    )


async def load_ok(
    client: httpx.AsyncClient, key: str, kind: str, body: Path | bytes | str, **params: str
) -> dict[str, Any]:
    response = await load(client, key, kind, body, **params)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def load_universe(client: httpx.AsyncClient, key: str) -> None:
    """The fixture issuers and instruments (what every other kind refers to)."""
    await load_ok(client, key, "issuers", FIXTURES / "issuers.csv")
    await load_ok(client, key, "instruments", FIXTURES / "instruments.csv")


async def datasets(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    """``GET /v1/datasets`` as ``key`` sees it (newest first)."""
    response = await client.get("/v1/datasets", headers=bearer(key))
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result
