"""A trading desk against the API: a data steward, a trader and an auditor, with the shipped
rpf, dk-pension and asr policies published (four eyes) and the fixture universe loaded."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx

from app.auth.scopes import Scope
from app.kit.time import utcnow
from app.kit.vocabulary import ILO_CORE_CONVENTIONS
from tests.conftest import MakeKey, bearer
from tests.support.datasets import load_ok, load_universe
from tests.support.policies import approve, post_document, shipped

# Thirty days old: fresh under every shipped policy, whatever day the suite runs (a module
# constant is safe here: a run across midnight only makes it 31 days old).
FRESH = (utcnow().date() - dt.timedelta(days=30)).isoformat()

ILO_CODES = tuple(code for code, _, _ in ILO_CORE_CONVENTIONS)

# RPF reads these for every company; a complete, clean set keeps "unknown" out of the way.
CLEAN = {
    ("controversial_weapons.involved", "sustainalytics"): "false",
    ("norms.status", "robeco"): "compliant",
    ("revenue_pct.tobacco", "iss"): "0",
    ("revenue_pct.thermal_coal_extraction", "msci"): "0",
    ("revenue_pct.unconventional_oil_gas", "msci"): "0",
    ("revenue_pct.arctic_oil_gas", "msci"): "0",
    ("revenue_pct.thermal_coal_power", "msci"): "0",
}

# asr reads these for every company beyond its norms, weapons and defence metrics (seed 001: ILO
# core conventions, human-rights controversies, dual-use and high-risk supply): all clear.
# Separate from CLEAN so rpf's data sets stay as they were; merge the two for an asr company.
ASR_CLEAN = {
    **{f"ilo.{code}.violation": "false" for code in ILO_CODES},
    "controversy.human_rights.severity": "none",
    "controversy.human_rights.repeated": "false",
    "dual_use.involved": "false",
    "defence.high_risk_end_use": "false",
}


@dataclass
class Desk:
    client: httpx.AsyncClient
    steward: str
    trader: str
    auditor: str

    async def facts(
        self, issuer: str, provider: str, rows: dict[str, str], as_of: str = FRESH
    ) -> int:
        body = "issuer_ref,metric,value,as_of\n" + "".join(
            f"{issuer},{metric},{value},{as_of}\n" for metric, value in rows.items()
        )
        loaded = await load_ok(self.client, self.steward, "facts", body, provider=provider)
        return int(loaded["id"])

    async def clean(self, issuer: str, **overrides: str) -> None:
        by_provider: dict[str, dict[str, str]] = {}
        for (metric, provider), value in CLEAN.items():
            value = overrides.get(metric.replace(".", "__"), value)
            by_provider.setdefault(provider, {})[metric] = value
        for provider, rows in by_provider.items():
            await self.facts(issuer, provider, rows)

    async def check(self, isin: str, policy: str = "rpf", **params: str) -> dict[str, Any]:
        response = await self.client.get(
            "/v1/check",
            params={"policy": policy, "instrument": isin, **params},
            headers=bearer(self.trader),
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


async def publish_policy(client: httpx.AsyncClient, author: str, approver: str, key: str) -> None:
    created = await post_document(client, key, shipped(key), bearer(author))
    assert created.status_code == 201, created.text
    approved = await approve(client, key, created.json()["version"], bearer(approver))
    assert approved.status_code == 200, approved.text


async def open_desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    steward = await make_key(Scope.data_write, name="steward")
    author = await make_key(Scope.policies_write, name="policy-author")
    approver = await make_key(Scope.policies_approve, name="committee")
    trader = await make_key(Scope.check, name="oms")
    auditor = await make_key(Scope.decisions_read, name="auditor")
    await load_universe(client, steward)
    # asr too: the fixture list names it, and a list entry's policy must exist.
    for key in ("rpf", "dk-pension", "asr"):
        await publish_policy(client, author, approver, key)
    return Desk(client, steward, trader, auditor)
