"""a.s.r.'s exclusion table (seed 001, section 6a, "uitsluitingsregels en meetgegevens") on its
own metrics: the eight ILO core conventions, severe *and* repeated human-rights controversies,
dual-use with an established risk, and the Dutch defence exception's high-risk-supply test.

Pure engine with hand-built snapshots (as tests/test_engine.py), and one HTTP test: a facts file
with every new metric loads and decides an asr check.
"""

import dataclasses
import datetime as dt

import httpx
import pytest

from app.kit.vocabulary import (
    CONTROVERSY_SEVERITY,
    ILO_CORE_CONVENTIONS,
    METRICS,
    InvalidValue,
    ValueType,
    ordinal_rank,
    parse_value,
)
from app.screening.engine import Evaluation, evaluate
from app.screening.snapshot import FactPoint, IssuerNode, ListEntryPoint, Snapshot
from tests.conftest import MakeKey
from tests.support.checks import ASR_CLEAN, FRESH, ILO_CODES, open_desk
from tests.support.datasets import load
from tests.test_engine import ASR, AT, company, fact, fired, nl_defence_exception, universe

ILO_METRICS = [f"ilo.{code}.violation" for code in ILO_CODES]
SEVERITY = "controversy.human_rights.severity"
REPEATED = "controversy.human_rights.repeated"


def asr_company_facts(
    overrides: dict[str, str] | None = None, drop: tuple[str, ...] = ()
) -> list[FactPoint]:
    """A company clean under every asr company rule, but for ``overrides``, without ``drop``."""
    values = {
        "controversial_weapons.involved": "false",
        "norms.status": "compliant",
        "defence.involved": "false",
        "civilian_firearms.involved": "false",
        **ASR_CLEAN,
    }
    for metric, value in (overrides or {}).items():
        assert metric in values, metric
        values[metric] = value
    return [fact(m, v, "internal") for m, v in values.items() if m not in drop]


def asr(
    facts: list[FactPoint], account: str = "client", snapshot: Snapshot | None = None
) -> Evaluation:
    snapshot = snapshot or universe(company(), facts={"C": facts})
    return evaluate(ASR, snapshot, "ISIN-C", AT, account=account)  # type: ignore[arg-type]


def test_each_row_of_the_table_is_its_own_rule_citing_the_seed() -> None:
    rows = {rule.id: rule for rule in ASR.rules}
    for rule_id, row in (
        ("norms-violators", "row 1"),
        ("human-rights-controversies", "row 2"),
        ("ilo-core-conventions", "row 3"),
    ):
        assert rows[rule_id].source.startswith("seed 001, section 6a")
        assert row in rows[rule_id].source
        assert rows[rule_id].outcome == "exclude"
    assert "dual-use-risk" in rows
    (nl_defence,) = ASR.exceptions
    assert nl_defence.lifts == ["defence-risk"]  # never the dual-use or norms rows


def test_a_company_clear_on_every_row_is_allowed() -> None:
    result = asr(asr_company_facts())
    assert result.verdict == "allowed"
    assert result.reasons == ()


# ------------------------------------------------------------- row 3: ILO core conventions


def test_the_eight_conventions_are_named_with_their_subjects() -> None:
    assert [number for _, number, _ in ILO_CORE_CONVENTIONS] == [
        29,
        87,
        98,
        100,
        105,
        111,
        138,
        182,
    ]
    for code, number, subject in ILO_CORE_CONVENTIONS:
        metric = METRICS[f"ilo.{code}.violation"]
        assert metric.type is ValueType.boolean
        assert f"No. {number} ({subject})" in metric.description
        assert "no vendor field" in metric.description.lower()


@pytest.mark.parametrize("metric", ILO_METRICS)
def test_each_ilo_convention_violation_excludes(metric: str) -> None:
    result = asr(asr_company_facts({metric: "true"}))
    assert result.verdict == "excluded"
    assert fired(result) == {("ilo-core-conventions", "exclude")}
    (reason,) = result.reasons
    assert [(e.metric, e.value, e.comparison, e.threshold) for e in reason.evidence] == [
        (metric, "true", "==", "true")
    ]


