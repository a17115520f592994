from __future__ import annotations

from typing import Literal

from app.kit.schemas import Schema


class Liveness(Schema):
    status: Literal["ok"] = "ok"


class Readiness(Schema):
    status: Literal["ready"] = "ready"
    database: str
    revision: list[str]
