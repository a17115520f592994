"""The pure engine against the shipped policies, with plain objects: every seed rule and its edges.

No database: a ``Snapshot`` is built by hand. (The same rules through the HTTP API, with data
loaded through the dataset endpoints, are in tests/test_checks.py.)
"""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from app.datasets.records import EmbargoLoad
from app.policies.document import ControlThreshold, PolicyDocument, parse_document
from app.policies.service import read_document_text
from app.screening.engine import Evaluation, Reason, Via, evaluate, evaluate_many
from app.screening.snapshot import (
    Embargo,
    FactPoint,
    InstrumentNode,
    IssuerNode,
    ListEntryPoint,
    Snapshot,
)
from tests.support.calendar import years_before
from tests.support.checks import ASR_CLEAN, CLEAN

POLICIES = Path(__file__).resolve().parents[1] / "policies"
AT = dt.datetime(2025, 9, 30, 12, 0, tzinfo=dt.UTC)
DAY = AT.date()
FRESH = DAY - dt.timedelta(days=30)


def policy(name: str) -> PolicyDocument:
    return parse_document(read_document_text((POLICIES / f"{name}.yaml").read_bytes(), "yaml"))


RPF, ASR, DK = policy("rpf"), policy("asr"), policy("dk-pension")


def fact(metric: str, value: str, provider: str, as_of: dt.date = FRESH) -> FactPoint:
    return FactPoint(metric, provider, value, as_of, dataset_id=1, source_row=2)


def universe(
    *issuers: IssuerNode,
    facts: dict[str, list[FactPoint]] | None = None,
    country_facts: dict[str, list[FactPoint]] | None = None,
    embargoes: list[Embargo] | None = None,
    entries: list[ListEntryPoint] | None = None,
    instruments: list[InstrumentNode] | None = None,
) -> Snapshot:
    snapshot = Snapshot(data_version=7)
    for issuer in issuers:
        snapshot.issuers[issuer.issuer_id] = issuer
        snapshot.instruments.setdefault(
            f"ISIN-{issuer.issuer_id}",
            InstrumentNode(
                f"ISIN-{issuer.issuer_id}",
                issuer.issuer_id,
                "sovereign_bond" if issuer.kind == "sovereign" else "equity",
            ),
        )
    for instrument in instruments or []:
        snapshot.instruments[instrument.isin] = instrument
    for issuer_id, points in (facts or {}).items():
        snapshot.add_issuer_facts(issuer_id, points)
    for country, points in (country_facts or {}).items():
        snapshot.add_country_facts(country, points)
    snapshot.embargo_loads = (EmbargoLoad(dataset_id=3, provider="sipri", as_of=FRESH),)
    snapshot.embargoes = {}
    for embargo in embargoes or []:
        snapshot.embargoes.setdefault(embargo.country, ())
        snapshot.embargoes[embargo.country] += (embargo,)
    grouped: dict[tuple[str, str], tuple[ListEntryPoint, ...]] = {}
    for entry in entries or []:
        grouped[(entry.policy_key, entry.issuer_id)] = (
            *grouped.get((entry.policy_key, entry.issuer_id), ()),
            entry,
        )
    snapshot.list_entries = grouped
    snapshot.subsidiaries = dict(
        Snapshot.group((i.parent_issuer_id, i.issuer_id) for i in issuers if i.parent_issuer_id)
    )
    snapshot.sovereigns = dict(
        Snapshot.group((i.country, i.issuer_id) for i in issuers if i.kind == "sovereign")
    )
    return snapshot


def company(issuer_id: str = "C", country: str = "NL", **extra: object) -> IssuerNode:
    return IssuerNode(issuer_id, f"{issuer_id} N.V.", "company", country, **extra)  # type: ignore[arg-type]


def clean_company_facts(**overrides: str) -> list[FactPoint]:
    """An RPF-clean company: every metric RPF reads present, fresh and below its threshold."""
    values = dict(CLEAN)
    for name, value in overrides.items():
        metric = name.replace("__", ".")
        key = next(k for k in values if k[0] == metric)
        values[key] = value
    return [fact(m, v, p) for (m, p), v in values.items()]


def judge(document: PolicyDocument, snapshot: Snapshot, isin: str = "ISIN-C") -> Evaluation:
    return evaluate(document, snapshot, isin, AT)


def fired(result: Evaluation) -> set[tuple[str, str]]:
    return {(r.rule_id, r.outcome) for r in result.reasons}


# ------------------------------------------------------------------------- company rules


def test_clean_company_is_allowed_with_no_reasons() -> None:
    result = judge(RPF, universe(company(), facts={"C": clean_company_facts()}))
    assert result.verdict == "allowed"
    assert result.may_hold is True
    assert result.reasons == ()


@pytest.mark.parametrize(
    ("value", "verdict"),
    [("50", "allowed"), ("50.01", "excluded"), ("96.4", "excluded"), ("49.99", "allowed")],
)
def test_rpf_tobacco_is_strictly_above_fifty(value: str, verdict: str) -> None:
    facts = clean_company_facts(revenue_pct__tobacco=value)
    result = judge(RPF, universe(company(), facts={"C": facts}))
    assert result.verdict == verdict
    if verdict == "excluded":
        (reason,) = result.reasons
        assert reason.rule_id == "tobacco"
        (evidence,) = reason.evidence
        assert (evidence.provider, evidence.comparison, evidence.threshold) == ("iss", ">", "50")
        assert evidence.value == value