@pytest.mark.parametrize("metric", ILO_METRICS)
def test_each_ilo_convention_without_data_is_unknown(metric: str) -> None:
    """Seven conventions clear and one not known: not a clean bill (fail closed)."""
    result = asr(asr_company_facts(drop=(metric,)))
    assert result.verdict == "unknown"
    assert result.may_hold is False
    assert fired(result) == {("ilo-core-conventions", "unknown")}
    (reason,) = result.reasons
    assert metric in (reason.detail or "") + " ".join(e.metric for e in reason.evidence)


def test_one_violation_decides_even_when_another_convention_is_missing() -> None:
    facts = asr_company_facts({"ilo.c182.violation": "true"}, drop=("ilo.c087.violation",))
    result = asr(facts)
    assert result.verdict == "excluded"
    assert fired(result) == {("ilo-core-conventions", "exclude")}


# ----------------------------------------------- row 2: severe and repeated human-rights cases


@pytest.mark.parametrize(
    ("severity", "repeated", "verdict"),
    [
        ("severe", "true", "excluded"),  # severe and repeated: the seed's words
        ("severe", "false", "allowed"),  # severe, a one-off: not this rule
        ("high", "true", "allowed"),  # the edge: one step below severe is not enough
        ("high", "false", "allowed"),
        ("significant", "true", "allowed"),
        ("none", "false", "allowed"),
    ],
)
def test_human_rights_controversies_must_be_severe_and_repeated(
    severity: str, repeated: str, verdict: str
) -> None:
    facts = asr_company_facts({SEVERITY: severity, REPEATED: repeated})
    result = asr(facts)
    assert result.verdict == verdict
    if verdict == "excluded":
        assert fired(result) == {("human-rights-controversies", "exclude")}
        (reason,) = result.reasons
        assert {(e.metric, e.value, e.comparison, e.threshold) for e in reason.evidence} == {
            (SEVERITY, "severe", ">=", "severe"),
            (REPEATED, "true", "==", "true"),
        }
    else:
        assert result.reasons == ()


@pytest.mark.parametrize(
    ("known", "verdict"),
    [
        # one half missing: unknown unless the other half already decides the rule false
        ({SEVERITY: "severe"}, "unknown"),
        ({REPEATED: "true"}, "unknown"),
        ({SEVERITY: "high"}, "allowed"),  # not severe: recurrence cannot matter
        ({REPEATED: "false"}, "allowed"),  # not repeated: severity cannot matter
        ({}, "unknown"),
    ],
)
def test_missing_controversy_data_is_unknown_unless_the_other_half_decides(
    known: dict[str, str], verdict: str
) -> None:
    missing = tuple(m for m in (SEVERITY, REPEATED) if m not in known)
    facts = asr_company_facts(known, drop=missing)
    result = asr(facts)
    assert result.verdict == verdict
    if verdict == "unknown":
        assert fired(result) == {("human-rights-controversies", "unknown")}


@pytest.mark.parametrize(("days", "verdict"), [(213, "allowed"), (214, "unknown")])
def test_stale_controversy_data_is_unknown(days: int, verdict: str) -> None:
    """Company data older than 213 days is missing under asr (twice-yearly lists): a repeated
    controversy whose severity is stale cannot be cleared."""
    old = AT.date() - dt.timedelta(days=days)
    repeated = asr_company_facts({REPEATED: "true"})
    facts = [f for f in repeated if f.metric != SEVERITY]
    facts.append(fact(SEVERITY, "none", "internal", as_of=old))
    result = asr(facts)
    assert result.verdict == verdict
    if verdict == "unknown":
        assert fired(result) == {("human-rights-controversies", "unknown")}
        assert "stale" in (result.reasons[0].detail or "")


def test_severity_scale_is_ordered_as_the_vendor_categories() -> None:
    metric = METRICS[SEVERITY]
    assert metric.choices == CONTROVERSY_SEVERITY
    ranks = [ordinal_rank(metric, label) for label in CONTROVERSY_SEVERITY]
    assert ranks == sorted(ranks) == list(range(6))  # Sustainalytics Category 0..5
    assert parse_value(metric, "Severe") == "severe"
    with pytest.raises(InvalidValue, match="not one of"):
        parse_value(metric, "5")  # a vendor code is mapped by its adapter, not guessed here


# -------------------------------------------------------------------------- row 4: dual-use


