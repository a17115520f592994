"""Control by consolidation: the ``gleif-relationships`` kind and the group rule reading it.

The real GLEIF level-2 file loads as published; under dk-pension a subsidiary that a parent
consolidates passes its exclusion up whatever the vote percentage (seed 003 section 27); lapsed,
inactive and ended relationships do not; chains through LEIs no issuer carries connect once both
ends are loaded (in either order); a later load ending a relationship stops it; cycles end.
HTTP tests on both dialects, then pure engine tests on hand-built snapshots.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import httpx
import pytest
from stdnum import isin as stdnum_isin

from app.datasets.records import Relationship
from app.screening.engine import evaluate
from app.screening.snapshot import (
    ConsolidationLink,
    FactPoint,
    InstrumentNode,
    IssuerNode,
    Snapshot,
    resolve_consolidation,
)
from tests.conftest import MakeKey
from tests.support.checks import Desk, open_desk
from tests.support.datasets import load, load_ok, real_file
from tests.test_engine import DK, RPF

DIRECT = "IS_DIRECTLY_CONSOLIDATED_BY"
ULTIMATE = "IS_ULTIMATELY_CONSOLIDATED_BY"
SHELL_LEI = "21380068P1DRHMJ8KU70"
# In the real file: consolidated by Shell plc, directly and ultimately, PUBLISHED ...
PUBLISHED_CHILD = "2138006Q7ZL5PLJTT849"
# ... and both records LAPSED.
LAPSED_CHILD = "2138009AGE4DW1J76R35"
HEADER = (
    "start_node_lei,end_node_lei,relationship_type,relationship_status,relationship_period_start,"
    "relationship_period_end,rr_registration_status,valid_from,valid_to\n"
)


def make_lei(base: str) -> str:
    """A valid LEI from 18 characters (ISO 7064 mod 97-10 check digits)."""
    digits = "".join(str(int(c, 36)) for c in base + "00")
    return f"{base}{98 - int(digits) % 97:02d}"


def make_isin(body: str) -> str:
    return body + stdnum_isin.calc_check_digit(body)


A, X, B, Y = (make_lei(f"5493000000GLEIF{c}00") for c in "AXBY")


def rel(
    start: str,
    end: str,
    kind: str = DIRECT,
    status: str = "ACTIVE",
    registration: str = "PUBLISHED",
    period_end: str = "",
) -> str:
    return f"{start},{end},{kind},{status},2020-01-01T00:00:00Z,{period_end},{registration},,\n"


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    return await open_desk(client, make_key)


async def issuers(desk: Desk, rows: list[tuple[str, str, str]]) -> None:
    """Companies (issuer_id, LEI, parent control '' or 'PARENT:pct'), each with an equity."""
    body = "issuer_id,name,kind,country,lei,parent_issuer_id,parent_control_pct\n"
    instruments = "isin,issuer_id,asset_class\n"
    for issuer_id, lei, parent in rows:
        parent_id, _, pct = parent.partition(":")
        body += f"{issuer_id},{issuer_id} N.V.,company,NL,{lei},{parent_id},{pct}\n"
        instruments += f"{isin_of(issuer_id)},{issuer_id},equity\n"
    await load_ok(desk.client, desk.steward, "issuers", body)
    await load_ok(desk.client, desk.steward, "instruments", instruments)


def isin_of(issuer_id: str) -> str:
    return make_isin("NL" + "".join(str(ord(c) % 10) for c in issuer_id.ljust(9, "0"))[:9])


async def dk_facts(desk: Desk, issuer_id: str, weapons: bool) -> None:
    await desk.facts(
        issuer_id,
        "sustainalytics",
        {
            "controversial_weapons.involved": "true" if weapons else "false",
            "norms.status": "compliant",
        },
    )


async def relationships(desk: Desk, body: str, as_of: str = "2025-05-15") -> dict[str, Any]:
    return await load_ok(
        desk.client, desk.steward, "gleif-relationships", HEADER + body, as_of=as_of
    )


def gleif_evidence(decision: dict[str, Any]) -> list[dict[str, Any]]:
    (reason,) = [r for r in decision["reasons"] if r["outcome"] == "exclude"]
    return [e for e in reason["evidence"] if e["provider"] == "gleif"]


# ------------------------------------------------------------------------------------ HTTP


async def test_the_real_file_loads_with_its_counts(desk: Desk) -> None:
    path = real_file("gleif_lei/gleif_level2_relationship_records.csv")
    loaded = await load_ok(
        desk.client, desk.steward, "gleif-relationships", path, as_of="2025-05-15"
    )
    assert loaded["provider"] == "gleif"
    assert loaded["rows"] == 121
    assert loaded["summary"]["relationships"] == {
        DIRECT: {"control": 34, "not_control": {"registration LAPSED": 25}},
        ULTIMATE: {"control": 41, "not_control": {"registration LAPSED": 21}},
    }


async def test_a_consolidated_subsidiary_excludes_its_parent_under_dk(desk: Desk) -> None:
    """The issue's "done means": Shell plc (fixture issuer, LEI 21380068P1DRHMJ8KU70) and a
    subsidiary GLEIF says it consolidates (the real file); no vote percentage anywhere."""
    path = real_file("gleif_lei/gleif_level2_relationship_records.csv")
    loaded = await load_ok(
        desk.client, desk.steward, "gleif-relationships", path, as_of="2025-05-15"
    )
    await issuers(desk, [("SHELL-SUB", PUBLISHED_CHILD, ""), ("SHELL-OLD", LAPSED_CHILD, "")])
    await dk_facts(desk, "SHELL", weapons=False)
    await dk_facts(desk, "SHELL-SUB", weapons=True)
    decision = await desk.check("GB00BP6MXD84", "dk-pension")
    assert decision["verdict"] == "excluded"
    (reason,) = [r for r in decision["reasons"] if r["outcome"] == "exclude"]
    assert reason["via"][0] == {"issuer_id": "SHELL-SUB", "relation": "subsidiary"}
    (link,) = gleif_evidence(decision)
    assert link["metric"] == "parent_consolidation"
    assert link["value"] == DIRECT
    assert link["threshold"] == SHELL_LEI
    assert link["dataset_id"] == loaded["id"]
    assert link["source_row"] > 1
    assert PUBLISHED_CHILD in link["source_field"]
    # rpf has no group rule: the consolidation changes nothing there.
    assert all(
        r["via"][0]["relation"] == "self" for r in (await desk.check("GB00BP6MXD84"))["reasons"]
    )


async def test_a_lapsed_relationship_is_no_control(desk: Desk) -> None:
    path = real_file("gleif_lei/gleif_level2_relationship_records.csv")
    await load_ok(desk.client, desk.steward, "gleif-relationships", path, as_of="2025-05-15")
    await issuers(desk, [("SHELL-OLD", LAPSED_CHILD, "")])
    await dk_facts(desk, "SHELL", weapons=False)
    await dk_facts(desk, "SHELL-OLD", weapons=True)
    assert (await desk.check("GB00BP6MXD84", "dk-pension"))["verdict"] == "allowed"


async def test_ended_and_inactive_relationships_are_no_control(desk: Desk) -> None:
    await issuers(desk, [("TOP", B, ""), ("ENDED", A, ""), ("GONE", Y, "")])
    await relationships(
        desk, rel(A, B, period_end="2021-01-01T00:00:00Z") + rel(Y, B, status="INACTIVE")
    )
    for issuer_id in ("ENDED", "GONE"):
        await dk_facts(desk, issuer_id, weapons=True)
    await dk_facts(desk, "TOP", weapons=False)
    assert (await desk.check(isin_of("TOP"), "dk-pension"))["verdict"] == "allowed"


async def test_a_chain_through_an_unknown_lei_connects_when_issuers_load_later(
    desk: Desk,
) -> None:
    """A -> X -> B, X carried by no issuer: loaded before any of the issuers, B consolidates A
    through X once both are loaded; the evidence names both records."""
    loaded = await relationships(desk, rel(A, X) + rel(X, B))
    assert loaded["summary"]["relationships"][DIRECT]["control"] == 2
    await issuers(desk, [("TOP", B, ""), ("LEAF", A, "TOP:10")])  # 10 %: below dk's 50
    await dk_facts(desk, "TOP", weapons=False)
    await dk_facts(desk, "LEAF", weapons=True)
    decision = await desk.check(isin_of("TOP"), "dk-pension")
    assert decision["verdict"] == "excluded"
    hops = gleif_evidence(decision)
    assert [(h["source_field"], h["dataset_id"]) for h in hops] == [
        (f"relationship {A} {DIRECT} {X}", loaded["id"]),
        (f"relationship {X} {DIRECT} {B}", loaded["id"]),
    ]
    # The percentage (10 %, not control) is overruled: no percentage evidence is shown.
    (reason,) = [r for r in decision["reasons"] if r["outcome"] == "exclude"]
    assert all(e["metric"] != "parent_control_pct" for e in reason["evidence"])


async def test_a_later_load_ending_the_relationship_stops_it(desk: Desk) -> None:
    await issuers(desk, [("TOP", B, ""), ("LEAF", A, "")])  # no percentage at all
    await dk_facts(desk, "TOP", weapons=False)
    await dk_facts(desk, "LEAF", weapons=True)
    await relationships(desk, rel(A, B), as_of="2025-04-01")
    assert (await desk.check(isin_of("TOP"), "dk-pension"))["verdict"] == "excluded"
    # A delta naming another child keeps A -> B ...
    await relationships(desk, rel(Y, B), as_of="2025-04-15")
    assert (await desk.check(isin_of("TOP"), "dk-pension"))["verdict"] == "excluded"
    # ... the record marked INACTIVE by a later load stops it ...
    ended = await relationships(desk, rel(A, B, status="INACTIVE"), as_of="2025-05-01")
    assert ended["summary"]["relationships"][DIRECT] == {
        "control": 0,
        "not_control": {"relationship status INACTIVE": 1},
    }
    assert (await desk.check(isin_of("TOP"), "dk-pension"))["verdict"] == "allowed"
    # ... and an older-dated file loaded afterwards does not bring it back.
    await relationships(desk, rel(A, B) + rel(X, B), as_of="2025-03-01")
    assert (await desk.check(isin_of("TOP"), "dk-pension"))["verdict"] == "allowed"


async def test_cycles_in_consolidation_end(desk: Desk) -> None:
    await relationships(desk, rel(A, B) + rel(B, A) + rel(X, Y) + rel(Y, X) + rel(A, X, ULTIMATE))
    await issuers(desk, [("ONE", A, ""), ("TWO", B, "")])
    await dk_facts(desk, "ONE", weapons=False)
    await dk_facts(desk, "TWO", weapons=True)
    assert (await desk.check(isin_of("ONE"), "dk-pension"))["verdict"] == "excluded"
    assert (await desk.check(isin_of("TWO"), "dk-pension"))["verdict"] == "excluded"


async def test_bad_rows_are_refused_and_other_types_set_aside(desk: Desk) -> None:
    bad = await load(
        desk.client,
        desk.steward,
        "gleif-relationships",
        HEADER + rel(A, "NOTALEI") + rel(A, B) + rel(A, A),
        as_of="2025-05-15",
    )
    assert bad.status_code == 422, bad.text
    assert [(e["row"], e["column"]) for e in bad.json()["errors"]] == [
        (2, "end_node_lei"),
        (4, "end_node_lei"),
    ]
    twice = await load(
        desk.client,
        desk.steward,
        "gleif-relationships",
        HEADER + rel(A, B) + rel(A, B),
        as_of="2025-05-15",
    )
    assert twice.status_code == 422, twice.text
    (error,) = twice.json()["errors"]
    assert error["row"] == 3
    assert "duplicate relationship" in error["msg"]
    loaded = await relationships(desk, rel(A, B) + rel(X, B, kind="IS_FUND-MANAGED_BY"))
    assert loaded["rows"] == 1
    assert loaded["summary"]["skipped"] == {
        "not a consolidation relationship (IS_FUND-MANAGED_BY)": 1
    }


# ------------------------------------------------------------------------------ engine (pure)

AT = dt.datetime(2025, 9, 30, 12, 0, tzinfo=dt.UTC)


def record(
    start: str,
    end: str,
    kind: str = DIRECT,
    status: str = "ACTIVE",
    registration: str = "PUBLISHED",
    period_end: dt.date | None = None,
    row: int = 2,
) -> Relationship:
    return Relationship(
        start, end, kind, status, registration, period_end, None, dt.date(2025, 5, 15), 5, row
    )


def dk_snapshot(
    links: list[ConsolidationLink], pct: Decimal | None = None, child_parent: str | None = None
) -> Snapshot:
    fresh = AT.date() - dt.timedelta(days=30)

    def facts(weapons: str) -> list[FactPoint]:
        return [
            FactPoint("controversial_weapons.involved", "sustainalytics", weapons, fresh, 1, 2),
            FactPoint("norms.status", "sustainalytics", "compliant", fresh, 1, 3),
        ]

    snapshot = Snapshot(data_version=9)
    snapshot.issuers = {
        "P": IssuerNode("P", "P", "company", "NL"),
        "S": IssuerNode(
            "S", "S", "company", "NL", parent_issuer_id=child_parent, parent_control_pct=pct
        ),
    }
    snapshot.instruments = {f"ISIN-{i}": InstrumentNode(f"ISIN-{i}", i, "equity") for i in "PS"}
    snapshot.add_issuer_facts("P", facts("false"))
    snapshot.add_issuer_facts("S", facts("true"))
    if child_parent:
        snapshot.subsidiaries = {child_parent: ("S",)}
    snapshot.set_consolidation(links)
    return snapshot


def test_resolution_follows_unknown_leis_and_keeps_the_ultimate_top() -> None:
    ours = {A: ["S"], B: ["P"], Y: ["TOP"]}
    links = resolve_consolidation(
        [
            record(A, X),
            record(X, B),
            record(B, Y),
            record(A, Y, ULTIMATE),  # reached by the direct chain already: not repeated
            record(X, Y, ULTIMATE),  # X is no issuer of ours: no link
        ],
        ours,
    )
    found = {(link.child_id, link.parent_id, len(link.hops)) for link in links}
    assert found == {("S", "P", 2), ("P", "TOP", 1)}
    # Without the direct chain, the ultimate parent is linked directly.
    only_top = resolve_consolidation([record(A, Y, ULTIMATE)], ours)
    assert [(link.child_id, link.parent_id) for link in only_top] == [("S", "TOP")]


def test_resolution_drops_inactive_and_lapsed_records_and_ends_cycles() -> None:
    ours = {A: ["S"], B: ["P"]}
    assert resolve_consolidation([record(A, B, status="INACTIVE")], ours) == []
    assert resolve_consolidation([record(A, B, registration="LAPSED")], ours) == []
    cyclic = resolve_consolidation([record(A, X), record(X, Y), record(Y, X), record(Y, B)], ours)
    assert [(link.child_id, link.parent_id) for link in cyclic] == [("S", "P")]


@pytest.mark.parametrize(("pct", "parent"), [(None, None), (None, "P"), (Decimal(10), "P")])
def test_consolidation_is_control_whatever_the_percentage(
    pct: Decimal | None, parent: str | None
) -> None:
    link = ConsolidationLink("S", "P", (record(A, B),))
    result = evaluate(DK, dk_snapshot([link], pct, parent), "ISIN-P", AT)
    assert result.verdict == "excluded"
    (reason,) = [r for r in result.reasons if r.outcome == "exclude"]
    (evidence,) = [e for e in reason.evidence if e.provider == "gleif"]
    assert (evidence.metric, evidence.value, evidence.threshold) == (
        "parent_consolidation",
        DIRECT,
        B,
    )
    assert (evidence.dataset_id, evidence.source_row) == (5, 2)
    # Without it: a missing percentage is undecided, 10 % is no control.
    without = evaluate(DK, dk_snapshot([], pct, parent), "ISIN-P", AT).verdict
    assert without == ("unknown" if parent and pct is None else "allowed")
    assert evaluate(RPF, dk_snapshot([link], pct, parent), "ISIN-P", AT).verdict != "excluded"


def test_an_ended_relationship_is_no_control_from_its_end() -> None:
    ended = ConsolidationLink("S", "P", (record(A, B, period_end=dt.date(2025, 9, 30)),))
    assert evaluate(DK, dk_snapshot([ended]), "ISIN-P", AT).verdict == "allowed"
    before = dt.datetime(2025, 9, 29, tzinfo=dt.UTC)
    assert evaluate(DK, dk_snapshot([ended]), "ISIN-P", before).verdict == "excluded"


def test_a_consolidation_cycle_between_issuers_ends() -> None:
    snapshot = dk_snapshot(
        [
            ConsolidationLink("S", "P", (record(A, B),)),
            ConsolidationLink("P", "S", (record(B, A, row=3),)),
        ]
    )
    assert evaluate(DK, snapshot, "ISIN-P", AT).verdict == "excluded"
    assert evaluate(DK, snapshot, "ISIN-S", AT).verdict == "excluded"


async def test_a_chain_completed_by_a_later_relationships_load_connects(desk: Desk) -> None:
    """A -> X in one load, X -> B in a later one (another child: the first stays current)."""
    await issuers(desk, [("TOP", B, ""), ("LEAF", A, "")])
    await dk_facts(desk, "TOP", weapons=False)
    await dk_facts(desk, "LEAF", weapons=True)
    await relationships(desk, rel(A, X), as_of="2025-04-01")
    assert (await desk.check(isin_of("TOP"), "dk-pension"))["verdict"] == "allowed"
    later = await relationships(desk, rel(X, B), as_of="2025-05-01")
    decision = await desk.check(isin_of("TOP"), "dk-pension")
    assert decision["verdict"] == "excluded"
    assert [h["dataset_id"] for h in gleif_evidence(decision)][-1] == later["id"]