@pytest.mark.parametrize(
    ("metric", "value", "rule", "verdict"),
    [
        ("revenue_pct.unconventional_oil_gas", "5", None, "allowed"),
        ("revenue_pct.unconventional_oil_gas", "5.01", "fossil-fuels", "excluded"),
        ("revenue_pct.arctic_oil_gas", "5.5", "fossil-fuels", "excluded"),
        ("revenue_pct.thermal_coal_power", "10", None, "allowed"),
        ("revenue_pct.thermal_coal_power", "10.5", "coal-power", "excluded"),
        ("revenue_pct.thermal_coal_extraction", "5", None, "allowed"),
    ],
)
def test_rpf_fossil_and_coal_thresholds(
    metric: str, value: str, rule: str | None, verdict: str
) -> None:
    facts = clean_company_facts(**{metric.replace(".", "__"): value})
    result = judge(RPF, universe(company(), facts={"C": facts}))
    assert result.verdict == verdict
    assert {r.rule_id for r in result.reasons} == ({rule} if rule else set())


def test_coal_above_ten_fires_both_coal_rules() -> None:
    facts = clean_company_facts(revenue_pct__thermal_coal_extraction="10.1")
    result = judge(RPF, universe(company(), facts={"C": facts}))
    assert {r.rule_id for r in result.reasons} == {"coal-extraction", "fossil-fuels"}


@pytest.mark.parametrize(
    ("band", "verdict"),
    [("0-4.9", "allowed"), ("5-9.9", "unknown"), ("10-24.9", "excluded")],
)
def test_vendor_band_straddling_a_threshold_is_unknown(band: str, verdict: str) -> None:
    facts = clean_company_facts(revenue_pct__unconventional_oil_gas=band)
    result = judge(RPF, universe(company(), facts={"C": facts}))
    assert result.verdict == verdict
    if verdict == "unknown":
        assert result.may_hold is False  # rpf: unknown blocks
        (reason,) = result.reasons
        assert reason.outcome == "unknown"
        assert reason.detail is not None
        assert "straddles" in reason.detail


def test_controversial_weapons_per_sustainalytics_only() -> None:
    facts = clean_company_facts(controversial_weapons__involved="true")
    assert judge(RPF, universe(company(), facts={"C": facts})).verdict == "excluded"
    # The same finding from MSCI does not satisfy a rule that names Sustainalytics: missing.
    msci_only = [f for f in clean_company_facts() if f.metric != "controversial_weapons.involved"]
    msci_only.append(fact("controversial_weapons.involved", "true", "msci"))
    result = judge(RPF, universe(company(), facts={"C": msci_only}))
    assert result.verdict == "unknown"
    assert ("controversial-weapons", "unknown") in fired(result)


def norms_facts(since: dt.date) -> list[FactPoint]:
    facts = clean_company_facts(norms__status="non_compliant")
    return [*facts, fact("norms.non_compliant_since", since.isoformat(), "robeco")]


def test_norms_exactly_two_years_is_excluded_one_day_less_is_engagement() -> None:
    two_years = dt.date(DAY.year - 2, DAY.month, DAY.day)
    result = judge(RPF, universe(company(), facts={"C": norms_facts(two_years)}))
    assert result.verdict == "excluded"
    assert ("norms-violators", "exclude") in fired(result)
    assert ("norms-engagement", "watch") in fired(result)

    result = judge(
        RPF,
        universe(company(), facts={"C": norms_facts(two_years + dt.timedelta(days=1))}),
    )
    assert result.verdict == "watch"
    assert result.may_hold is True
    assert fired(result) == {("norms-engagement", "watch")}


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2026, 11, 30),  # a 30th: the day the old API test broke
        dt.date(2026, 12, 31),  # a 31st
        dt.date(2026, 3, 31),  # the 31st after a short month
        dt.date(2028, 2, 29),  # leap day: two years before is 28 February 2026
        dt.date(2026, 3, 1),  # the day after February
        dt.date(2026, 1, 1),  # new year
    ],
)
@pytest.mark.parametrize("clock", [dt.time(0, 0), dt.time(23, 59, 59, 999999)])
def test_norms_two_year_edge_on_every_kind_of_day(day: dt.date, clock: dt.time) -> None:
    """Exactly two calendar years (at any time of the UTC day) excludes; a day less is watch."""
    at = dt.datetime.combine(day, clock, dt.UTC)
    edge = years_before(day, 2)
    fresh = [f._replace(as_of=day - dt.timedelta(days=30)) for f in norms_facts(edge)]
    result = evaluate(RPF, universe(company(), facts={"C": fresh}), "ISIN-C", at)
    assert result.verdict == "excluded", (day, edge)
    later = [
        f._replace(value=(edge + dt.timedelta(days=1)).isoformat())
        if f.metric == "norms.non_compliant_since"
        else f
        for f in fresh
    ]
    result = evaluate(RPF, universe(company(), facts={"C": later}), "ISIN-C", at)
    assert fired(result) == {("norms-engagement", "watch")}, (day, edge)


def test_norms_duration_from_history_when_no_since_date() -> None:
    history = [
        fact("norms.status", "compliant", "robeco", dt.date(2022, 3, 31)),
        fact("norms.status", "non_compliant", "robeco", dt.date(2023, 3, 31)),
        fact("norms.status", "non_compliant", "robeco", dt.date(2024, 3, 31)),
        fact("norms.status", "non_compliant", "robeco", FRESH),
    ]
    facts = [f for f in clean_company_facts() if f.metric != "norms.status"] + history
    result = judge(RPF, universe(company(), facts={"C": facts}))
    assert result.verdict == "excluded"  # non-compliant since 2023-03-31: > 2 years by 2025-09
    norms = next(r for r in result.reasons if r.rule_id == "norms-violators")
    assert any("since 2023-03-31" in e.value for e in norms.evidence)