@pytest.mark.parametrize(
    ("involved", "risk", "verdict"),
    [
        ("true", "true", "excluded"),
        ("true", "false", "allowed"),  # a dual-use producer without the risk: not excluded
        ("false", "true", "allowed"),  # the risk alone is no dual-use involvement
        ("true", None, "unknown"),  # involvement known, risk unassessed: fail closed
        ("false", None, "allowed"),
    ],
)
def test_dual_use_is_excluded_only_with_the_risk(
    involved: str, risk: str | None, verdict: str
) -> None:
    overrides = {"dual_use.involved": involved}
    if risk is not None:
        overrides["defence.high_risk_end_use"] = risk
    drop = ("defence.high_risk_end_use",) if risk is None else ()
    result = asr(asr_company_facts(overrides, drop=drop))
    assert result.verdict == verdict
    if verdict != "allowed":
        outcome = "exclude" if verdict == "excluded" else "unknown"
        assert fired(result) == {("dual-use-risk", outcome)}


def test_defence_is_still_presumed_at_risk() -> None:
    result = asr(asr_company_facts({"defence.involved": "true"}))
    assert fired(result) == {("defence-risk", "exclude")}


# ------------------------------------------- the Dutch defence exception and high-risk supply


@pytest.mark.parametrize(
    ("risk", "verdict"),
    [("false", "allowed"), ("true", "excluded"), (None, "excluded")],
)
def test_supply_to_high_risk_countries_voids_the_dutch_defence_exception(
    risk: str | None, verdict: str
) -> None:
    """Own account, board-approved: the exception holds only while the data shows no supply
    to high-risk countries; supply, or no data on it, voids it and the defence hit stands."""
    overrides = {"defence.involved": "true"}
    if risk is not None:
        overrides["defence.high_risk_end_use"] = risk
    drop = ("defence.high_risk_end_use",) if risk is None else ()
    facts = asr_company_facts(overrides, drop=drop)
    snapshot = universe(company("C", "NL"), facts={"C": facts}, entries=[exception_for_c()])
    result = asr(facts, account="own", snapshot=snapshot)
    assert result.verdict == verdict
    excepted = ("exception:nl-defence", "excepted") in fired(result)
    assert excepted is (verdict == "allowed")
    if verdict == "excluded":
        assert ("defence-risk", "exclude") in fired(result)


def exception_for_c() -> ListEntryPoint:
    """tests/test_engine.py's board approval (2025-01-15, for a year), for company C."""
    return dataclasses.replace(nl_defence_exception(), issuer_id="C")


def test_sovereigns_are_not_read_for_company_rows() -> None:
    """The new rows apply to companies: a Free sovereign needs none of their data."""
    nl = IssuerNode("NLD", "Netherlands", "sovereign", "NL")
    snapshot = universe(
        nl, country_facts={"NL": [fact("country.freedom_house.status", "Free", "freedom-house")]}
    )
    result = evaluate(ASR, snapshot, "ISIN-NLD", AT)
    assert result.verdict == "allowed"


# ----------------------------------------------------------------------------- through HTTP


async def test_a_facts_file_with_every_asr_metric_loads_and_decides(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    desk = await open_desk(client, make_key)
    rows = {
        "controversial_weapons.involved": "false",
        "norms.status": "compliant",
        "defence.involved": "false",
        "civilian_firearms.involved": "false",
        **ASR_CLEAN,
    }
    await desk.facts("EQUINOR", "internal", rows)
    allowed = await desk.check("NO0010096985", "asr")
    assert allowed["verdict"] == "allowed", allowed

    # a later file: C182 (worst forms of child labour) violated, with severe, repeated cases
    await desk.facts(
        "EQUINOR",
        "internal",
        {"ilo.c182.violation": "true", SEVERITY: "severe", REPEATED: "true"},
    )
    excluded = await desk.check("NO0010096985", "asr")
    assert excluded["verdict"] == "excluded"
    reasons = {r["rule_id"]: r for r in excluded["reasons"]}
    assert set(reasons) == {"ilo-core-conventions", "human-rights-controversies"}
    (ilo,) = reasons["ilo-core-conventions"]["evidence"]
    assert (ilo["metric"], ilo["value"], ilo["provider"]) == (
        "ilo.c182.violation",
        "true",
        "internal",
    )

    # a value outside the scale is a row error naming the scale
    bad = await load(
        client,
        desk.steward,
        "facts",
        f"issuer_ref,metric,value,as_of\nEQUINOR,{SEVERITY},extreme,{FRESH}\n",
        provider="internal",
    )
    assert bad.status_code == 422, bad.text
    assert "none, low, moderate, significant, high, severe" in bad.text
