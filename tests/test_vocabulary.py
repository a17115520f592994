import datetime as dt
from decimal import Decimal

import pytest

from app.kit.vocabulary import (
    METRICS,
    AssetClass,
    InvalidValue,
    IssuerKind,
    PercentBand,
    format_value,
    get_metric,
    ordinal_rank,
    parse_value,
)


@pytest.mark.parametrize(
    ("metric", "raw", "expected"),
    [
        ("controversial_weapons.involved", "TRUE", True),
        ("controversial_weapons.involved", "no", False),
        ("defence.involved", "yes", True),
        ("civilian_firearms.involved", "false", False),
        ("revenue_pct.tobacco", "50", Decimal(50)),
        ("revenue_pct.tobacco", "5.0%", Decimal("5.0")),
        ("revenue_pct.tobacco", "5-9.9", PercentBand(Decimal(5), Decimal("9.9"))),
        ("norms.status", "Non_Compliant", "non_compliant"),
        ("norms.non_compliant_since", "2023-11-21", dt.date(2023, 11, 21)),
        ("country.ituc.rating", "5+", "5+"),
        ("country.cpi.score", "19", Decimal(19)),
        ("country.sanctions.arms_embargo", "eu; UN", frozenset({"EU", "UN"})),
        ("ilo.c029.violation", "true", True),
        ("ilo.c182.violation", "no", False),
        ("controversy.human_rights.severity", "Severe", "severe"),
        ("controversy.human_rights.repeated", "yes", True),
        ("dual_use.involved", "false", False),
        ("defence.high_risk_end_use", "TRUE", True),
    ],
)
def test_parse_value_accepts_each_type(metric: str, raw: str, expected: object) -> None:
    assert parse_value(METRICS[metric], raw) == expected


@pytest.mark.parametrize(
    ("metric", "raw", "message"),
    [
        ("revenue_pct.tobacco", "100.1", "above 100"),
        ("revenue_pct.tobacco", "-1", "below 0"),
        ("revenue_pct.tobacco", "lots", "not a number"),
        ("revenue_pct.tobacco", "NaN", "not a finite number"),
        ("revenue_pct.tobacco", "9.9-5", "low end above"),
        ("controversial_weapons.involved", "maybe", "not a boolean"),
        ("country.freedom_house.pr_rating", "8", "above 7"),
        ("country.ituc.rating", "6", "not one of"),
        ("norms.non_compliant_since", "21/11/2023", "not a date"),
        ("country.sanctions.arms_embargo", "UN;NATO", "unknown authority NATO"),
        ("country.cpi.score", " ", "empty"),
        ("ilo.c087.violation", "alleged", "not a boolean"),
        ("controversy.human_rights.severity", "Red", "not one of none, low"),
    ],
)
def test_parse_value_rejects_with_a_reason(metric: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_value(METRICS[metric], raw)


def test_ituc_five_plus_ranks_above_five() -> None:
    ituc = METRICS["country.ituc.rating"]
    assert ordinal_rank(ituc, "5+") > ordinal_rank(ituc, "5") > ordinal_rank(ituc, "4")


def test_format_value_is_canonical() -> None:
    assert format_value(Decimal("100")) == "100"
    assert format_value(Decimal("5.50")) == "5.5"
    assert format_value(frozenset({"US", "EU"})) == "EU;US"
    assert format_value(True) == "true"
    assert format_value(PercentBand(Decimal(5), Decimal("9.9"))) == "5-9.9"


def test_unknown_metric_lists_known_ones() -> None:
    with pytest.raises(InvalidValue, match=r"revenue_pct\.tobacco"):
        get_metric("revenue.tobacco")


def test_asset_classes_and_issuer_kinds_are_the_contract_names() -> None:
    assert [a.value for a in AssetClass] == [
        "equity",
        "corporate_bond",
        "sovereign_bond",
        "derivative",
        "fund",
    ]
    assert [k.value for k in IssuerKind] == [
        "company",
        "sovereign",
        "sub_sovereign",
        "agency",
        "supranational",
    ]


def test_asr_metrics_follow_the_vocabulary_and_are_appended() -> None:
    """Seed 001's metrics: one boolean per ILO core convention (NORMLEX code), an ordinal
    controversy severity on Sustainalytics' six categories, and booleans for recurrence,
    dual-use and high-risk supply. Each description says where its data comes from."""
    ilo = [name for name in METRICS if name.startswith("ilo.")]
    assert ilo == [f"ilo.c{n:03d}.violation" for n in (29, 87, 98, 100, 105, 111, 138, 182)]
    severity = get_metric("controversy.human_rights.severity")
    assert severity.choices == ("none", "low", "moderate", "significant", "high", "severe")
    assert ordinal_rank(severity, "severe") > ordinal_rank(severity, "high")
    assert "Sustainalytics" in severity.description
    assert "MSCI" in severity.description
    for name in (
        *ilo,
        "controversy.human_rights.repeated",
        "dual_use.involved",
        "defence.high_risk_end_use",
    ):
        metric = get_metric(name)
        assert metric.type.value == "boolean"
        assert "no vendor field" in metric.description.lower()
        assert not metric.derived_from