def test_stale_fact_counts_as_missing() -> None:
    """RPF reviews company data twice a year: older than 213 days is missing (seed 004)."""
    facts = [f for f in clean_company_facts() if f.metric != "revenue_pct.tobacco"]
    facts.append(fact("revenue_pct.tobacco", "10", "iss", DAY - dt.timedelta(days=214)))
    result = judge(RPF, universe(company(), facts={"C": facts}))
    assert result.verdict == "unknown"
    (reason,) = result.reasons
    assert reason.rule_id == "tobacco"
    assert reason.detail is not None
    assert "stale" in reason.detail
    # exactly 213 days old is still fresh
    facts[-1] = fact("revenue_pct.tobacco", "10", "iss", DAY - dt.timedelta(days=213))
    assert judge(RPF, universe(company(), facts={"C": facts})).verdict == "allowed"


# ---------------------------------------------------------------------- countries, state


def sovereign(country: str) -> IssuerNode:
    return IssuerNode(f"SOV-{country}", f"Republic {country}", "sovereign", country)


def country_facts(country: str, **values: str) -> dict[str, list[FactPoint]]:
    base = {
        "country.freedom_house.status": ("Free", "freedom-house"),
        "country.freedom_house.pr_rating": ("1", "freedom-house"),
        "country.freedom_house.cl_rating": ("1", "freedom-house"),
        "country.ituc.rating": ("1", "ituc"),
        "country.cpi.score": ("80", "transparency-international"),
        "country.sanctions.financial": ("", "internal"),  # stated: none
    }
    for name, value in values.items():
        metric = "country." + name.replace("__", ".")
        base[metric] = (value, base[metric][1])
    return {country: [fact(m, v, p) for m, (v, p) in base.items()]}


@pytest.mark.parametrize(
    ("values", "rule", "verdict"),
    [
        ({"cpi__score": "19"}, "country-corruption", "excluded"),
        ({"cpi__score": "20"}, None, "allowed"),
        ({"ituc__rating": "5"}, None, "allowed"),
        ({"ituc__rating": "5+"}, "country-labour", "excluded"),
        (
            {
                "freedom_house__status": "Not Free",
                "freedom_house__pr_rating": "7",
                "freedom_house__cl_rating": "6",
            },
            "country-freedom",
            "excluded",
        ),
        (
            {
                "freedom_house__status": "Not Free",
                "freedom_house__pr_rating": "6",
                "freedom_house__cl_rating": "6",
            },
            None,
            "allowed",
        ),
    ],
)
def test_rpf_country_indices(values: dict[str, str], rule: str | None, verdict: str) -> None:
    snapshot = universe(sovereign("XA"), country_facts=country_facts("XA", **values))
    result = judge(RPF, snapshot, "ISIN-SOV-XA")
    assert result.verdict == verdict
    assert {r.rule_id for r in result.reasons} == ({rule} if rule else set())


def test_arms_embargo_in_force_excludes_and_a_lifted_one_does_not() -> None:
    def with_embargo(until: dt.date | None) -> Snapshot:
        return universe(
            sovereign("XB"),
            country_facts=country_facts("XB"),
            embargoes=[Embargo("XB", "EU", "2014/512/CFSP", dt.date(2014, 7, 31), until, 3, 2)],
        )

    result = judge(RPF, with_embargo(None), "ISIN-SOV-XB")
    assert result.verdict == "excluded"
    (reason,) = result.reasons
    assert reason.rule_id == "country-sanctions"
    assert reason.evidence[0].value == "EU"
    assert judge(RPF, with_embargo(DAY), "ISIN-SOV-XB").verdict == "allowed"  # lifted today


@pytest.mark.parametrize(("pct", "verdict"), [("50", "excluded"), ("49.99", "allowed")])
def test_rpf_state_owned_company_at_exactly_fifty_percent(pct: str, verdict: str) -> None:
    owned = company("SOE", "XC", state_owner_country="XC", state_owner_pct=Decimal(pct))
    snapshot = universe(
        sovereign("XC"),
        owned,
        facts={"SOE": clean_company_facts()},
        country_facts=country_facts("XC", cpi__score="12"),
    )
    result = judge(RPF, snapshot, "ISIN-SOE")
    assert result.verdict == verdict
    if verdict == "excluded":
        (reason,) = result.reasons
        assert reason.rule_id == "country-corruption"
        assert [(v.issuer_id, v.relation) for v in reason.via] == [
            ("SOV-XC", "state_owner"),
            ("SOV-XC", "self"),
        ]


# ------------------------------------------------------------------------------- groups


def dk_company_facts(weapons: str = "false") -> list[FactPoint]:
    return [
        fact("controversial_weapons.involved", weapons, "sustainalytics"),
        fact("norms.status", "compliant", "sustainalytics"),
    ]


@pytest.mark.parametrize(("control", "verdict"), [("50", "allowed"), ("50.01", "excluded")])
def test_dk_parent_of_violating_subsidiary_above_half(control: str, verdict: str) -> None:
    parent = company("P")
    child = company("S", parent_issuer_id="P", parent_control_pct=Decimal(control))
    snapshot = universe(
        parent,
        child,
        facts={"P": dk_company_facts(), "S": dk_company_facts(weapons="true")},
    )
    result = judge(DK, snapshot, "ISIN-P")
    assert result.verdict == verdict
    if verdict == "excluded":
        (reason,) = (r for r in result.reasons if r.outcome == "exclude")
        assert [(v.issuer_id, v.relation) for v in reason.via] == [
            ("S", "subsidiary"),
            ("S", "self"),
        ]


