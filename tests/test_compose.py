"""docker-compose.yml: Postgres and the service wired as the README says (no Docker engine is
needed: the file is read as YAML; `docker compose config` validates it where Compose is
installed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).parents[1]


def defaults(text: str) -> str:
    """``${NAME:-default}`` as Compose resolves it with NAME unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(defaults((ROOT / "docker-compose.yml").read_text()))
    return document


def test_postgres_keeps_its_data_in_a_named_volume_and_says_when_it_is_ready() -> None:
    db = compose()["services"]["db"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", db["image"])  # a pinned major version
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "pgdata" in compose()["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "ports" not in db  # only the service reaches the database


def test_the_service_waits_for_a_healthy_database_migrates_and_reports_readiness() -> None:
    services = compose()["services"]
    service, db = services["mayhold"], services["db"]
    assert service["build"] == "."
    assert service["depends_on"] == {"db": {"condition": "service_healthy"}}
    # `mayhold serve` migrates the database to head before it serves (contract).
    assert service["command"][:2] == ["mayhold", "serve"]
    assert "0.0.0.0" in service["command"]

    url = make_url(service["environment"]["MAYHOLD_DATABASE_URL"])
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port) == ("db", 5432)
    environment = db["environment"]
    assert (url.username, url.password, url.database) == (
        environment["POSTGRES_USER"],
        environment["POSTGRES_PASSWORD"],
        environment["POSTGRES_DB"],
    )
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["ports"] == ["8000:8000"]


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    instructions = [
        line.split(None, 1)
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith((" ", "#"))
    ]
    users = [args.strip() for name, *rest in instructions if name == "USER" for args in rest]
    assert users, "the Dockerfile sets no USER"
    assert users[-1] not in ("root", "0", "0:0")
    last_user = max(i for i, (name, *_) in enumerate(instructions) if name == "USER")
    assert all(name != "RUN" for name, *_ in instructions[last_user:])
    assert instructions[-1][0] == "CMD"
