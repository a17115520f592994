"""Name-only published exclusion lists (`published-exclusions`): loaded as published, resolved
to issuers by a data steward (candidates with a confidence, four-eyes confirmation), and only
confirmed resolutions reaching a verdict, as ``peer_exclusion.*`` issuer facts.

Through the HTTP API on both dialects, with the real compiled file of NBIM's, the Council on
Ethics', the Ministry of Finance's and KLP's published decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from tests.conftest import MakeKey, bearer
from tests.support.datasets import datasets, load, load_ok, real_file
from tests.support.policies import approve, post_document, rule
from tests.support.problems import assert_problem

PUBLISHED = real_file("exclusion_lists/nbim_klp_decisions_compiled_from_public_pages.csv")
BASE = "/v1/published-exclusions"
# Rows of the published file (the header is row 1).
IMPERIAL_ROW = 53  # Council on Ethics -> GPFG, Imperial Tobacco Group Plc., 2009-10-22
PMI_ROW = 58  # Council on Ethics -> GPFG, Philip Morris International Inc.
BAE_REVOKED_ROW = 67  # Ministry of Finance (GPFG), BAE Systems Plc, Exclusion revoked 2013-01-11
FINMECCANICA_ROW = 68  # Ministry of Finance (GPFG), Finmeccanica SpA, Exclusion revoked
BAE_KLP_ROW = 85  # KLP, BAE Systems, Exclusion, 2015-12
PACIFICORP_ROW = 25  # NBIM (GPFG), PacifiCorp, Exclusion, 2018 (year only)
REGJERINGEN = "regjeringen.no"

ISSUERS = (
    "issuer_id,name,kind,country\n"
    "IMPERIAL,Imperial Tobacco Group PLC,company,GB\n"
    "IMPERIAL-BRANDS,Imperial Brands PLC,company,GB\n"
    "PMI,Philip Morris International Inc,company,US\n"
    "LEONARDO,Finmeccanica S.p.A.,company,IT\n"
    "BAE,BAE Systems plc,company,GB\n"
    "KEPCO,Korea Electric Power Corp,company,KR\n"
)
INSTRUMENTS = (
    "isin,issuer_id,asset_class\n"
    "GB0004544929,IMPERIAL,equity\n"
    "US7181721090,PMI,equity\n"
    "IT0003856405,LEONARDO,equity\n"
    "GB0002634946,BAE,equity\n"
)
IMPERIAL_ISIN, PMI_ISIN, LEONARDO_ISIN, BAE_ISIN = (
    "GB0004544929",
    "US7181721090",
    "IT0003856405",
    "GB0002634946",
)

# A test policy: another investor's exclusion is a reason to look (watch), nothing more. The
# shipped policies do not read peer_exclusion.* (their demo verdicts stay as they are).
PEERS = {
    "key": "peers",
    "title": "Watch what other investors exclude",
    "unknown": "block",
    "data": {"max_age_days": 400},
    "rules": [
        rule(
            "peer-excluded",
            {"metric": "peer_exclusion.excluded", "op": "==", "value": True},
            outcome="watch",
            applies_to={"issuer_kinds": ["company"]},
        )
    ],
}


@dataclass
class Stewards:
    client: httpx.AsyncClient
    first: str  # proposes
    second: str  # confirms (four eyes)
    trader: str
    auditor: str
    load_id: int

    def entry(self, row: int) -> str:
        return f"{self.load_id}-{row}"

    async def propose(self, row: int, issuer_id: str, key: str | None = None) -> httpx.Response:
        return await self.client.post(
            f"{BASE}/{self.entry(row)}/proposals",
            json={"issuer_id": issuer_id, "note": "same company"},
            headers=bearer(key or self.first),
        )

    async def step(self, row: int, action: str, key: str | None = None) -> httpx.Response:
        return await self.client.post(
            f"{BASE}/{self.entry(row)}/{action}", headers=bearer(key or self.second)
        )

    async def resolve(self, row: int, issuer_id: str) -> dict[str, Any]:
        proposed = await self.propose(row, issuer_id)
        assert proposed.status_code == 201, proposed.text
        confirmed = await self.step(row, "confirm")
        assert confirmed.status_code == 200, confirmed.text
        result: dict[str, Any] = confirmed.json()
        return result

    async def get(self, row: int) -> dict[str, Any]:
        response = await self.client.get(f"{BASE}/{self.entry(row)}", headers=bearer(self.first))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def fact(self, dataset_id: int) -> dict[str, Any]:
        """The fact a confirm or revoke recorded, from its dataset's summary."""
        response = await self.client.get(f"/v1/datasets/{dataset_id}", headers=bearer(self.first))
        assert response.status_code == 200, response.text
        fact: dict[str, Any] = response.json()["summary"]["fact"]
        return fact

    async def listed(self) -> set[str]:
        """The issuers on the custodians' list of the test policy (the compiled index)."""
        response = await self.client.get(
            "/v1/lists/peers",
            params={"format": "json", "level": "issuer"},
            headers=bearer(self.trader),
        )
        assert response.status_code == 200, response.text
        return {row["issuer_id"] for row in response.json()["rows"]}

    async def check(self, isin: str) -> dict[str, Any]:
        response = await self.client.get(
            "/v1/check", params={"policy": "peers", "instrument": isin}, headers=bearer(self.trader)
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
async def stewards(client: httpx.AsyncClient, make_key: MakeKey) -> Stewards:
    first = await make_key(Scope.data_write, name="steward-anna")
    second = await make_key(Scope.data_write, name="steward-bram")
    author = await make_key(Scope.policies_write, name="peers-author")
    approver = await make_key(Scope.policies_approve, name="peers-committee")
    trader = await make_key(Scope.check, Scope.lists_read, name="oms")
    auditor = await make_key(Scope.decisions_read, name="auditor")
    created = await post_document(client, "peers", PEERS, bearer(author))
    assert created.status_code == 201, created.text
    approved = await approve(client, "peers", created.json()["version"], bearer(approver))
    assert approved.status_code == 200, approved.text
    await load_ok(client, first, "issuers", ISSUERS)
    await load_ok(client, first, "instruments", INSTRUMENTS)
    loaded = await load_ok(client, first, "published-exclusions", PUBLISHED)
    return Stewards(client, first, second, trader, auditor, int(loaded["id"]))


def reasons(decision: dict[str, Any], rule_id: str = "peer-excluded") -> Iterator[dict[str, Any]]:
    return (r for r in decision["reasons"] if r["rule_id"] == rule_id)


# ----------------------------------------------------------------------------- the load


async def test_the_compiled_file_loads_as_published(stewards: Stewards) -> None:
    response = await stewards.client.get(
        f"/v1/datasets/{stewards.load_id}", headers=bearer(stewards.first)
    )
    loaded = response.json()
    assert loaded["kind"] == "published-exclusions"
    assert loaded["provider"] == "internal"
    assert loaded["rows"] == 105
    summary = loaded["summary"]
    assert summary["unresolved"] == 105
    assert summary["investors"] == {
        "Council on Ethics -> GPFG": 17,
        "KLP": 35,
        "Ministry of Finance (GPFG)": 6,
        "NBIM (GPFG)": 47,
    }
    # SOURCE.txt: Exclusion 71 + Recommendation to exclude 17; revocations 7; other 2.
    assert summary["actions"] == {
        "exclusion": 88,
        "observation": 8,
        "observation_ended": 1,
        "other": 1,
        "revocation": 7,
    }
    assert summary["date_precision"] == {"day": 64, "month": 16, "none": 14, "year": 11}

    listed = await stewards.client.get(BASE, headers=bearer(stewards.first))
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == 105
    entries = {e["source_row"]: e for e in body["entries"]}
    assert {e["status"] for e in entries.values()} == {"unresolved"}
    # A year-only date stays a year: no invented day.
    pacificorp = entries[PACIFICORP_ROW]
    assert (pacificorp["company"], pacificorp["date"], pacificorp["date_precision"]) == (
        "PacifiCorp",
        "2018",
        "year",
    )
    assert (entries[73]["date"], entries[73]["date_precision"]) == ("2015-12", "month")
    assert (entries[93]["date"], entries[93]["date_precision"]) == (None, None)
    imperial = entries[IMPERIAL_ROW]
    assert imperial["company"] == "Imperial Tobacco Group Plc."  # the name as published
    assert imperial["decision"] == "Recommendation to exclude"
    assert imperial["action"] == "exclusion"
    assert imperial["date"] == "2009-10-22"
    assert REGJERINGEN in imperial["source_url"]
    assert entries[4]["company"] == "AES Corp/The"

    klp = await stewards.client.get(
        BASE, params={"investor": "KLP"}, headers=bearer(stewards.first)
    )
    assert klp.json()["count"] == 35


async def test_a_decision_the_kind_does_not_read_rejects_the_file(stewards: Stewards) -> None:
    body = (
        "investor,company,criterion,decision,date,date_kind,source_url,note\n"
        "KLP,Acme,Coal,Exclusion,2015-12,,,\n"
        "KLP,Other Co,Coal,Excluded maybe,2015,,,\n"
        "KLP,Third Co,Coal,Exclusion,2015/12,,,\n"
    )
    before = await datasets(stewards.client, stewards.first)
    response = await load(stewards.client, stewards.first, "published-exclusions", body)
    problem = assert_problem(response, 422)
    assert [(e["row"], e["column"]) for e in problem["errors"]] == [(3, "decision"), (4, "date")]
    assert await datasets(stewards.client, stewards.first) == before


async def test_peer_exclusions_are_never_loaded_as_facts(stewards: Stewards) -> None:
    response = await load(
        stewards.client,
        stewards.first,
        "facts",
        "issuer_ref,metric,value\nPMI,peer_exclusion.excluded,true\n",
        provider="internal",
        as_of="2026-01-01",
    )
    problem = assert_problem(response, 422)
    assert "confirmed resolutions" in problem["errors"][0]["msg"]


# ----------------------------------------------------------------------------- candidates


async def test_candidates_match_name_variants_with_a_confidence(stewards: Stewards) -> None:
    response = await stewards.client.get(
        f"{BASE}/{stewards.entry(IMPERIAL_ROW)}/candidates", headers=bearer(stewards.first)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["company"] == "Imperial Tobacco Group Plc."
    assert body["compared_as"] == ["imperial tobacco group"]
    best, *others = body["candidates"]
    # "Plc." against "PLC": equal once normalised.
    assert (best["issuer_id"], best["confidence"], best["exact"]) == ("IMPERIAL", 1.0, True)
    assert all(c["confidence"] < 1 and not c["exact"] for c in others)

    # "Finmeccanica SpA" against "Finmeccanica S.p.A.": the dotted legal form is the same.
    finmeccanica = await stewards.client.get(
        f"{BASE}/{stewards.entry(FINMECCANICA_ROW)}/candidates", headers=bearer(stewards.first)
    )
    assert finmeccanica.json()["candidates"][0]["issuer_id"] == "LEONARDO"
    assert finmeccanica.json()["candidates"][0]["confidence"] == 1.0

    # "Korea Electric" (NBIM, row 37): a fuzzy candidate, below 1.
    korea = await stewards.client.get(
        f"{BASE}/{stewards.entry(37)}/candidates", headers=bearer(stewards.first)
    )
    (kepco,) = [c for c in korea.json()["candidates"] if c["issuer_id"] == "KEPCO"]
    assert 0.7 <= kepco["confidence"] < 1
    assert kepco["exact"] is False


# ----------------------------------------------------------------------------- verdicts


async def test_unresolved_and_proposed_entries_affect_no_verdict(stewards: Stewards) -> None:
    before = await stewards.check(PMI_ISIN)
    assert before["verdict"] == "allowed"
    proposed = await stewards.propose(PMI_ROW, "PMI")
    assert proposed.status_code == 201, proposed.text
    entry = proposed.json()
    assert entry["status"] == "proposed"
    assert entry["issuer_id"] == "PMI"
    assert entry["confidence"] == 1.0
    (step,) = entry["resolutions"]
    assert (step["action"], step["by"], step["dataset_id"]) == ("propose", "steward-anna", None)
    after = await stewards.check(PMI_ISIN)
    assert after["verdict"] == "allowed"
    # A proposal is not data: the data version did not move.
    assert after["data_version"] == before["data_version"]
    unresolved = await stewards.client.get(
        BASE, params={"status": "unresolved"}, headers=bearer(stewards.first)
    )
    assert unresolved.json()["count"] == 104
    assert PMI_ROW not in {e["source_row"] for e in unresolved.json()["entries"]}
    pending = await stewards.client.get(
        BASE, params={"status": "proposed"}, headers=bearer(stewards.first)
    )
    assert [e["source_row"] for e in pending.json()["entries"]] == [PMI_ROW]


async def test_the_proposing_key_cannot_confirm(stewards: Stewards) -> None:
    assert (await stewards.propose(IMPERIAL_ROW, "IMPERIAL")).status_code == 201
    before = await datasets(stewards.client, stewards.first)
    response = await stewards.step(IMPERIAL_ROW, "confirm", key=stewards.first)
    problem = assert_problem(response, 403)
    assert problem["type"].endswith(":four-eyes-required")
    assert "steward-anna" in problem["detail"]
    entry = await stewards.get(IMPERIAL_ROW)
    assert entry["status"] == "proposed"
    assert [s["action"] for s in entry["resolutions"]] == ["propose"]
    assert await datasets(stewards.client, stewards.first) == before
    assert (await stewards.check(IMPERIAL_ISIN))["verdict"] == "allowed"


async def test_a_confirmed_entry_turns_the_verdict_watch_with_evidence(
    stewards: Stewards,
) -> None:
    earlier = await stewards.check(IMPERIAL_ISIN)
    assert earlier["verdict"] == "allowed"
    assert "IMPERIAL" not in await stewards.listed()
    confirmed = await stewards.resolve(IMPERIAL_ROW, "IMPERIAL")
    assert confirmed["status"] == "confirmed"
    propose, confirm = confirmed["resolutions"]
    assert (propose["action"], propose["by"]) == ("propose", "steward-anna")
    assert (confirm["action"], confirm["by"], confirm["confidence"]) == (
        "confirm",
        "steward-bram",
        1.0,
    )
    assert confirm["dataset_id"] is not None

    decision = await stewards.check(IMPERIAL_ISIN)
    assert decision["verdict"] == "watch"
    assert decision["may_hold"] is True
    assert decision["data_version"] == confirm["dataset_id"] > earlier["data_version"]
    (reason,) = reasons(decision)
    assert reason["outcome"] == "watch"
    (evidence,) = reason["evidence"]
    assert evidence["provider"] == "Council on Ethics -> GPFG"
    assert (evidence["metric"], evidence["value"]) == ("peer_exclusion.excluded", "true")
    assert evidence["dataset_id"] == confirm["dataset_id"]
    # The evidence names the published row and its date; its dataset gives the rest.
    assert stewards.entry(IMPERIAL_ROW) in evidence["source_field"]
    assert "2009-10-22" in evidence["source_field"]
    recorded = await stewards.client.get(
        f"/v1/datasets/{evidence['dataset_id']}", headers=bearer(stewards.first)
    )
    summary = recorded.json()["summary"]
    assert recorded.json()["kind"] == "published-exclusion-resolution"
    assert summary["entry"]["source_row"] == IMPERIAL_ROW
    assert summary["entry"]["criterion"] == "Production of tobacco"
    assert summary["entry"]["date"] == "2009-10-22"
    assert REGJERINGEN in summary["entry"]["source_url"]
    assert (summary["proposed_by"], summary["confirmed_by"]) == ("steward-anna", "steward-bram")

    # The compiled index (custodians' lists) sees the new data version too.
    assert "IMPERIAL" in await stewards.listed()
    recorded_kind = await stewards.client.get(
        "/v1/datasets",
        params={"kind": "published-exclusion-resolution"},
        headers=bearer(stewards.first),
    )
    assert [d["id"] for d in recorded_kind.json()] == [confirm["dataset_id"]]

    # Both decisions replay as they were: before the confirmation allowed, after it watch.
    for made in (earlier, decision):
        replay = await stewards.client.post(
            f"/v1/decisions/{made['decision_id']}/replay", headers=bearer(stewards.auditor)
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["matches"] is True
    # Another issuer's verdict is untouched.
    assert (await stewards.check(PMI_ISIN))["verdict"] == "allowed"


async def test_revoking_a_confirmation_takes_two_keys_and_turns_the_fact_false(
    stewards: Stewards,
) -> None:
    """Revoking loosens a verdict (watch goes away): like confirming, it takes a second key.
    The first asks; until another key carries it out the confirmation stands."""
    await stewards.resolve(IMPERIAL_ROW, "IMPERIAL")
    assert (await stewards.check(IMPERIAL_ISIN))["verdict"] == "watch"
    before = await datasets(stewards.client, stewards.first)
    asked = await stewards.step(IMPERIAL_ROW, "revoke", key=stewards.first)
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "revocation_proposed"
    assert asked.json()["resolutions"][-1]["dataset_id"] is None
    assert (await stewards.check(IMPERIAL_ISIN))["verdict"] == "watch"  # still stands
    assert await datasets(stewards.client, stewards.first) == before  # no new data version
    # The key that asked cannot carry it out.
    same = await stewards.step(IMPERIAL_ROW, "revoke", key=stewards.first)
    assert_problem(same, 403)
    assert same.json()["type"].endswith("four-eyes-required")
    assert (await stewards.get(IMPERIAL_ROW))["status"] == "revocation_proposed"
    revoked = await stewards.step(IMPERIAL_ROW, "revoke", key=stewards.second)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "rejected"
    assert [s["action"] for s in revoked.json()["resolutions"]] == [
        "propose",
        "confirm",
        "ask-revoke",
        "revoke",
    ]
    decision = await stewards.check(IMPERIAL_ISIN)
    assert decision["verdict"] == "allowed"
    assert not list(reasons(decision))  # decided: false, not undecided
    fact = await stewards.fact(revoked.json()["resolutions"][-1]["dataset_id"])
    assert (fact["value"], fact["deciding_entry"]) == ("false", None)
    # Revoked: a new proposal may follow; a second revoke is a conflict.
    assert_problem(await stewards.step(IMPERIAL_ROW, "revoke"), 409)


async def test_a_revocation_asked_can_be_withdrawn_and_the_confirmation_stands(
    stewards: Stewards,
) -> None:
    await stewards.resolve(IMPERIAL_ROW, "IMPERIAL")
    assert (await stewards.step(IMPERIAL_ROW, "revoke", key=stewards.first)).status_code == 200
    kept = await stewards.step(IMPERIAL_ROW, "reject", key=stewards.second)
    assert kept.status_code == 200, kept.text
    assert kept.json()["status"] == "confirmed"
    assert kept.json()["resolutions"][-1]["action"] == "keep"
    assert (await stewards.check(IMPERIAL_ISIN))["verdict"] == "watch"
    # Confirmed again: a revocation starts over with its request.
    again = await stewards.step(IMPERIAL_ROW, "revoke", key=stewards.second)
    assert again.json()["status"] == "revocation_proposed"


async def test_a_rejected_proposal_writes_no_fact(stewards: Stewards) -> None:
    assert (await stewards.propose(IMPERIAL_ROW, "IMPERIAL-BRANDS")).status_code == 201
    rejected = await stewards.step(IMPERIAL_ROW, "reject")
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["resolutions"][-1]["dataset_id"] is None
    assert_problem(await stewards.step(IMPERIAL_ROW, "confirm"), 409)
    # Imperial Brands is the same group today, but the name was not resolved to it.
    assert rejected.json()["resolutions"][0]["confidence"] < 1
    assert (await stewards.check(IMPERIAL_ISIN))["verdict"] == "allowed"
    # A new proposal may follow a rejection.
    assert (await stewards.propose(IMPERIAL_ROW, "IMPERIAL")).status_code == 201


async def test_the_newest_published_decision_decides(stewards: Stewards) -> None:
    """BAE: the Ministry of Finance revoked its exclusion (2013-01-11); KLP excluded it
    (2015-12, a month): the newer decision wins, whatever the order of confirmation."""
    await stewards.resolve(BAE_KLP_ROW, "BAE")
    await stewards.resolve(BAE_REVOKED_ROW, "BAE")
    decision = await stewards.check(BAE_ISIN)
    assert decision["verdict"] == "watch"
    (reason,) = reasons(decision)
    assert reason["evidence"][0]["provider"] == "KLP"
    # A revocation alone says false: Finmeccanica's re-inclusion.
    await stewards.resolve(FINMECCANICA_ROW, "LEONARDO")
    leonardo = await stewards.check(LEONARDO_ISIN)
    assert leonardo["verdict"] == "allowed"
    assert not list(reasons(leonardo))
    confirmed = await stewards.get(FINMECCANICA_ROW)
    fact = await stewards.fact(confirmed["resolutions"][-1]["dataset_id"])
    assert (fact["value"], fact["provider"]) == ("false", "Ministry of Finance (GPFG)")


async def test_bad_steps_write_nothing(stewards: Stewards) -> None:
    before = await datasets(stewards.client, stewards.first)
    unknown_issuer = await stewards.propose(IMPERIAL_ROW, "NO-SUCH-ISSUER")
    problem = assert_problem(unknown_issuer, 422)
    assert problem["errors"][0]["loc"] == ["body", "issuer_id"]
    assert (await stewards.get(IMPERIAL_ROW))["resolutions"] == []

    missing = await stewards.client.post(
        f"{BASE}/{stewards.load_id}-999/proposals",
        json={"issuer_id": "IMPERIAL"},
        headers=bearer(stewards.first),
    )
    assert_problem(missing, 404)
    malformed = await stewards.client.get(f"{BASE}/not-an-id", headers=bearer(stewards.first))
    assert_problem(malformed, 422)
    unknown_field = await stewards.client.post(
        f"{BASE}/{stewards.entry(IMPERIAL_ROW)}/proposals",
        json={"issuer_id": "IMPERIAL", "confidence": 1},
        headers=bearer(stewards.first),
    )
    assert_problem(unknown_field, 422)
    # Nothing proposed: nothing to confirm, reject or revoke.
    for action in ("confirm", "reject", "revoke"):
        assert_problem(await stewards.step(IMPERIAL_ROW, action), 409)
    # A key without data:write may read but not propose.
    trader = await stewards.client.post(
        f"{BASE}/{stewards.entry(IMPERIAL_ROW)}/proposals",
        json={"issuer_id": "IMPERIAL"},
        headers=bearer(stewards.trader),
    )
    assert_problem(trader, 403)
    assert (await stewards.get(IMPERIAL_ROW))["status"] == "unresolved"
    assert await datasets(stewards.client, stewards.first) == before
    # A confirmed entry takes no new proposal until revoked.
    await stewards.resolve(IMPERIAL_ROW, "IMPERIAL")
    assert_problem(await stewards.propose(IMPERIAL_ROW, "IMPERIAL-BRANDS"), 409)


async def test_a_decision_bearing_on_no_metric_writes_no_data(stewards: Stewards) -> None:
    """UPL (row 31): "Active ownership instead of observation" is recorded and may be
    resolved, but states neither an exclusion nor an observation: no fact, no data version."""
    before = await datasets(stewards.client, stewards.first)
    confirmed = await stewards.resolve(31, "KEPCO")
    assert confirmed["action"] == "other"
    assert confirmed["status"] == "confirmed"
    assert [s["dataset_id"] for s in confirmed["resolutions"]] == [None, None]
    assert await datasets(stewards.client, stewards.first) == before


async def test_an_observation_is_its_own_metric(stewards: Stewards) -> None:
    """Enel (row 16) under observation: peer_exclusion.observation, not .excluded; the test
    policy, which reads only .excluded, stays allowed."""
    confirmed = await stewards.resolve(16, "KEPCO")
    fact = await stewards.fact(confirmed["resolutions"][-1]["dataset_id"])
    assert (fact["metric"], fact["value"], fact["provider"]) == (
        "peer_exclusion.observation",
        "true",
        "NBIM (GPFG)",
    )
    assert fact["deciding_entry"]["date"] == "2020-05-13"