def test_rpf_has_no_group_rule() -> None:
    parent = company("P")
    child = company("S", parent_issuer_id="P", parent_control_pct=Decimal(100))
    snapshot = universe(
        parent,
        child,
        facts={"P": clean_company_facts(), "S": clean_company_facts(revenue_pct__tobacco="90")},
    )
    assert judge(RPF, snapshot, "ISIN-P").verdict == "allowed"
    assert judge(RPF, snapshot, "ISIN-S").verdict == "excluded"


def test_derivative_takes_the_verdict_of_its_underlying() -> None:
    tobacco = company("T")
    snapshot = universe(
        tobacco,
        company("BANK"),
        facts={"T": clean_company_facts(revenue_pct__tobacco="90"), "BANK": clean_company_facts()},
        instruments=[InstrumentNode("ADR-T", "BANK", "derivative", underlying_isin="ISIN-T")],
    )
    result = judge(RPF, snapshot, "ADR-T")
    assert result.verdict == "excluded"
    (reason,) = result.reasons
    assert [(v.issuer_id, v.relation) for v in reason.via] == [
        ("T", "underlying"),
        ("T", "self"),
    ]


def test_unknown_instrument_blocks() -> None:
    result = judge(RPF, universe(company(), facts={"C": clean_company_facts()}), "US0000000000")
    assert result.verdict == "unknown"
    assert result.may_hold is False
    assert result.reasons[0].rule_id == "data:instrument"


# -------------------------------------------------------------------------------- lists


def entry(
    kind: str,
    decided_on: dt.date,
    policy_key: str = "rpf",
    issuer_id: str = "C",
    reason: str = "board decision",
    reference: str | None = "IC-1",
    expires_on: dt.date | None = None,
    rule_ids: tuple[str, ...] = (),
) -> ListEntryPoint:
    return ListEntryPoint(
        policy_key, issuer_id, kind, reason, decided_on, reference, None, expires_on, 9, 2, rule_ids
    )


def test_inclusion_overrides_an_exclusion_until_it_expires() -> None:
    facts = {"C": clean_company_facts(revenue_pct__tobacco="90")}
    # decided the day after the evidence (FRESH) was dated: the tobacco hit was established
    readmit = entry("inclusion", FRESH + dt.timedelta(days=1), expires_on=dt.date(2025, 12, 31))
    result = judge(RPF, universe(company(), facts=facts, entries=[readmit]))
    assert result.verdict == "allowed"
    assert fired(result) == {("list:inclusion", "readmitted")}
    expired = entry("inclusion", FRESH, expires_on=DAY)
    assert judge(RPF, universe(company(), facts=facts, entries=[expired])).verdict == "excluded"


def test_a_later_exclusion_entry_beats_an_inclusion() -> None:
    entries = [
        entry("inclusion", dt.date(2025, 1, 1)),
        entry("exclusion", dt.date(2025, 6, 1)),
    ]
    result = judge(RPF, universe(company(), facts={"C": clean_company_facts()}, entries=entries))
    assert result.verdict == "excluded"


def test_dialogue_never_lifts_an_exclusion() -> None:
    entries = [
        entry("exclusion", dt.date(2024, 1, 1), "dk-pension"),
        entry("dialogue", dt.date(2025, 1, 1), "dk-pension"),
    ]
    result = judge(DK, universe(company(), facts={"C": dk_company_facts()}, entries=entries))
    assert result.verdict == "excluded"
    assert ("list:dialogue", "watch") in fired(result)


def asr_defence_facts(firearms: str = "false", weapons: str = "false") -> list[FactPoint]:
    return [
        fact("controversial_weapons.involved", weapons, "sustainalytics"),
        fact("norms.status", "compliant", "sustainalytics"),
        fact("defence.involved", "true", "sustainalytics"),
        fact("civilian_firearms.involved", firearms, "sustainalytics"),
        *(fact(metric, value, "internal") for metric, value in ASR_CLEAN.items()),
    ]


def nl_defence_exception() -> ListEntryPoint:
    """a.s.r.'s board approval of the Dutch defence exception for DEF, for one year."""
    return entry(
        "exception",
        dt.date(2025, 1, 15),
        "asr",
        "DEF",
        reason="nl-defence: own account, board approval",
        reference="BOARD-2025-001",
        expires_on=dt.date(2026, 1, 15),
    )


