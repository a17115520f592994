"""Helpers for policy tests: the shipped files, posting documents, a base policy for overlays."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.kit.settings import REPO_ROOT

POLICIES_DIR = REPO_ROOT / "policies"
SHIPPED = ("rpf", "asr", "dk-pension", "pensura")


def shipped_path(key: str) -> Path:
    return POLICIES_DIR / f"{key}.yaml"


def shipped(key: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(shipped_path(key).read_text(encoding="utf-8"))
    return data


async def post_document(
    client: httpx.AsyncClient,
    key: str,
    document: dict[str, Any] | str | bytes,
    headers: dict[str, str],
    content_type: str = "application/json",
) -> httpx.Response:
    if isinstance(document, dict):
        body: str | bytes = json.dumps(document)
    else:
        body = document
    return await client.post(
        f"/v1/policies/{key}/versions",
        content=body,
        headers={**headers, "Content-Type": content_type},
    )


async def approve(
    client: httpx.AsyncClient,
    key: str,
    version: int,
    headers: dict[str, str],
    effective_from: str | None = None,
) -> httpx.Response:
    body = {} if effective_from is None else {"effective_from": effective_from}
    return await client.post(
        f"/v1/policies/{key}/versions/{version}/approve", json=body, headers=headers
    )


def rule(
    rule_id: str, when: dict[str, Any], outcome: str = "exclude", **extra: Any
) -> dict[str, Any]:
    return {
        "id": rule_id,
        "title": f"rule {rule_id}",
        "source": "test",
        "when": when,
        "outcome": outcome,
        **extra,
    }


# A base policy using every feature an overlay could loosen.
HOUSE: dict[str, Any] = {
    "key": "house",
    "title": "House policy",
    "unknown": "block",
    "data": {
        "max_age_days": 400,
        "providers": {"revenue_pct.tobacco": ["iss"]},
        "percent_bands": "upper",
    },
    "propagation": {
        "subsidiary_to_parent": {"op": ">", "control_pct": 50},
        "state_owner": {"op": ">=", "pct": 50},
        "underlying": True,
    },
    "rules": [
        rule(
            "tobacco",
            {"metric": "revenue_pct.tobacco", "op": ">", "value": 50},
            applies_to={"issuer_kinds": ["company"]},
        ),
        rule(
            "corruption",
            {"metric": "country.cpi.score", "op": "<=", "value": 19},
            applies_to={"issuer_kinds": ["sovereign"]},
        ),
        rule(
            "freedom",
            {"metric": "country.freedom_house.status", "op": "==", "value": "Not Free"},
            applies_to={"issuer_kinds": ["sovereign"]},
        ),
        rule(
            "labour",
            {"metric": "country.ituc.rating", "op": "in", "value": ["5", "5+"]},
            applies_to={"issuer_kinds": ["sovereign"]},
        ),
        rule(
            "embargo",
            {
                "metric": "country.sanctions.arms_embargo",
                "op": "intersects",
                "value": ["UN", "EU", "US"],
            },
            applies_to={"issuer_kinds": ["sovereign"]},
        ),
        rule("weapons", {"metric": "controversial_weapons.involved", "op": "==", "value": True}),
        rule(
            "norms",
            {"metric": "norms.status", "value": "non_compliant", "for_at_least": {"years": 2}},
        ),
        rule("defence", {"metric": "defence.involved", "op": "==", "value": True}),
    ],
    "lists": {"exclusion": "exclude", "focus": "watch", "inclusion": "readmit"},
    "exceptions": [
        {
            "id": "nl-defence",
            "title": "Dutch defence",
            "source": "test",
            "lifts": ["defence"],
            "conditions": {"issuer_countries": ["NL"], "not_hit_by": ["weapons"]},
            "requires": ["reference", "expires_on"],
            "max_duration_days": 366,
            "scope": "own_account",
        }
    ],
    "position_limits": [
        {
            "id": "sponsor",
            "title": "Sponsor at most 5 %",
            "source": "seed 002",
            "group": "sponsor",
            "max_portfolio_pct": 5,
        }
    ],
}


def house_rule(rule_id: str, **changes: Any) -> dict[str, Any]:
    """A copy of one of HOUSE's rules, with changes (``when`` replaced or merged)."""
    found: dict[str, Any] = copy.deepcopy(next(r for r in HOUSE["rules"] if r["id"] == rule_id))
    for field, value in changes.items():
        if field == "when_update":
            found["when"].update(value)
        else:
            found[field] = value
    return found


def house_exception(**changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = copy.deepcopy(HOUSE["exceptions"][0])
    for field, value in changes.items():
        if field == "conditions_update":
            found["conditions"].update(value)
        else:
            found[field] = value
    return found


def overlay(**fields: Any) -> dict[str, Any]:
    return {"key": "mandate", "title": "Client mandate", "extends": "house", **fields}
