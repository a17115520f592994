"""The policy document alone (no database): validation, canonical form, strictness, overlays."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from app.kit.errors import FieldError
from app.policies.document import (
    AllOf,
    AnyOf,
    DataContext,
    Duration,
    DurationSpec,
    PolicyDocument,
    PolicyDocumentInvalid,
    Threshold,
    canonical_json,
    condition_problem,
    document_data,
    document_sha256,
    effective_document,
    merge_overlay,
    parse_document,
)
from tests.support.policies import (
    HOUSE,
    SHIPPED,
    house_exception,
    house_rule,
    overlay,
    shipped,
    shipped_path,
)


def errors_of(data: Any) -> list[FieldError]:
    with pytest.raises(PolicyDocumentInvalid) as caught:
        parse_document(data)
    return list(caught.value.errors)


def by_loc(errors: list[FieldError]) -> dict[tuple[str | int, ...], str]:
    return {e.loc: e.msg for e in errors}


@pytest.mark.parametrize("key", SHIPPED)
def test_shipped_policies_are_valid_and_cite_their_seed(key: str) -> None:
    document = parse_document(shipped(key))
    assert document.key == key
    assert document.extends is None
    seed = {"rpf": "seed 004", "asr": "seed 001", "dk-pension": "seed 003", "pensura": "seed 002"}[
        key
    ]
    assert document.source is not None
    assert seed in document.source
    # Every shipped policy enforces something: screening rules, or (Pensura, whose ABTN names
    # no exclusions) position limits, each citing the seed's text.
    assert document.rules or document.position_limits
    for limit in document.position_limits:
        assert limit.source.startswith("ABTN"), limit.id
    for rule in document.rules:
        assert rule.source.startswith(seed), rule.id
    for exception in document.exceptions:
        assert exception.source.startswith(seed), exception.id
    # The file carries comments where the seed had to be interpreted.
    assert shipped_path(key).read_text(encoding="utf-8").count("\n#") >= 3


def _when(document: PolicyDocument, rule_id: str) -> Any:
    rule = document.rule(rule_id)
    assert rule is not None, rule_id
    return rule.when


def _triples(members: list[Any]) -> list[tuple[str, str, Any]]:
    assert all(isinstance(m, Threshold) for m in members)
    return [(m.metric, m.op, m.value) for m in members]


def test_rpf_states_seed_004_exactly() -> None:
    rpf = parse_document(shipped("rpf"))
    tobacco = _when(rpf, "tobacco")
    assert (tobacco.metric, tobacco.op, tobacco.value, tobacco.providers) == (
        "revenue_pct.tobacco",
        ">",
        50,
        ["iss"],
    )
    fossil = _when(rpf, "fossil-fuels")
    assert isinstance(fossil, AnyOf)
    assert set(_triples(fossil.any)) == {
        ("revenue_pct.thermal_coal_extraction", ">", 5),
        ("revenue_pct.unconventional_oil_gas", ">", 5),
        ("revenue_pct.arctic_oil_gas", ">", 5),
    }
    for rule_id, metric in (
        ("coal-extraction", "revenue_pct.thermal_coal_extraction"),
        ("coal-power", "revenue_pct.thermal_coal_power"),
    ):
        coal = _when(rpf, rule_id)
        assert (coal.metric, coal.op, coal.value) == (metric, ">", 10)
    engagement, violators = rpf.rule("norms-engagement"), rpf.rule("norms-violators")
    assert engagement is not None
    assert violators is not None
    assert engagement.outcome == "watch"
    assert violators.outcome == "exclude"
    assert isinstance(violators.when, Duration)
    assert violators.when.for_at_least == DurationSpec(years=2)
    assert violators.when.since_metric == "norms.non_compliant_since"
    embargo = _when(rpf, "country-sanctions")
    assert (embargo.op, embargo.threshold()) == ("intersects", frozenset({"UN", "EU", "US"}))
    freedom = _when(rpf, "country-freedom")
    assert isinstance(freedom, AllOf)
    assert _triples(freedom.all) == [
        ("country.freedom_house.status", "==", "Not Free"),
        ("country.freedom_house.pr_cl_average", ">", 6),
    ]
    ituc = _when(rpf, "country-labour")
    assert (ituc.op, ituc.value) == (">=", "5+")  # 5+ only: 5 does not count
    cpi = _when(rpf, "country-corruption")
    assert (cpi.op, cpi.threshold()) == ("<=", Decimal(19))
    for rule_id in ("country-sanctions", "country-freedom", "country-labour", "country-corruption"):
        rule = rpf.rule(rule_id)
        assert rule is not None
        assert rule.applies_to.issuer_kinds == ["sovereign"]
    assert rpf.propagation.state_owner is not None
    assert (rpf.propagation.state_owner.op, rpf.propagation.state_owner.pct) == (">=", 50)
    assert rpf.propagation.subsidiary_to_parent is None
    assert rpf.unknown == "block"


def test_asr_and_dk_pension_state_their_seeds() -> None:
    asr = parse_document(shipped("asr"))
    not_free = _when(asr, "country-not-free")
    assert (not_free.metric, not_free.op, not_free.value) == (
        "country.freedom_house.status",
        "==",
        "Not Free",
    )
    (nl_defence,) = asr.exceptions
    assert nl_defence.lifts == ["defence-risk"]
    assert nl_defence.conditions.issuer_countries == ["NL"]
    assert nl_defence.conditions.not_hit_by == ["controversial-weapons"]
    assert nl_defence.requires == ["reference", "expires_on"]
    assert nl_defence.max_duration_days == 366
    assert nl_defence.scope == "own_account"

    dk = parse_document(shipped("dk-pension"))
    parent = dk.propagation.subsidiary_to_parent
    assert parent is not None
    assert (parent.op, parent.control_pct) == (">", 50)
    assert dk.lists.dialogue == "watch"  # a dialogue entry never lifts an exclusion
    assert dk.lists.inclusion == "readmit"
    sanctions = _when(dk, "country-sanctions")
    assert sanctions.threshold() == frozenset({"UN", "EU"})


def test_every_problem_is_listed_with_its_path() -> None:
    document = copy.deepcopy(shipped("rpf"))
    rules = document["rules"]
    rules[3]["when"]["metric"] = "revenue_pct.tobaco"  # unknown metric
    rules[0]["when"]["providers"] = ["sustainalytics", "bloomberg"]  # unknown provider
    rules[5]["when"]["value"] = 150  # out of range
    rules[8]["when"]["all"][0]["op"] = ">"  # not a comparison for a choice
    rules[9]["when"]["value"] = "6"  # not an ITUC rating
    rules[10]["id"] = rules[1]["id"]  # duplicate id
    document["data"]["providers"] = {"revenue_pct.tobacco": ["iss", "iss"]}
    document["colour"] = "blue"  # unknown field
    found = by_loc(errors_of(document))
    assert "unknown metric 'revenue_pct.tobaco'" in found[("rules", 3, "when", "metric")]
    assert "unknown provider 'bloomberg'" in found[("rules", 0, "when", "providers", 1)]
    assert "above 100" in found[("rules", 5, "when", "value")]
    assert "'>' is not a comparison" in found[("rules", 8, "when", "all", 0, "op")]
    assert "'6' is not one of" in found[("rules", 9, "when", "value")]
    assert "duplicate id 'norms-engagement'" in found[("rules", 10, "id")]
    assert "listed twice" in found[("data", "providers", "revenue_pct.tobacco")]
    assert "unknown field" in found[("colour",)]
    assert len(found) == 8


@pytest.mark.parametrize(
    ("when", "loc", "message"),
    [
        ({"metric": "revenue_pct.tobacco", "op": ">", "value": "50"}, ("value",), "as a number"),
        ({"metric": "revenue_pct.tobacco", "op": ">", "value": "5-9.9"}, ("value",), "number"),
        ({"metric": "revenue_pct.tobacco", "op": "in", "value": [5]}, ("op",), "not a comparison"),
        ({"metric": "country.ituc.rating", "op": "in", "value": "5"}, ("value",), "list"),
        ({"metric": "country.ituc.rating", "op": "==", "value": ["5"]}, ("value",), "one value"),
        ({"metric": "controversial_weapons.involved", "op": "==", "value": 1}, ("value",), "true"),
        (
            {"metric": "country.sanctions.arms_embargo", "op": "intersects", "value": ["UN;EU"]},
            ("value",),
            "one per item",
        ),
        (
            {"metric": "country.sanctions.arms_embargo", "op": "intersects", "value": ["NATO"]},
            ("value",),
            "unknown authority",
        ),
        ({"metric": "country.cpi.score", "op": "<=", "value": -1}, ("value",), "below 0"),
        (
            {"metric": "norms.status", "value": "x", "for_at_least": {"years": 2}},
            ("value",),
            "one of",
        ),
        (
            {"metric": "revenue_pct.tobacco", "value": 5, "for_at_least": {"years": 2}},
            ("value",),
            "labels",
        ),
        (
            {"metric": "norms.status", "value": "non_compliant", "for_at_least": {"years": 0}},
            ("for_at_least",),
            "years, months or days",
        ),
        (
            {
                "metric": "norms.status",
                "value": "non_compliant",
                "for_at_least": {"years": 2},
                "since_metric": "norms.status",
            },
            ("since_metric",),
            "date metric",
        ),
        ({"any": []}, ("any",), "at least 1"),
        ("tobacco > 50", (), "a condition is"),
    ],
)
def test_conditions_are_checked_against_the_vocabulary(
    when: Any, loc: tuple[str, ...], message: str
) -> None:
    document = {
        "key": "x",
        "title": "x",
        "rules": [{"id": "r", "title": "r", "source": "s", "when": when, "outcome": "exclude"}],
    }
    found = by_loc(errors_of(document))
    assert message in found[("rules", 0, "when", *loc)], found


def test_exceptions_must_name_existing_rules_and_valid_countries() -> None:
    document = copy.deepcopy(shipped("asr"))
    exception = document["exceptions"][0]
    exception["lifts"] = ["defence-risk", "no-such-rule"]
    exception["conditions"]["issuer_countries"] = ["NL", "XX"]
    exception["conditions"]["not_hit_by"] = ["controversial-weapons", "defence-risk"]
    found = by_loc(errors_of(document))
    assert "'no-such-rule'" in found[("exceptions", 0, "lifts", 1)]
    assert "ISO 3166-1" in found[("exceptions", 0, "conditions", "issuer_countries", 1)]
    assert "could never apply" in found[("exceptions", 0, "conditions", "not_hit_by", 1)]


def test_canonical_form_ignores_key_order_and_keeps_only_given_fields() -> None:
    data = shipped("dk-pension")
    reordered = dict(reversed(list(data.items())))
    first, second = parse_document(data), parse_document(reordered)
    assert canonical_json(first) == canonical_json(second)
    assert document_sha256(first) == document_sha256(second)
    stored = document_data(first)
    assert "exceptions" not in stored  # defaults are not written into the document
    assert "position_limits" not in stored
    assert document_sha256(parse_document(stored)) == document_sha256(first)
    assert canonical_json(first).startswith(b'{"data":{"max_age_days":400')


def test_duration_counts_calendar_time() -> None:
    two_years = DurationSpec(years=2)
    assert two_years.before(dt.date(2026, 2, 28)) == dt.date(2024, 2, 28)
    assert two_years.before(dt.date(2026, 3, 1)) == dt.date(2024, 3, 1)
    assert DurationSpec(years=1).before(dt.date(2024, 2, 29)) == dt.date(2023, 2, 28)
    assert DurationSpec(months=1, days=1).before(dt.date(2026, 3, 31)) == dt.date(2026, 2, 27)
    assert two_years.text() == "2 years"


def _threshold(metric: str, op: str, value: Any, **extra: Any) -> Threshold:
    return Threshold.model_validate({"metric": metric, "op": op, "value": value, **extra})


CTX = DataContext(providers={}, max_age_days=400, unknown_blocks=True)


@pytest.mark.parametrize(
    ("base", "tighter", "looser"),
    [
        (
            _threshold("country.ituc.rating", ">=", "5+"),
            _threshold("country.ituc.rating", ">", "4"),
            _threshold("country.ituc.rating", "==", "5"),
        ),
        (
            _threshold("revenue_pct.tobacco", ">", 50),
            _threshold("revenue_pct.tobacco", ">=", 50),
            _threshold("revenue_pct.tobacco", ">=", 50.5),
        ),
        (
            _threshold("country.cpi.score", "<", 20),
            _threshold("country.cpi.score", "<=", 20),
            _threshold("country.cpi.score", "<=", 19),
        ),
        (
            _threshold("country.freedom_house.status", "!=", "Free"),
            _threshold("country.freedom_house.status", "in", ["Partly Free", "Not Free"]),
            _threshold("country.freedom_house.status", "==", "Not Free"),
        ),
        (
            Duration.model_validate(
                {"metric": "norms.status", "value": "non_compliant", "for_at_least": {"years": 2}}
            ),
            _threshold("norms.status", "in", ["watchlist", "non_compliant"]),
            Duration.model_validate(
                {"metric": "norms.status", "value": "non_compliant", "for_at_least": {"days": 731}}
            ),
        ),
        (
            AnyOf.model_validate(
                {
                    "any": [
                        {"metric": "revenue_pct.tobacco", "op": ">", "value": 50},
                        {"metric": "revenue_pct.arctic_oil_gas", "op": ">", "value": 5},
                    ]
                }
            ),
            AnyOf.model_validate(
                {
                    "any": [
                        {"metric": "revenue_pct.arctic_oil_gas", "op": ">", "value": 1},
                        {"metric": "revenue_pct.tobacco", "op": ">", "value": 10},
                        {"metric": "controversial_weapons.involved", "op": "==", "value": True},
                    ]
                }
            ),
            _threshold("revenue_pct.tobacco", ">", 0),
        ),
        (
            AllOf.model_validate(
                {
                    "all": [
                        {"metric": "country.freedom_house.status", "op": "==", "value": "Not Free"},
                        {"metric": "country.freedom_house.pr_cl_average", "op": ">", "value": 6},
                    ]
                }
            ),
            _threshold("country.freedom_house.status", "==", "Not Free"),
            AllOf.model_validate(
                {
                    "all": [
                        {"metric": "country.freedom_house.status", "op": "==", "value": "Not Free"},
                        {"metric": "country.cpi.score", "op": "<", "value": 30},
                    ]
                }
            ),
        ),
        (
            _threshold("revenue_pct.tobacco", ">", 50, providers=["iss"]),
            _threshold("revenue_pct.tobacco", ">", 40, providers=["iss"], max_age_days=200),
            _threshold("revenue_pct.tobacco", ">", 40, providers=["iss", "msci"]),
        ),
    ],
)
def test_strictness_is_proved_or_refused(base: Any, tighter: Any, looser: Any) -> None:
    assert condition_problem(base, CTX, base, CTX) is None
    assert condition_problem(base, CTX, tighter, CTX) is None
    assert condition_problem(base, CTX, looser, CTX) is not None


def test_effective_document_inherits_tightens_and_adds() -> None:
    base = parse_document(HOUSE)
    mandate = parse_document(
        overlay(
            data={"max_age_days": 200},
            rules=[
                house_rule("tobacco", when_update={"value": 5}),
                {
                    "id": "coal",
                    "title": "coal",
                    "source": "mandate",
                    "when": {"metric": "revenue_pct.thermal_coal_power", "op": ">", "value": 0},
                    "outcome": "exclude",
                },
            ],
            exceptions=[house_exception(max_duration_days=180)],
            position_limits=[
                {
                    "id": "sponsor",
                    "title": "t",
                    "source": "s",
                    "group": "sponsor",
                    "max_portfolio_pct": 2,
                }
            ],
        )
    )
    result = merge_overlay(base, mandate)
    assert result.problems == ()
    merged = result.document
    assert merged.key == "mandate"
    assert merged.extends == "house"
    assert [r.id for r in merged.rules] == [*(r.id for r in base.rules), "coal"]
    tobacco = merged.rule("tobacco")
    assert tobacco is not None
    assert isinstance(tobacco.when, Threshold)
    assert tobacco.when.value == 5
    assert merged.data.max_age_days == 200
    assert merged.data.providers == base.data.providers  # inherited
    assert merged.propagation == base.propagation
    assert merged.exceptions[0].max_duration_days == 180
    assert merged.position_limits[0].max_portfolio_pct == 2
    assert effective_document(base, mandate) == merged


def test_effective_document_is_never_looser_than_the_base() -> None:
    base = parse_document(HOUSE)
    loose = parse_document(
        overlay(
            unknown="allow",
            data={"max_age_days": 900},
            propagation={"subsidiary_to_parent": None, "underlying": False},
            rules=[house_rule("tobacco", when_update={"value": 90}, outcome="watch")],
            lists={"exclusion": "ignore"},
            exceptions=[house_exception(lifts=["defence", "tobacco"])],
        )
    )
    result = merge_overlay(base, loose)
    assert len(result.problems) >= 7
    merged = result.document
    assert merged.unknown == "block"
    assert merged.data.max_age_days == 400
    assert merged.propagation == base.propagation
    assert merged.rule("tobacco") == base.rule("tobacco")
    assert merged.lists.exclusion == "exclude"
    assert merged.exceptions == base.exceptions