def test_asr_dutch_defence_exception_and_its_expiry() -> None:
    """The exception is for a.s.r.'s own account (seed 001): only there does it lift the hit."""
    dutch = company("DEF", "NL")
    exception = nl_defence_exception()
    snapshot = universe(dutch, facts={"DEF": asr_defence_facts()}, entries=[exception])

    def own(snapshot: Snapshot, at: dt.datetime = AT) -> Evaluation:
        return evaluate(ASR, snapshot, "ISIN-DEF", at, account="own")

    result = own(snapshot)
    assert result.verdict == "allowed"
    assert ("exception:nl-defence", "excepted") in fired(result)
    (note,) = result.reasons
    # the entry, the exception's conditions (Dutch domicile; no civilian firearms; no supply to
    # high-risk countries), the lifted hit
    assert [e.metric for e in note.evidence] == [
        "list.exception",
        "issuer.country",
        "civilian_firearms.involved",
        "defence.high_risk_end_use",
        "defence.involved",
    ]
    assert (note.evidence[1].value, note.evidence[1].threshold) == ("NL", "NL")
    # client money (and a check without a portfolio is client money): no exception
    client = judge(ASR, snapshot, "ISIN-DEF")
    assert client.verdict == "excluded"
    assert fired(client) == {("defence-risk", "exclude")}
    # on its expiry date the exception is over and the exclusion is back (facts still fresh)
    assert own(snapshot, dt.datetime(2026, 1, 14, tzinfo=dt.UTC)).verdict == "allowed"
    expired = own(snapshot, dt.datetime(2026, 1, 15, tzinfo=dt.UTC))
    assert expired.verdict == "excluded"
    assert fired(expired) == {("defence-risk", "exclude")}
    # civilian firearms void the exception; so does a non-Dutch domicile
    voided = universe(dutch, facts={"DEF": asr_defence_facts(firearms="true")}, entries=[exception])
    assert own(voided).verdict == "excluded"
    foreign = company("DEF", "FR")
    assert own(
        universe(foreign, facts={"DEF": asr_defence_facts()}, entries=[exception])
    ).verdict == ("excluded")


def test_evaluation_is_deterministic() -> None:
    facts = clean_company_facts(revenue_pct__tobacco="90", revenue_pct__thermal_coal_power="50")
    snapshot = universe(company(), facts={"C": facts})
    assert judge(RPF, snapshot) == judge(RPF, snapshot)
    assert [r.rule_id for r in judge(RPF, snapshot).reasons] == ["coal-power", "tobacco"]


# ------------------------------------------------------------ fail closed (issue 10, section 1)


def link_of(reason: Reason) -> tuple[str, str, str, str]:
    """The link a propagated hit travelled by: its last evidence (percentage vs threshold)."""
    link = reason.evidence[-1]
    return (link.metric, link.value, link.comparison, link.threshold)


def test_an_inclusion_does_not_lift_a_later_hit() -> None:
    """RPF: readmitted for engagement progress on the norms rule; a controversial-weapons flag
    dated after the decision is a new hit, and excludes."""
    flagged = norms_facts(dt.date(2022, 1, 1))  # flagged for over two years: excluded
    readmit = entry("inclusion", FRESH + dt.timedelta(days=1), reason="engagement progress")
    result = judge(RPF, universe(company(), facts={"C": flagged}, entries=[readmit]))
    assert result.verdict == "allowed"
    (note,) = result.reasons
    assert (note.rule_id, note.outcome) == ("list:inclusion", "readmitted")
    assert note.detail == "lifts norms-engagement, norms-violators"

    weapons = fact("controversial_weapons.involved", "true", "sustainalytics", DAY)
    later = [f for f in flagged if f.metric != "controversial_weapons.involved"] + [weapons]
    result = judge(RPF, universe(company(), facts={"C": later}, entries=[readmit]))
    assert result.verdict == "excluded"
    assert fired(result) == {("controversial-weapons", "exclude"), ("list:inclusion", "readmitted")}


def test_an_inclusion_lifts_a_reconfirmed_hit_and_the_rules_it_names() -> None:
    # The vendor re-states the same flag after the decision: the hit was established before.
    flagged = norms_facts(dt.date(2022, 1, 1))
    restated = [*flagged, fact("norms.status", "non_compliant", "robeco", DAY)]
    readmit = entry("inclusion", FRESH + dt.timedelta(days=1))
    assert judge(RPF, universe(company(), facts={"C": restated}, entries=[readmit])).verdict == (
        "allowed"
    )
    # A hit established after the decision is lifted only when the entry names its rule.
    tobacco = clean_company_facts(revenue_pct__tobacco="90")
    early = entry("inclusion", FRESH - dt.timedelta(days=1))
    assert judge(RPF, universe(company(), facts={"C": tobacco}, entries=[early])).verdict == (
        "excluded"
    )
    named = entry("inclusion", FRESH - dt.timedelta(days=1), rule_ids=("tobacco",))
    result = judge(RPF, universe(company(), facts={"C": tobacco}, entries=[named]))
    assert result.verdict == "allowed"
    assert fired(result) == {("list:inclusion", "readmitted")}


def test_an_inclusion_never_lifts_missing_data() -> None:
    readmit = entry("inclusion", FRESH, rule_ids=("tobacco", "norms-violators"))
    result = judge(RPF, universe(company(), facts={}, entries=[readmit]))
    assert result.verdict == "unknown"
    assert result.may_hold is False
    assert {r.outcome for r in result.reasons} == {"unknown", "undecided"}  # nothing readmitted
    stale = [f._replace(as_of=DAY - dt.timedelta(days=300)) for f in clean_company_facts()]
    result = judge(RPF, universe(company(), facts={"C": stale}, entries=[readmit]))
    assert result.verdict == "unknown"


