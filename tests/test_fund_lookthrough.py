"""Fund look-through (issue 13; domain, "Look-through"): a fund, or an index an index
derivative is written on, is judged by what it holds, at its weights.

Pure engine tests on hand-built snapshots first, then the ``fund-holdings`` kind and checks
through the HTTP API on both dialects.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from stdnum.isin import calc_check_digit as isin_check_digit

from app.kit.time import utcnow
from app.policies.document import LookThrough, PolicyDocument, merge_overlay, parse_document
from app.policies.service import read_document_text
from app.screening.engine import Evaluation, Evaluator, Via, evaluate
from app.screening.snapshot import (
    Composition,
    Constituent,
    FactPoint,
    InstrumentNode,
    IssuerNode,
    Snapshot,
)
from tests.conftest import MakeKey, bearer
from tests.support.checks import CLEAN, FRESH, Desk, open_desk
from tests.support.datasets import datasets, load, load_ok
from tests.support.problems import assert_problem

POLICIES = Path(__file__).resolve().parents[1] / "policies"
AT = dt.datetime(2025, 9, 30, 12, 0, tzinfo=dt.UTC)
DAY = AT.date()
RECENT = DAY - dt.timedelta(days=30)


def policy(name: str, **look_through: Any) -> PolicyDocument:
    document = parse_document(read_document_text((POLICIES / f"{name}.yaml").read_bytes(), "yaml"))
    if look_through:
        settings = document.look_through.model_copy(update=look_through)
        document = document.model_copy(update={"look_through": settings})
    return document


RPF = policy("rpf")


def clean(**overrides: str) -> list[FactPoint]:
    return [
        FactPoint(metric, provider, overrides.get(metric, value), RECENT, 1, 2)
        for (metric, provider), value in CLEAN.items()
    ]


TOBACCO = clean(**{"revenue_pct.tobacco": "96.4"})


def world(*compositions: Composition, excluded: tuple[str, ...] = ("SMOKE",)) -> Snapshot:
    """Companies GOOD, OTHER, SMOKE (a tobacco producer under rpf) and MANAGER (a fund
    manager), each with a share ``EQ<id>``; funds F1..F3 managed by MANAGER; an index IDX (a
    composition, no instrument) and a derivative DER on it."""
    snapshot = Snapshot(data_version=9)
    for issuer_id in ("GOOD", "OTHER", "SMOKE", "MANAGER"):
        snapshot.issuers[issuer_id] = IssuerNode(issuer_id, issuer_id, "company", "NL")
        snapshot.instruments[f"EQ{issuer_id}"] = InstrumentNode(
            f"EQ{issuer_id}", issuer_id, "equity"
        )
        snapshot.add_issuer_facts(issuer_id, TOBACCO if issuer_id in excluded else clean())
    for fund in ("F1", "F2", "F3"):
        snapshot.instruments[fund] = InstrumentNode(fund, "MANAGER", "fund")
    snapshot.instruments["DER"] = InstrumentNode("DER", "MANAGER", "derivative", "IDX")
    grouped: dict[str, tuple[Composition, ...]] = {}
    for composition in compositions:
        grouped[composition.fund_isin] = (*grouped.get(composition.fund_isin, ()), composition)
    snapshot.compositions = grouped
    return snapshot


def holds(
    fund: str, *parts: tuple[str, str], as_of: dt.date = RECENT, dataset: int = 5
) -> Composition:
    return Composition(
        fund,
        as_of,
        dataset,
        tuple(Constituent(ref, w, row) for row, (ref, w) in enumerate(parts, 2)),
    )


def judge(snapshot: Snapshot, isin: str = "F1", document: PolicyDocument = RPF) -> Evaluation:
    return evaluate(document, snapshot, isin, AT)


def test_one_excluded_constituent_at_a_hundredth_of_a_percent_excludes_under_a_strict_policy() -> (
    None
):
    found = judge(world(holds("F1", ("EQGOOD", "99.99"), ("EQSMOKE", "0.01"))))
    assert found.verdict == "excluded"
    assert not found.may_hold
    (reason,) = [r for r in found.reasons if r.outcome == "exclude"]
    # The reason names the constituent, its weight and its own reason, via relation holding.
    assert reason.rule_id == "tobacco"
    assert reason.via[0] == Via("EQSMOKE", "holding")
    assert reason.via[1] == Via("SMOKE", "self")
    weight = reason.evidence[0]
    assert (weight.metric, weight.value, weight.comparison, weight.threshold) == (
        "fund_weight_pct",
        "0.01",
        ">",
        "0",
    )
    assert (weight.dataset_id, weight.source_row, weight.as_of) == (5, 3, RECENT)
    assert reason.evidence[1].metric == "revenue_pct.tobacco"
    assert reason.evidence[1].value == "96.4"
    assert "0.01 % in EQSMOKE" in (reason.detail or "")


def test_a_clean_fund_is_allowed_and_its_issuer_is_still_screened() -> None:
    assert judge(world(holds("F1", ("EQGOOD", "60"), ("EQOTHER", "40")))).verdict == "allowed"
    managed_by_smoke = world(holds("F1", ("EQGOOD", "100")), excluded=("SMOKE", "MANAGER"))
    found = judge(managed_by_smoke)
    assert found.verdict == "excluded"
    assert [r.via for r in found.reasons if r.outcome == "exclude"] == [(Via("MANAGER", "self"),)]


def test_a_constituent_by_issuer_reference_is_judged_as_the_issuer() -> None:
    snapshot = world(holds("F1", ("EQGOOD", "90"), ("LEI-SMOKE", "10")))
    snapshot.issuer_refs["LEI-SMOKE"] = "SMOKE"
    found = judge(snapshot)
    assert found.verdict == "excluded"
    assert found.reasons[0].via[0] == Via("SMOKE", "holding")


@pytest.mark.parametrize(
    ("weight", "verdict"), [("4.99", "watch"), ("5", "watch"), ("5.01", "excluded")]
)
def test_a_fund_exactly_at_the_threshold_is_not_above_it(weight: str, verdict: str) -> None:
    document = policy("rpf", exclude_above_pct=5, watch_above_pct=1)
    rest = str(100 - Decimal(weight))
    found = judge(world(holds("F1", ("EQGOOD", rest), ("EQSMOKE", weight))), document=document)
    assert found.verdict == verdict
    at_watch = judge(world(holds("F1", ("EQGOOD", "99"), ("EQSMOKE", "1"))), document=document)
    assert at_watch.verdict == "allowed"  # exactly at watch_above_pct: not above it


def test_a_fund_of_funds_is_looked_through_and_a_cycle_is_unknown_not_a_hang() -> None:
    nested = world(
        holds("F1", ("EQGOOD", "50"), ("F2", "50")),
        holds("F2", ("EQGOOD", "99"), ("EQSMOKE", "1")),
    )
    found = judge(nested)
    assert found.verdict == "excluded"
    reason = next(r for r in found.reasons if r.outcome == "exclude")
    assert [v.relation for v in reason.via] == ["holding", "holding", "self"]
    assert [v.issuer_id for v in reason.via] == ["F2", "EQSMOKE", "SMOKE"]

    cycle = world(
        holds("F1", ("EQGOOD", "50"), ("F2", "50")),
        holds("F2", ("EQGOOD", "50"), ("F1", "50")),
    )
    for isin in ("F1", "F2"):
        found = judge(cycle, isin)
        assert found.verdict == "unknown"
        assert "cycle" in " ".join(r.detail or "" for r in found.reasons)
    # The same whichever is asked first (nothing partial is cached).
    both = Evaluator(RPF, cycle, AT).instruments(["F2", "F1", "F2"])
    assert [e.verdict for e in both] == ["unknown"] * 3
    assert both[0] == both[2]

    # A cycle does not hide an exclusion found on the way.
    dirty_cycle = world(
        holds("F1", ("EQSMOKE", "50"), ("F2", "50")),
        holds("F2", ("EQGOOD", "50"), ("F1", "50")),
    )
    assert judge(dirty_cycle).verdict == "excluded"
    assert judge(dirty_cycle, "F2").verdict == "excluded"


def test_funds_deeper_than_max_depth_are_unknown() -> None:
    chain = world(
        holds("F1", ("F2", "100")),
        holds("F2", ("F3", "100")),
        holds("F3", ("EQGOOD", "100")),
    )
    assert judge(chain).verdict == "allowed"
    assert judge(chain, document=policy("rpf", max_depth=2)).verdict == "unknown"
    # Asked in another order, with the cache warm: the same answers.
    evaluator = Evaluator(policy("rpf", max_depth=2), chain, AT)
    assert [e.verdict for e in evaluator.instruments(["F3", "F2", "F1"])] == [
        "allowed",
        "allowed",
        "unknown",
    ]


def test_a_stale_or_missing_composition_is_unknown() -> None:
    stale = world(holds("F1", ("EQGOOD", "100"), as_of=DAY - dt.timedelta(days=121)))
    found = judge(stale)
    assert found.verdict == "unknown"
    assert not found.may_hold
    assert found.reasons[0].rule_id == "look-through"
    assert "older than the policy's 120 days" in (found.reasons[0].detail or "")
    at_limit = world(holds("F1", ("EQGOOD", "100"), as_of=DAY - dt.timedelta(days=120)))
    assert judge(at_limit).verdict == "allowed"
    missing = judge(world())
    assert missing.verdict == "unknown"
    assert "no composition" in (missing.reasons[0].detail or "")
    # Dated after the day asked: not yet the composition.
    assert (
        judge(world(holds("F1", ("EQGOOD", "100"), as_of=DAY + dt.timedelta(days=1)))).verdict
        == "unknown"
    )


def test_a_composition_covering_too_little_is_unknown() -> None:
    partial = world(holds("F1", ("EQGOOD", "90"), ("XX0000000000", "10")))
    found = judge(partial)
    assert found.verdict == "unknown"
    (reason,) = found.reasons
    assert reason.evidence[0].metric == "fund_coverage_pct"
    assert (reason.evidence[0].value, reason.evidence[0].threshold) == ("90", "100")
    assert "XX0000000000 10 %" in (reason.detail or "")
    assert judge(partial, document=policy("rpf", min_coverage_pct=90)).verdict == "allowed"
    assert judge(partial, document=policy("rpf", min_coverage_pct=90.01)).verdict == "unknown"
    # Weight the composition does not state (cash, undisclosed) is not covered either.
    assert judge(world(holds("F1", ("EQGOOD", "95")))).verdict == "unknown"


def test_an_index_derivative_looks_through_its_index() -> None:
    snapshot = world(holds("IDX", ("EQGOOD", "99.5"), ("EQSMOKE", "0.5")))
    found = judge(snapshot, "DER")
    assert found.verdict == "excluded"
    reason = next(r for r in found.reasons if r.outcome == "exclude")
    assert [(v.issuer_id, v.relation) for v in reason.via] == [
        ("IDX", "underlying"),
        ("EQSMOKE", "holding"),
        ("SMOKE", "self"),
    ]
    clean_index = world(holds("IDX", ("EQGOOD", "100")))
    assert judge(clean_index, "DER").verdict == "allowed"
    # No composition for the index and no instrument: the underlying is not known.
    assert judge(world(), "DER").verdict == "unknown"


def test_an_older_dated_composition_loaded_later_does_not_supersede() -> None:
    newer = holds("F1", ("EQGOOD", "100"), as_of=DAY - dt.timedelta(days=1), dataset=5)
    backfill = holds("F1", ("EQSMOKE", "100"), as_of=RECENT - dt.timedelta(days=10), dataset=8)
    assert judge(world(newer, backfill)).verdict == "allowed"
    # A day between the two dates reads the older one.
    between = dt.datetime.combine(RECENT, dt.time(12), dt.UTC)
    assert evaluate(RPF, world(newer, backfill), "F1", between).verdict == "excluded"


def test_look_through_in_an_overlay_may_only_tighten() -> None:
    base = RPF
    overlay = parse_document(
        {
            "key": "rpf-client",
            "title": "client",
            "extends": "rpf",
            "look_through": {"exclude_above_pct": 1, "min_coverage_pct": 90, "max_depth": 2},
        }
    )
    merged = merge_overlay(base, overlay)
    assert {tuple(p.loc) for p in merged.problems} == {
        ("look_through", "exclude_above_pct"),
        ("look_through", "min_coverage_pct"),
    }
    assert merged.document.look_through == LookThrough(max_depth=2)
    # A document that says nothing keeps the strict defaults (and its hash).
    assert parse_document({"key": "x", "title": "x"}).look_through == LookThrough()


# ------------------------------------------------------------------------------ through HTTP


def an_isin(n: int) -> str:
    body = f"XS{n:09d}"
    return body + isin_check_digit(body)


FUND, OLDFUND, INDEX, DERIVATIVE = an_isin(1), an_isin(2), an_isin(3), an_isin(4)
PMI, BATS, PMI_MSCI = "US7181721090", "GB0002875804", "IID000000002160939"


def days_ago(n: int) -> str:
    return (utcnow().date() - dt.timedelta(days=n)).isoformat()


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    desk = await open_desk(client, make_key)
    await load_ok(
        client,
        desk.steward,
        "issuers",
        "issuer_id,name,kind,country\nMANAGER,Fund Manager N.V.,company,NL\n",
    )
    # The index is known by its composition (no instrument record): loaded first.
    await compose(desk, f"{INDEX},{BATS},99.5\n{INDEX},{PMI},0.5\n", as_of=FRESH)
    await load_ok(
        client,
        desk.steward,
        "instruments",
        "isin,issuer_id,asset_class,underlying_isin\n"
        f"{FUND},MANAGER,fund,\n{OLDFUND},MANAGER,fund,\n{DERIVATIVE},MANAGER,derivative,{INDEX}\n",
    )
    for issuer in ("MANAGER", "BATS"):
        await desk.clean(issuer)
    await desk.clean("PMI", revenue_pct__tobacco="96.4")
    return desk


async def compose(desk: Desk, rows: str, **params: str) -> dict[str, Any]:
    return await load_ok(
        desk.client,
        desk.steward,
        "fund-holdings",
        "fund_isin,holding_ref,weight_pct\n" + rows,
        **params,
    )


async def test_a_fund_is_judged_by_what_it_holds_through_the_api(desk: Desk) -> None:
    # Without a composition a fund is unknown (data missing), never allowed.
    missing = await desk.check(FUND)
    assert missing["verdict"] == "unknown"
    assert missing["may_hold"] is False
    assert missing["reasons"][0]["rule_id"] == "look-through"

    # PMI by its MSCI ISSUERID (an issuer reference), resolved when the check reads the data.
    loaded = await compose(desk, f"{FUND},{BATS},99.99\n{FUND},{PMI_MSCI},0.01\n", as_of=FRESH)
    decision = await desk.check(FUND)
    assert decision["verdict"] == "excluded"
    (reason,) = [r for r in decision["reasons"] if r["outcome"] == "exclude"]
    assert reason["rule_id"] == "tobacco"
    assert reason["via"] == [
        {"issuer_id": "PMI", "relation": "holding"},
        {"issuer_id": "PMI", "relation": "self"},
    ]
    weight, own = reason["evidence"]
    assert (weight["metric"], weight["value"], weight["comparison"], weight["threshold"]) == (
        "fund_weight_pct",
        "0.01",
        ">",
        "0",
    )
    assert (weight["dataset_id"], weight["source_row"], weight["as_of"]) == (
        loaded["id"],
        3,
        FRESH,
    )
    assert (own["metric"], own["value"]) == ("revenue_pct.tobacco", "96.4")

    # A later composition without PMI: allowed; the earlier decision still replays.
    await compose(desk, f"{FUND},{BATS},100\n", as_of=days_ago(10))
    assert (await desk.check(FUND))["verdict"] == "allowed"
    replay = await desk.client.post(
        f"/v1/decisions/{decision['decision_id']}/replay", headers=bearer(desk.auditor)
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["matches"] is True


async def test_an_older_dated_composition_loaded_later_does_not_supersede_http(desk: Desk) -> None:
    await compose(desk, f"{OLDFUND},{BATS},100\n", as_of=days_ago(10))
    await compose(desk, f"{OLDFUND},{PMI},100\n", as_of=days_ago(20))
    assert (await desk.check(OLDFUND))["verdict"] == "allowed"


async def test_an_index_derivative_looks_through_its_index_http(desk: Desk) -> None:
    decision = await desk.check(DERIVATIVE)
    assert decision["verdict"] == "excluded"
    reason = next(r for r in decision["reasons"] if r["outcome"] == "exclude")
    assert [v["relation"] for v in reason["via"]] == ["underlying", "holding", "self"]
    assert reason["via"][0]["issuer_id"] == INDEX


@pytest.mark.parametrize(
    ("rows", "row", "column"),
    [
        ("XS0000000010,{BATS},50\n", 2, "fund_isin"),
        ("{FUND},{BATS},100.5\n", 2, "weight_pct"),
        ("{FUND},{BATS},-1\n", 2, "weight_pct"),
        ("{FUND},{BATS},60\n{FUND},{PMI},40.02\n", 3, "weight_pct"),
        ("{FUND},{BATS},60\n{FUND},{BATS},10\n", 3, "fund_isin"),
    ],
)
async def test_row_errors_write_nothing(desk: Desk, rows: str, row: int, column: str) -> None:
    before = len(await datasets(desk.client, desk.steward))
    body = "fund_isin,holding_ref,weight_pct\n" + rows.format(FUND=FUND, BATS=BATS, PMI=PMI)
    problem = assert_problem(await load(desk.client, desk.steward, "fund-holdings", body), 422)
    assert (problem["errors"][0]["row"], problem["errors"][0]["column"]) == (row, column)
    assert len(await datasets(desk.client, desk.steward)) == before


async def test_a_composition_within_the_tolerance_loads(desk: Desk) -> None:
    await compose(desk, f"{FUND},{BATS},60\n{FUND},{PMI},40.01\n")