@pytest.mark.parametrize(
    ("country_data", "verdict"),
    [
        ({}, "unknown"),  # nothing loaded for the owner country
        ({"cpi__score": "12"}, "excluded"),
        ({"cpi__score": "20"}, "allowed"),
    ],
)
def test_rpf_state_owner_is_three_valued(country_data: dict[str, str], verdict: str) -> None:
    owned = company("SOE", "XD", state_owner_country="XD", state_owner_pct=Decimal(100))
    countries = country_facts("XD", **country_data) if country_data else {}
    snapshot = universe(owned, facts={"SOE": clean_company_facts()}, country_facts=countries)
    result = judge(RPF, snapshot, "ISIN-SOE")
    assert result.verdict == verdict
    assert result.may_hold is (verdict == "allowed")
    if verdict == "unknown":
        assert {r.outcome for r in result.reasons} == {"unknown"}
        assert all(r.via[0] == Via("country:XD", "state_owner") for r in result.reasons)
        details = " ".join(r.detail or "" for r in result.reasons)
        assert "country XD" in details
        assert "country.cpi.score" in details
    if verdict == "excluded":
        (reason,) = result.reasons
        assert link_of(reason) == ("state_owner_pct", "100", ">=", "50")


def test_a_state_owner_without_a_percentage_is_unknown() -> None:
    owned = company("SOE", "XE", state_owner_country="XE")
    snapshot = universe(
        owned,
        facts={"SOE": clean_company_facts()},
        country_facts=country_facts("XE", cpi__score="12"),
    )
    result = judge(RPF, snapshot, "ISIN-SOE")
    assert result.verdict == "unknown"
    (reason,) = result.reasons
    assert reason.rule_id == "country-corruption"
    assert reason.detail is not None
    assert "without an ownership percentage" in reason.detail


def group(control: Decimal | None, **child_facts: str) -> Snapshot:
    parent = company("P")
    child = company("S", parent_issuer_id="P", parent_control_pct=control)
    return universe(
        parent,
        child,
        facts={"P": dk_company_facts(), "S": dk_company_facts(**child_facts)},
        entries=[],
    )


def test_dk_group_rule_carries_list_exclusions_readmissions_and_the_control_evidence() -> None:
    # (a) a subsidiary excluded by the funds' decision: its 100 % parent violates too
    excluded = entry("exclusion", dt.date(2025, 3, 1), "dk-pension", "S")
    snapshot = group(Decimal(100))
    snapshot.list_entries = {("dk-pension", "S"): (excluded,)}
    result = judge(DK, snapshot, "ISIN-P")
    assert result.verdict == "excluded"
    (reason,) = result.reasons
    assert reason.rule_id == "list:exclusion"
    assert [(v.issuer_id, v.relation) for v in reason.via] == [("S", "subsidiary"), ("S", "self")]
    assert link_of(reason) == ("parent_control_pct", "100", ">", "50")

    # (c) a readmitted subsidiary no longer excludes its 60 % parent; the readmission shows
    weapons = group(Decimal(60), weapons="true")
    assert judge(DK, weapons, "ISIN-P").verdict == "excluded"
    readmit = entry("inclusion", FRESH + dt.timedelta(days=1), "dk-pension", "S")
    weapons.list_entries = {("dk-pension", "S"): (readmit,)}
    result = judge(DK, weapons, "ISIN-P")
    assert result.verdict == "allowed"
    assert fired(result) == {("list:inclusion", "readmitted")}
    assert result.reasons[0].via[0] == Via("S", "subsidiary")


def test_dk_group_link_without_a_control_percentage_is_unknown() -> None:
    # (b) control not established: a subsidiary's exclusion makes its parent unknown
    result = judge(DK, group(None, weapons="true"), "ISIN-P")
    assert result.verdict == "unknown"
    (reason,) = result.reasons
    assert (reason.rule_id, reason.outcome) == ("controversial-weapons", "unknown")
    assert reason.detail is not None
    assert "no control percentage" in reason.detail
    # ... and a clean subsidiary under the same link changes nothing
    assert judge(DK, group(None), "ISIN-P").verdict == "allowed"


def test_norms_flagged_since_an_unknown_date_is_unknown() -> None:
    """First load: flagged, no since date, no history: it may be over two years already."""
    facts = [*clean_company_facts(norms__status="non_compliant")]
    result = judge(RPF, universe(company(), facts={"C": facts}))
    assert result.verdict == "unknown"
    assert ("norms-violators", "unknown") in fired(result)
    assert ("norms-engagement", "watch") in fired(result)
    # a policy that says "count from the first observation" may answer watch
    lenient = RPF.model_copy(
        update={
            "rules": [
                r.model_copy(
                    update={
                        "when": r.when.model_copy(update={"start_unobserved": "first_observation"})
                    }
                )
                if r.id == "norms-violators"
                else r
                for r in RPF.rules
            ]
        }
    )
    assert judge(lenient, universe(company(), facts={"C": facts})).verdict == "watch"
    # an observation two years old already decides it (the start can only be earlier)
    first = fact("norms.status", "non_compliant", "robeco", years_before(DAY, 2))
    result = judge(RPF, universe(company(), facts={"C": [first, *facts]}))
    assert result.verdict == "excluded"
    # an earlier, different value dates the start: under two years is engagement
    compliant = fact("norms.status", "compliant", "robeco", DAY - dt.timedelta(days=400))
    result = judge(RPF, universe(company(), facts={"C": [compliant, *facts]}))
    assert result.verdict == "watch"


@pytest.mark.parametrize(
    ("days", "verdict"), [(213, "allowed"), (214, "unknown"), (390, "unknown")]
)
def test_rpf_company_data_ages_by_its_review_cycle(days: int, verdict: str) -> None:
    """Seed 004 reviews company data twice a year: all of it 390 days old is unknown."""
    old = [f._replace(as_of=DAY - dt.timedelta(days=days)) for f in clean_company_facts()]
    assert judge(RPF, universe(company(), facts={"C": old})).verdict == verdict


@pytest.mark.parametrize(
    ("days", "verdict"), [(390, "allowed"), (400, "allowed"), (401, "unknown")]
)
def test_rpf_country_data_ages_yearly(days: int, verdict: str) -> None:
    facts = country_facts("XF")
    aged = {"XF": [f._replace(as_of=DAY - dt.timedelta(days=days)) for f in facts["XF"]]}
    snapshot = universe(sovereign("XF"), country_facts=aged)
    assert judge(RPF, snapshot, "ISIN-SOV-XF").verdict == verdict


def test_a_derivative_on_an_unknown_underlying_is_unknown() -> None:
    snapshot = universe(
        company("BANK"),
        facts={"BANK": clean_company_facts()},
        instruments=[InstrumentNode("OPT-X", "BANK", "derivative", underlying_isin="XS0000000009")],
    )
    result = judge(RPF, snapshot, "OPT-X")
    assert result.verdict == "unknown"
    (reason,) = result.reasons
    assert reason.rule_id == "data:underlying"
    assert reason.detail is not None
    assert "XS0000000009" in reason.detail


def test_an_exception_never_lifts_missing_data() -> None:
    """a.s.r.'s Dutch defence exception lifts the defence hit, not the lack of defence data."""
    dutch = company("DEF", "NL")
    exception = nl_defence_exception()
    no_defence_data = [f for f in asr_defence_facts() if f.metric != "defence.involved"]
    snapshot = universe(dutch, facts={"DEF": no_defence_data}, entries=[exception])
    result = evaluate(ASR, snapshot, "ISIN-DEF", AT, account="own")
    assert result.verdict == "unknown"
    assert ("defence-risk", "unknown") in fired(result)


# ------------------------------------------- fail closed, second look (a reviewer's findings)


def test_an_ownership_cycle_answers_the_same_whatever_is_asked_first() -> None:
    """C1 and C2 each control the other (a malformed graph); C1 makes controversial weapons.
    Both are excluded under dk-pension, asked alone, together or in either order."""
    c1 = company("C1", parent_issuer_id="C2", parent_control_pct=Decimal(60))
    c2 = company("C2", parent_issuer_id="C1", parent_control_pct=Decimal(60))
    snapshot = universe(
        c1, c2, facts={"C1": dk_company_facts(weapons="true"), "C2": dk_company_facts()}
    )
    alone = evaluate_many(DK, snapshot, ["ISIN-C2"], AT)
    first = evaluate_many(DK, snapshot, ["ISIN-C1", "ISIN-C2"], AT)
    last = evaluate_many(DK, snapshot, ["ISIN-C2", "ISIN-C1"], AT)
    assert alone[0] == first[1] == last[0]
    assert alone[0].verdict == "excluded"
    assert first[0] == last[1]
    assert first[0].verdict == "excluded"


def test_an_inclusion_naming_rules_lifts_those_only() -> None:
    both = clean_company_facts(revenue_pct__tobacco="60", controversial_weapons__involved="true")
    named = entry("inclusion", FRESH + dt.timedelta(days=1), rule_ids=("tobacco",))
    result = judge(RPF, universe(company(), facts={"C": both}, entries=[named]))
    assert result.verdict == "excluded"
    assert fired(result) == {("controversial-weapons", "exclude"), ("list:inclusion", "readmitted")}
    note = next(r for r in result.reasons if r.outcome == "readmitted")
    assert note.detail == "lifts tobacco"
    assert [e.metric for e in note.evidence] == ["list.inclusion", "revenue_pct.tobacco"]


def test_an_inclusion_during_engagement_does_not_lift_the_later_two_year_exclusion() -> None:
    """Flagged since 2023-06-01; readmitted on 2024-01-01 (seven months in: only the watch
    held then). Two years on, the exclusion is a hit the decision could not have seen."""
    since = dt.date(2023, 6, 1)
    facts = [
        *norms_facts(since),
        fact("norms.status", "non_compliant", "robeco", dt.date(2023, 12, 1)),
        fact("norms.non_compliant_since", since.isoformat(), "robeco", dt.date(2023, 12, 1)),
    ]
    during = entry("inclusion", dt.date(2024, 1, 1))
    result = judge(RPF, universe(company(), facts={"C": facts}, entries=[during]))
    assert result.verdict == "excluded"
    assert fired(result) == {("norms-violators", "exclude"), ("list:inclusion", "readmitted")}
    assert next(r for r in result.reasons if r.outcome == "readmitted").detail == (
        "lifts norms-engagement"
    )


def test_an_inclusion_does_not_lift_data_loaded_after_it_even_if_dated_before() -> None:
    """The entry was recorded in dataset 9; a weapons flag dated before its decision but loaded
    later (dataset 10) is evidence the decision could not have seen."""
    late = fact("controversial_weapons.involved", "true", "sustainalytics", FRESH)._replace(
        dataset_id=10
    )
    facts = [f for f in clean_company_facts() if f.metric != "controversial_weapons.involved"]
    readmit = entry("inclusion", FRESH + dt.timedelta(days=1))
    result = judge(RPF, universe(company(), facts={"C": [*facts, late]}, entries=[readmit]))
    assert result.verdict == "excluded"
    assert fired(result) == {("controversial-weapons", "exclude")}


def test_an_undecided_link_travels_on_to_the_grandparent() -> None:
    g1 = company("G1")
    g2 = company("G2", parent_issuer_id="G1", parent_control_pct=Decimal(80))
    g3 = company("G3", parent_issuer_id="G2")  # no control percentage
    snapshot = universe(
        g1,
        g2,
        g3,
        facts={
            "G1": dk_company_facts(),
            "G2": dk_company_facts(),
            "G3": dk_company_facts(weapons="true"),
        },
    )
    for isin in ("ISIN-G2", "ISIN-G1"):
        result = judge(DK, snapshot, isin)
        assert result.verdict == "unknown", isin
        (reason,) = result.reasons
        link = next(e for e in reason.evidence if e.metric == "parent_control_pct")
        assert link.value == "not given"
    assert [v.issuer_id for v in judge(DK, snapshot, "ISIN-G1").reasons[0].via] == [
        "G2",
        "G3",
        "G3",
    ]


def test_an_exception_lifts_the_issuers_own_hits_only() -> None:
    """An overlay of asr with a group rule: the Dutch parent's own defence hit is lifted on
    its own account; a hit from its foreign subsidiary, and an undecided one, are not."""
    grouped = ASR.model_copy(
        update={
            "propagation": ASR.propagation.model_copy(
                update={"subsidiary_to_parent": ControlThreshold(op=">", control_pct=50)}
            )
        }
    )
    dutch = company("DEF", "NL")
    exception = nl_defence_exception()

    def parent_with(child: IssuerNode) -> Evaluation:
        snapshot = universe(
            dutch,
            child,
            facts={"DEF": asr_defence_facts(), child.issuer_id: asr_defence_facts()},
            entries=[exception],
        )
        return evaluate(grouped, snapshot, "ISIN-DEF", AT, account="own")

    result = parent_with(
        company("SUB", "US", parent_issuer_id="DEF", parent_control_pct=Decimal(60))
    )
    assert result.verdict == "excluded"
    (hit,) = (r for r in result.reasons if r.outcome == "exclude")
    assert hit.via[0] == Via("SUB", "subsidiary")
    assert ("exception:nl-defence", "excepted") in fired(result)  # its own hit was lifted
    undecided = parent_with(company("SUB", "US", parent_issuer_id="DEF"))
    assert undecided.verdict == "unknown"


def test_an_exception_is_void_while_a_not_hit_by_rule_cannot_be_decided() -> None:
    dutch = company("DEF", "NL")
    no_weapons_data = [
        f for f in asr_defence_facts() if f.metric != "controversial_weapons.involved"
    ]
    snapshot = universe(dutch, facts={"DEF": no_weapons_data}, entries=[nl_defence_exception()])
    result = evaluate(ASR, snapshot, "ISIN-DEF", AT, account="own")
    assert result.verdict == "excluded"  # the defence hit stands: the exception does not hold
    assert not any(r.outcome == "excepted" for r in result.reasons)
    assert fired(result) == {("defence-risk", "exclude"), ("controversial-weapons", "unknown")}


@pytest.mark.parametrize(("days", "verdict"), [(400, "excluded"), (401, "unknown")])
def test_an_arms_embargo_list_goes_stale_like_country_data(days: int, verdict: str) -> None:
    snapshot = universe(
        sovereign("XB"),
        country_facts=country_facts("XB"),
        embargoes=[Embargo("XB", "EU", "2014/512/CFSP", dt.date(2014, 7, 31), None, 3, 2)],
    )
    snapshot.embargo_loads = (EmbargoLoad(3, "sipri", DAY - dt.timedelta(days=days)),)
    result = judge(RPF, snapshot, "ISIN-SOV-XB")
    assert result.verdict == verdict
    if verdict == "unknown":
        (reason,) = result.reasons
        assert reason.detail is not None
        assert "arms-embargoes lists are stale" in reason.detail
        assert reason.evidence[0].dataset_id == 3


def test_stale_data_is_shown_as_evidence() -> None:
    old = DAY - dt.timedelta(days=300)
    facts = [
        *(f for f in clean_company_facts() if f.metric != "revenue_pct.tobacco"),
        fact("revenue_pct.tobacco", "1", "iss", old),
    ]
    (reason,) = judge(RPF, universe(company(), facts={"C": facts})).reasons
    (evidence,) = reason.evidence
    assert (evidence.metric, evidence.as_of, evidence.comparison, evidence.threshold) == (
        "revenue_pct.tobacco",
        old,
        "as_of >=",
        (DAY - dt.timedelta(days=213)).isoformat(),
    )


def test_a_stale_embargo_list_beside_a_fresh_one_is_unknown_unless_the_fresh_one_decides() -> None:
    """Providers' lists complement each other: a fresh list without the country does not
    clear it while another provider's list is stale; a fresh list with the embargo decides."""
    stale_load = EmbargoLoad(4, "eu", DAY - dt.timedelta(days=500))
    fresh_load = EmbargoLoad(3, "sipri", FRESH)

    def judged(*embargoes: Embargo) -> Evaluation:
        snapshot = universe(
            sovereign("XB"), country_facts=country_facts("XB"), embargoes=list(embargoes)
        )
        snapshot.embargo_loads = (fresh_load, stale_load)
        return judge(RPF, snapshot, "ISIN-SOV-XB")

    in_stale_list = Embargo("XB", "EU", "2014/512/CFSP", dt.date(2014, 7, 31), None, 4, 2)
    result = judged(in_stale_list)
    assert result.verdict == "unknown"
    assert fired(result) == {("country-sanctions", "unknown")}
    assert judged().verdict == "unknown"  # absent from both: the stale list cannot say so
    in_fresh_list = Embargo("XB", "UN", "UNSCR 1970", dt.date(2011, 2, 26), None, 3, 2)
    assert judged(in_fresh_list).verdict == "excluded"
