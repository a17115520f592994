"""The policy document: what a policy says, validated; no I/O, no database.

A policy is a declarative document (YAML or JSON) of rules over the canonical metric vocabulary
(``app.kit.vocabulary``). Nothing in it is executed. This module is the one definition of the
document for the API, the CLI and the rule engine, and it states the semantics the engine must
implement (the docstrings below are also the descriptions in ``openapi/policy.schema.json``).

Semantics, in short (the README's "Policies" section has the long form):

* A **rule** fires for an issuer when its ``when`` condition is true for that issuer and the
  issuer and instrument are within ``applies_to``. Its ``outcome`` (``exclude`` or ``watch``)
  becomes the verdict; the strictest outcome wins (excluded > unknown > watch > allowed).
* **Conditions** use three-valued logic: a threshold on missing or stale data (older than
  ``max_age_days``, provider as-of vs. check time) is *unknown*; ``any`` is true if one member is
  true, false if all are false, else unknown; ``all`` is false if one member is false, true if all
  are true, else unknown. An ``exclude`` rule whose condition is unknown makes the verdict
  ``unknown``; the policy's ``unknown`` setting says whether that may be held (default: block).
  An undecidable ``watch`` rule is reported but does not change the verdict.
* **Lists and exceptions** act through the policy owner's list entries (``ListActions``,
  ``PolicyException``); exception conditions that are unknown do not hold.
* **Overlays** (``extends``) inherit every base rule and may only add or tighten;
  ``effective_document(base, overlay)`` (with the base version in force at the same time) is
  the document the engine evaluates. An overlay's own list entries (inclusion, exception) must
  not lift what the base alone excludes: the engine takes the stricter of the base's verdict
  and the overlay's.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, NoReturn

import pycountry
from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    NonNegativeInt,
    PositiveInt,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.kit.errors import FieldError
from app.kit.identifiers import InvalidIdentifier, normalize_isin
from app.kit.schemas import Schema
from app.kit.vocabulary import (
    COMPARISONS,
    METRICS,
    PROVIDERS,
    AssetClass,
    FactValue,
    InvalidValue,
    IssuerKind,
    Metric,
    PercentBand,
    ValueType,
    ordinal_rank,
    parse_value,
)

KEY_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


def _fail(reason: str) -> NoReturn:
    # The message travels in the context: user input may contain braces.
    raise PydanticCustomError("policy", "{reason}", {"reason": reason})


def _known_metric(name: str) -> str:
    if name not in METRICS:
        _fail(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return name


def _known_provider(name: str) -> str:
    if name not in PROVIDERS:
        _fail(f"unknown provider {name!r}; known providers: {', '.join(sorted(PROVIDERS))}")
    return name


def _country_code(code: str) -> str:
    if len(code) != 2 or not code.isupper() or pycountry.countries.get(alpha_2=code) is None:
        _fail(f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. NL, DK)")
    return code


def _unique(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            _fail(f"{item!s} is listed twice")
        seen.add(item)
    return items


PolicyKey = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=KEY_PATTERN, examples=["rpf", "dk-pension"]),
]
ItemId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=KEY_PATTERN,
        description="Stable identifier: lower-case letters, digits and dashes.",
    ),
]
Title = Annotated[str, Field(min_length=1, max_length=300)]
Text = Annotated[str, Field(min_length=1, max_length=4000)]
MetricName = Annotated[
    str,
    AfterValidator(_known_metric),
    WithJsonSchema({"type": "string", "enum": sorted(METRICS)}),
]
ProviderName = Annotated[
    str,
    AfterValidator(_known_provider),
    WithJsonSchema({"type": "string", "enum": sorted(PROVIDERS)}),
]
ProviderList = Annotated[list[ProviderName], Field(min_length=1), AfterValidator(_unique)]
CountryCode = Annotated[str, AfterValidator(_country_code)]
Percent = Annotated[float, Field(gt=0, le=100)]

Op = Literal[">", ">=", "<", "<=", "==", "!=", "in", "intersects"]
LIST_OPS = frozenset({"in", "intersects"})

_SCALAR_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "boolean"}, {"type": "number"}, {"type": "string"}]
}
_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [*_SCALAR_SCHEMA["anyOf"], {"type": "array", "items": _SCALAR_SCHEMA, "minItems": 1}]
}
Scalar = Annotated[Any, WithJsonSchema(_SCALAR_SCHEMA)]
ThresholdValue = Annotated[Any, WithJsonSchema(_VALUE_SCHEMA)]


class Outcome(StrEnum):
    exclude = "exclude"
    watch = "watch"


OUTCOME_RANK = {Outcome.watch: 1, Outcome.exclude: 2}


class UnknownPolicy(StrEnum):
    block = "block"
    allow = "allow"


PercentBands = Literal["unknown", "lower", "upper"]


class ListAction(StrEnum):
    exclude = "exclude"
    watch = "watch"
    readmit = "readmit"
    ignore = "ignore"


# Strictness of a list action, for overlays: an overlay may only move a list up this order.
LIST_ACTION_RANK = {
    ListAction.readmit: 0,
    ListAction.ignore: 1,
    ListAction.watch: 2,
    ListAction.exclude: 3,
}


class Review(StrEnum):
    continuous = "continuous"
    monthly = "monthly"
    quarterly = "quarterly"
    semiannual = "semiannual"
    annual = "annual"


# ---------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------


def _raw_text(metric: Metric, raw: Any) -> str:
    """The text of one threshold value, type-checked against its metric's value type."""
    if isinstance(raw, bool):
        if metric.type is not ValueType.boolean:
            _fail(f"{metric.name} is {metric.type.value}; true/false is not a value of it")
        return "true" if raw else "false"
    if metric.type is ValueType.boolean:
        _fail(f"{metric.name} is boolean: use true or false")
    if isinstance(raw, int | float):
        if metric.type in (ValueType.date, ValueType.authorities):
            _fail(f"{metric.name} is {metric.type.value}; {raw!r} is not a value of it")
        return str(raw)
    if isinstance(raw, str):
        if metric.type in (ValueType.percent, ValueType.score):
            _fail(f"{metric.name} is a number: write {raw!r} as a number, not a string")
        return raw
    _fail(f"{raw!r} is not a value (a number, a string or true/false)")


def parse_threshold(metric: Metric, raw: Any) -> FactValue:
    """Parse one threshold value for ``metric``; raises a validation error saying why not."""
    try:
        value = parse_value(metric, _raw_text(metric, raw))
    except InvalidValue as exc:
        _fail(str(exc))
    if isinstance(value, PercentBand):
        _fail(f"a threshold is a number, not a band ({raw!r})")
    if metric.type is ValueType.authorities and isinstance(value, frozenset) and len(value) != 1:
        _fail("list authorities one per item, e.g. [UN, EU, US]")
    return value


def _check_value(metric: Metric, op: str, value: Any) -> None:
    if op in LIST_OPS:
        if not isinstance(value, list) or not value:
            _fail(f"'{op}' takes a non-empty list of values")
        parsed = [parse_threshold(metric, item) for item in value]
        if len(set(parsed)) != len(parsed):
            _fail("a value is listed twice")
    else:
        if isinstance(value, list):
            _fail(f"'{op}' takes one value; use 'in' for a list")
        parse_threshold(metric, value)


class Threshold(Schema):
    """A comparison of one metric of the issuer (or of its country) with a fixed value.

    ``country.*`` metrics are looked up for the issuer's country: the country a sovereign
    governs, a company's domicile. ``in`` and ``intersects`` take a list: ``in`` is true when the
    issuer's value is one of the list; ``intersects`` (authorities, e.g. arms embargoes) when the
    issuer's set shares an element with the list. Ordinal metrics compare by rank (ITUC: 5+ is
    above 5). Data comes from ``providers`` in order of preference (first with data wins; default:
    the policy's ``data.providers`` for the metric, else any provider, newest as-of first) and is
    missing when older than ``max_age_days`` (default: ``data.max_age_days``).
    """

    metric: MetricName
    op: Op
    value: ThresholdValue
    providers: ProviderList | None = None
    max_age_days: PositiveInt | None = None

    @field_validator("op")
    @classmethod
    def _op_fits_metric(cls, op: str, info: ValidationInfo) -> str:
        metric = METRICS.get(info.data.get("metric", ""))
        if metric is not None and op not in COMPARISONS[metric.type]:
            allowed = ", ".join(sorted(COMPARISONS[metric.type]))
            _fail(
                f"'{op}' is not a comparison for {metric.name} ({metric.type.value}); use {allowed}"
            )
        return op

    @field_validator("value")
    @classmethod
    def _value_fits_metric(cls, value: Any, info: ValidationInfo) -> Any:
        metric = METRICS.get(info.data.get("metric", ""))
        op = info.data.get("op")
        if metric is not None and op in COMPARISONS[metric.type]:
            _check_value(metric, op, value)
        return value

    @property
    def metric_def(self) -> Metric:
        return METRICS[self.metric]

    def threshold(self) -> FactValue | frozenset[FactValue]:
        """The parsed value to compare with (a frozenset for ``in`` and ``intersects``)."""
        if self.op in LIST_OPS:
            parsed = frozenset(parse_threshold(self.metric_def, v) for v in self.value)
            if self.metric_def.type is ValueType.authorities:
                return frozenset(a for s in parsed if isinstance(s, frozenset) for a in s)
            return parsed
        return parse_threshold(self.metric_def, self.value)


class DurationSpec(Schema):
    """A calendar duration (years and months are calendar units; 29 Feb clamps to 28 Feb)."""

    years: NonNegativeInt = 0
    months: NonNegativeInt = 0
    days: NonNegativeInt = 0

    @model_validator(mode="after")
    def _not_zero(self) -> DurationSpec:
        if not (self.years or self.months or self.days):
            _fail("a duration needs years, months or days")
        return self

    @property
    def total_months(self) -> int:
        return self.years * 12 + self.months

    def before(self, day: dt.date) -> dt.date:
        """``day`` minus this duration: the latest start that counts as lasting long enough."""
        months = day.year * 12 + (day.month - 1) - self.total_months
        year, month = divmod(months, 12)
        last = calendar.monthrange(year, month + 1)[1]
        return dt.date(year, month + 1, min(day.day, last)) - dt.timedelta(days=self.days)

    def min_days(self) -> int:
        return self.years * 365 + self.months * 28 + self.days

    def max_days(self) -> int:
        return self.years * 366 + self.months * 31 + self.days

    def text(self) -> str:
        parts = [(self.years, "year"), (self.months, "month"), (self.days, "day")]
        return " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n)


class Duration(Schema):
    """True when the metric has had ``value`` for at least ``for_at_least`` at check time.

    The start of the run is read from ``since_metric`` when given (e.g.
    ``norms.non_compliant_since``), else derived from the fact history (the as-of of the earliest
    consecutive fact with this value). The current value must still equal ``value``.

    When neither shows when the run began (no ``since_metric`` fact, and the provider's earliest
    fact already has the value), the run may be older than its first observation: the condition
    is true once the first observation is ``for_at_least`` old, and until then *unknown* (we
    cannot know the run is shorter), unless ``start_unobserved: first_observation`` says to count
    from the first observation (domain.md: never a silent yes).
    """

    metric: MetricName
    value: Scalar
    for_at_least: DurationSpec
    since_metric: MetricName | None = None
    providers: ProviderList | None = None
    max_age_days: PositiveInt | None = None
    start_unobserved: Literal["unknown", "first_observation"] = Field(
        default="unknown",
        description=(
            "When no since date and no earlier, different value shows when the run began: "
            "unknown (default) or count from the first observation."
        ),
    )

    @field_validator("value")
    @classmethod
    def _value_fits_metric(cls, value: Any, info: ValidationInfo) -> Any:
        metric = METRICS.get(info.data.get("metric", ""))
        if metric is None:
            return value
        if metric.type not in (ValueType.boolean, ValueType.choice, ValueType.ordinal):
            _fail(f"a duration needs a metric with labels; {metric.name} is {metric.type.value}")
        _check_value(metric, "==", value)
        return value

    @field_validator("since_metric")
    @classmethod
    def _since_is_a_date(cls, name: str | None) -> str | None:
        if name is not None and METRICS[name].type is not ValueType.date:
            _fail(f"since_metric must be a date metric; {name} is {METRICS[name].type.value}")
        return name

    @property
    def metric_def(self) -> Metric:
        return METRICS[self.metric]

    def threshold(self) -> FactValue:
        return parse_threshold(self.metric_def, self.value)


class AnyOf(Schema):
    """True when any member is true (false when all are false; otherwise unknown)."""

    any: list[Condition] = Field(min_length=1)


class AllOf(Schema):
    """True when every member is true (false when any is false; otherwise unknown)."""

    all: list[Condition] = Field(min_length=1)


_TAGS = {"Threshold": Threshold, "AnyOf": AnyOf, "AllOf": AllOf, "Duration": Duration}


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "any" in value:
            return "AnyOf"
        if "all" in value:
            return "AllOf"
        if "for_at_least" in value:
            return "Duration"
        return "Threshold"
    for tag, model in _TAGS.items():
        if isinstance(value, model):
            return tag
    return None


Condition = Annotated[
    Annotated[Threshold, Tag("Threshold")]
    | Annotated[AnyOf, Tag("AnyOf")]
    | Annotated[AllOf, Tag("AllOf")]
    | Annotated[Duration, Tag("Duration")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message=(
            "a condition is {metric, op, value}, {any: [...]}, {all: [...]} "
            "or {metric, value, for_at_least}"
        ),
    ),
]
Atom = Threshold | Duration

# ---------------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------------


class AppliesTo(Schema):
    """Which instruments and issuers a rule is evaluated for (default: all)."""

    asset_classes: Annotated[list[AssetClass], AfterValidator(_unique)] = Field(
        default_factory=lambda: list(AssetClass),
        min_length=1,
        description="Asset class of the instrument checked.",
    )
    issuer_kinds: Annotated[list[IssuerKind], AfterValidator(_unique)] = Field(
        default_factory=lambda: list(IssuerKind), min_length=1
    )


class Rule(Schema):
    """One rule: when ``when`` holds for an issuer within ``applies_to``, the outcome applies.

    ``propagate: false`` keeps this rule's hits from travelling along the issuer chains the
    policy enables (subsidiary to parent, state owner to company); the instrument-to-underlying
    link is governed by ``propagation.underlying`` alone.
    """

    id: ItemId
    title: Title
    source: Text = Field(description="The document and section this rule implements.")
    note: Text | None = Field(default=None, description="How the source text was read.")
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    when: Condition
    outcome: Outcome
    propagate: bool = True
    review: Review | None = Field(default=None, description="Informational: review cycle.")


DataSubject = Literal["issuer", "country"]  # app.kit.vocabulary.Subject's values


class DataSettings(Schema):
    """Which data the rules read."""

    max_age_days: PositiveInt = Field(
        default=400,
        description="Data whose provider as-of is older than this at check time counts as missing.",
    )
    max_age_days_by_subject: dict[DataSubject, PositiveInt] = Field(
        default_factory=dict,
        description=(
            "max_age_days for one kind of data: issuer (vendor data about a company or any "
            "issuer) or country (country indices, sanctions). A rule's own max_age_days wins; "
            "then this; then max_age_days."
        ),
    )
    providers: dict[MetricName, ProviderList] = Field(
        default_factory=dict,
        description="Provider preference per metric; the first provider with data wins.",
    )
    percent_bands: PercentBands = Field(
        default="unknown",
        description=(
            "A vendor band (e.g. 5-9.9) straddling a threshold: unknown, or compare with the "
            "band's lower or upper end. A band wholly on one side decides normally."
        ),
    )


class ControlThreshold(Schema):
    op: Literal[">", ">="]
    control_pct: Percent


class StateOwnership(Schema):
    op: Literal[">", ">="]
    pct: Percent


class Propagation(Schema):
    """How verdicts travel between issuers and instruments (null = off).

    ``subsidiary_to_parent``: a parent that controls (control % op threshold) a subsidiary is
    hit by the subsidiary's hits as the subsidiary is finally judged (rule hits and exclusion or
    watch list entries, after its inclusions and exceptions; relation ``subsidiary``).
    ``state_owner``: a company is excluded when a country whose sovereign this policy excludes
    (by a rule or an exclusion list entry) holds op pct of it, and unknown when the policy
    cannot decide whether it excludes that country (its data missing or stale) (relation
    ``state_owner``; only exclusions travel this way). A link without its percentage is not
    established: what would travel over it is undecided (an exclusion: unknown). The reason
    shows the percentage and the threshold it met as evidence. ``underlying``: a derivative,
    depositary receipt or fund also takes the verdict of its underlying (relation
    ``underlying``); the strictest of the two wins.
    """

    subsidiary_to_parent: ControlThreshold | None = None
    state_owner: StateOwnership | None = None
    underlying: bool = True


class LookThrough(Schema):
    """How a fund is judged from what it holds (seed 003: investments "direct and indirect,
    through funds"). Applies to every instrument whose ISIN has a composition (a
    ``fund-holdings`` load) and to an index derivative through its index's composition; an
    instrument of asset class ``fund`` without a composition is ``unknown`` (data missing).

    The composition in force on the day asked (newest as_of on or before it) is judged
    constituent by constituent under the same policy: an ISIN as an instrument, an issuer
    reference as an issuer (every rule counts, as on the issuer-level list); a fund held by the
    fund is looked through in turn, up to ``max_depth`` funds deep (deeper, or a fund already
    on the path, a cycle: that constituent is undecidable). Then, comparisons strictly above:

    * ``excluded`` when the fund's weight in excluded constituents is above
      ``exclude_above_pct`` (0, the default: any excluded constituent of positive weight);
    * else ``watch`` when its weight in excluded or watch constituents is above
      ``watch_above_pct`` (0: any);
    * ``unknown`` when less than ``min_coverage_pct`` of the fund's weight is judged
      (constituents not known or undecidable, and weight the composition does not state, are
      not covered), or when the composition is older than ``max_age_days``.

    Each firing constituent's reasons travel to the fund (relation ``holding``) with its weight
    as evidence (metric ``fund_weight_pct``). The fund's own issuer (its manager) is screened
    as before. Exactly at a threshold does not fire.
    """

    exclude_above_pct: float = Field(default=0, ge=0, le=100)
    watch_above_pct: float = Field(default=0, ge=0, le=100)
    min_coverage_pct: float = Field(default=100, ge=0, le=100)
    max_age_days: PositiveInt = Field(
        default=120,
        description="A composition older than this is stale: the fund is unknown (default: a "
        "quarter's reporting plus a month).",
    )
    max_depth: PositiveInt = Field(default=3, le=16, description="Funds of funds: how deep.")


class ListActions(Schema):
    """What an entry on each of the policy owner's lists does to an issuer.

    ``exclude``/``watch`` set that verdict (the strictest of all applicable wins: a dialogue
    entry never lifts an exclusion). ``readmit`` (inclusion), from its ``decided_on`` until it
    expires, lifts only the hits it was decided for: hits of the rules the entry names (its
    ``rules``: those and no other), else hits already established when it was decided (the
    rule's condition held on the data dated on or before its ``decided_on`` and loaded no later
    than the entry, judged on that day), and exclusion entries decided no later. A later hit
    (new evidence) and missing or stale data (unknown) are never lifted. ``ignore`` disregards
    the list.
    """

    exclusion: ListAction = ListAction.exclude
    focus: ListAction = ListAction.watch
    dialogue: ListAction = ListAction.watch
    watch: ListAction = ListAction.watch
    inclusion: ListAction = ListAction.readmit


class ExceptionConditions(Schema):
    """When a declared exception can apply to an issuer (all must hold)."""

    issuer_countries: Annotated[list[CountryCode], AfterValidator(_unique)] | None = Field(
        default=None, description="The issuer's country must be one of these (null: any)."
    )
    issuer_kinds: Annotated[list[IssuerKind], AfterValidator(_unique)] | None = None
    not_hit_by: Annotated[list[ItemId], AfterValidator(_unique)] = Field(
        default_factory=list,
        description="The exception is void while any of these rules fires for the issuer.",
    )
    void_when: Condition | None = Field(
        default=None, description="The exception is void while this is true or unknown."
    )


RequiredField = Literal["reference", "expires_on", "review_on"]


def _default_requires() -> list[RequiredField]:
    return ["reference", "expires_on"]


ExceptionScope = Literal["own_account", "client_accounts", "all"]


class PolicyException(Schema):
    """An exception the policy allows, taking effect only through an ``exception`` list entry.

    The entry (policy owner's decision for one issuer) must carry every field in ``requires``,
    last at most ``max_duration_days`` (decided_on to expires_on) and is void after expiry. It
    lifts the hits of the rules in ``lifts`` for that issuer while ``conditions`` hold; unknown
    conditions do not hold. When the entry's ``reason`` starts with an exception id, only that
    exception applies; otherwise every declared exception whose conditions hold.
    """

    id: ItemId
    title: Title
    source: Text
    note: Text | None = None
    lifts: Annotated[list[ItemId], AfterValidator(_unique)]
    conditions: ExceptionConditions = Field(default_factory=ExceptionConditions)
    requires: Annotated[list[RequiredField], AfterValidator(_unique)] = Field(
        default_factory=_default_requires
    )
    max_duration_days: PositiveInt | None = None
    scope: ExceptionScope = Field(
        default="all",
        description=(
            "Whose money the exception may be used for: own_account lifts hits only in a check "
            "for an own-account portfolio (seed 001); a check without a portfolio is judged as "
            "client money, so there it lifts nothing. client_accounts: client money only."
        ),
    )


class PositionLimit(Schema):
    """A limit on holdings (seed 002): the market value of the limit's issuers' long positions
    over the portfolio's total market value, at most ``max_portfolio_pct`` (exactly at the limit
    is allowed). ``sponsor``: the issuers on the policy's ``sponsor`` list; ``sponsor_group``:
    every issuer under a sponsor's ultimate parent, the sponsor included; one aggregate limit over
    all of them. Evaluated in every check in a portfolio: an order that takes the share above
    the limit (and higher than before) is excluded; the post-trade run reports each limit's
    share. Without the portfolio's holdings, a sponsor or a market value it is unknown."""

    id: ItemId
    title: Title
    source: Text
    note: Text | None = None
    group: Literal["sponsor", "sponsor_group"]
    max_portfolio_pct: Percent
    status: Literal["declared", "evaluated"] | None = Field(
        default=None,
        description="Accepted for documents written earlier; the value is ignored: limits are "
        "evaluated in every check in a portfolio.",
    )


def _isin(value: str) -> str:
    try:
        return normalize_isin(value)
    except InvalidIdentifier as exc:
        _fail(str(exc))


Isin = Annotated[
    str,
    AfterValidator(_isin),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}[A-Za-z0-9]{9}[0-9]$"}),
]


class Principle(Schema):
    """A principle the policy states (a prudent-person rule, a permitted-funds list, ...):
    recorded with the approved, hashed version, not evaluated. ``checkable`` says whether a check
    could serve it and ``how`` how (or why it cannot: a judgement on the whole portfolio or the
    liabilities, or data the service does not hold); ``instruments`` lists the ISINs it names."""

    id: ItemId
    title: Title
    source: Text
    checkable: bool
    how: Text
    instruments: Annotated[list[Isin], AfterValidator(_unique)] = Field(default_factory=list)


class PolicyDocument(Schema):
    """A responsible-investment policy: rules over the metric vocabulary, lists, exceptions."""

    key: PolicyKey = Field(description="Must equal the key in the URL.")
    title: Title
    extends: PolicyKey | None = Field(
        default=None,
        description="Key of the base policy this one overlays: it inherits every base rule and "
        "may only add or tighten.",
    )
    source: Text | None = None
    note: Text | None = None
    unknown: UnknownPolicy = Field(
        default=UnknownPolicy.block,
        description="May an instrument whose verdict is unknown be held? (default: block)",
    )
    data: DataSettings = Field(default_factory=DataSettings)
    propagation: Propagation = Field(default_factory=Propagation)
    look_through: LookThrough = Field(default_factory=LookThrough)
    rules: list[Rule] = Field(default_factory=list)
    lists: ListActions = Field(default_factory=ListActions)
    exceptions: list[PolicyException] = Field(default_factory=list)
    position_limits: list[PositionLimit] = Field(default_factory=list)
    principles: list[Principle] = Field(
        default_factory=list,
        description="Principles the policy states that are recorded, not evaluated (each says "
        "whether and how a check could serve it). An overlay inherits the base's and adds its "
        "own.",
    )

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


AnyOf.model_rebuild()
AllOf.model_rebuild()
ExceptionConditions.model_rebuild()
Rule.model_rebuild()
PolicyException.model_rebuild()
PolicyDocument.model_rebuild()


# ---------------------------------------------------------------------------------------------
# Parsing, canonical form, JSON Schema
# ---------------------------------------------------------------------------------------------


class PolicyDocumentInvalid(ValueError):
    """Every problem found, each with its location in the document."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the policy document")
        self.errors = tuple(errors)


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field: remove it, or check its spelling against the policy schema"
    return str(error["msg"])


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    # Condition variants are tagged by shape; the tag is no part of the document path.
    return [
        FieldError(
            loc=tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _TAGS)),
            msg=_message(err),
        )
        for err in exc.errors(include_url=False)
    ]


def _items(raw: Mapping[str, Any], field: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = raw.get(field)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, Mapping)]


def _duplicate_ids(raw: Mapping[str, Any], field: str) -> Iterator[FieldError]:
    seen: dict[str, int] = {}
    for i, item in _items(raw, field):
        item_id = item.get("id")
        if not isinstance(item_id, str):
            continue
        if item_id in seen:
            yield FieldError(
                (field, i, "id"),
                f"duplicate id {item_id!r}: {field}[{seen[item_id]}] has it too; ids are unique",
            )
        else:
            seen[item_id] = i


def _reference_errors(raw: Mapping[str, Any], rule_ids: set[str]) -> Iterator[FieldError]:
    """Exceptions must name rules that exist, and may not both lift and be voided by one."""
    for i, item in _items(raw, "exceptions"):
        exception_id = item.get("id")
        raw_lifts = item.get("lifts")
        lifts: list[Any] = raw_lifts if isinstance(raw_lifts, list) else []
        conditions = item.get("conditions")
        raw_not_hit_by = conditions.get("not_hit_by") if isinstance(conditions, Mapping) else None
        not_hit_by: list[Any] = raw_not_hit_by if isinstance(raw_not_hit_by, list) else []
        for j, rule_id in enumerate(lifts):
            if isinstance(rule_id, str) and rule_id not in rule_ids:
                yield FieldError(
                    ("exceptions", i, "lifts", j),
                    f"exception {exception_id!r} lifts rule {rule_id!r}, which the policy does "
                    "not have",
                )
        for j, rule_id in enumerate(not_hit_by):
            if not isinstance(rule_id, str):
                continue
            if rule_id not in rule_ids:
                yield FieldError(
                    ("exceptions", i, "conditions", "not_hit_by", j),
                    f"exception {exception_id!r} names rule {rule_id!r}, which the policy does "
                    "not have",
                )
            elif rule_id in lifts:
                yield FieldError(
                    ("exceptions", i, "conditions", "not_hit_by", j),
                    f"exception {exception_id!r} both lifts rule {rule_id!r} and is void when it "
                    "fires: it could never apply",
                )


def _rule_ids(raw: Mapping[str, Any]) -> set[str]:
    return {item["id"] for _, item in _items(raw, "rules") if isinstance(item.get("id"), str)}


def parse_document(data: Any) -> PolicyDocument:
    """Validate a document (parsed JSON/YAML); ``PolicyDocumentInvalid`` lists every problem.

    Checks the structure and every metric, comparison, value, provider and country against the
    vocabulary, unique ids, and (for a policy that extends none) that exceptions name existing
    rules. An overlay's references and strictness need its base: see ``overlay_problems``.
    """
    if not isinstance(data, Mapping):
        raise PolicyDocumentInvalid(
            [FieldError((), "a policy document is a mapping with key, title, rules, ...")]
        )
    errors: list[FieldError] = []
    document: PolicyDocument | None = None
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc))
    for field in ("rules", "exceptions", "position_limits", "principles"):
        errors.extend(_duplicate_ids(data, field))
    if data.get("extends") is None:
        errors.extend(_reference_errors(data, _rule_ids(data)))
    if errors or document is None:
        raise PolicyDocumentInvalid(errors)
    return document


def canonical_json(document: PolicyDocument) -> bytes:
    """The hashed form: the validated document as written (fields given, defaults not added),
    JSON with sorted keys, compact separators, UTF-8."""
    return json.dumps(
        document_data(document),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def document_data(document: PolicyDocument) -> dict[str, Any]:
    """The document as stored and served: only the fields its author gave."""
    return document.model_dump(mode="json", exclude_unset=True)


def document_sha256(document: PolicyDocument) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


def policy_json_schema() -> dict[str, Any]:
    schema = PolicyDocument.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:mayhold:schema:policy-document",
        **schema,
    }


# ---------------------------------------------------------------------------------------------
# Describing conditions (messages, diffs)
# ---------------------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(condition: Threshold | Duration | AnyOf | AllOf) -> str:
    """A one-line human reading of a condition."""
    if isinstance(condition, Threshold):
        return f"{condition.metric} {condition.op} {_value_text(condition.value)}"
    if isinstance(condition, Duration):
        return (
            f"{condition.metric} == {_value_text(condition.value)} for at least "
            f"{condition.for_at_least.text()}"
        )
    if isinstance(condition, AnyOf):
        return "any of (" + "; ".join(describe(c) for c in condition.any) + ")"
    return "all of (" + "; ".join(describe(c) for c in condition.all) + ")"


# ---------------------------------------------------------------------------------------------
# Strictness: does one condition catch everything another catches?
# ---------------------------------------------------------------------------------------------


def _by_subject(ages: Mapping[DataSubject, int]) -> dict[str, int]:
    return {str(subject): days for subject, days in ages.items()}


@dataclass(frozen=True)
class DataContext:
    """The data settings a condition is evaluated under (after overlay merging)."""

    providers: Mapping[str, tuple[str, ...]]
    max_age_days: int
    unknown_blocks: bool
    max_age_by_subject: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, document: PolicyDocument) -> DataContext:
        return cls(
            providers={m: tuple(p) for m, p in document.data.providers.items()},
            max_age_days=document.data.max_age_days,
            unknown_blocks=document.unknown is UnknownPolicy.block,
            max_age_by_subject={
                str(k): v for k, v in document.data.max_age_days_by_subject.items()
            },
        )

    def providers_for(self, atom: Atom) -> tuple[str, ...] | None:
        if atom.providers is not None:
            return tuple(atom.providers)
        return self.providers.get(atom.metric)

    def max_age_for(self, atom: Atom) -> int:
        """Days: the atom's own limit, else its kind of data's, else the policy's."""
        if atom.max_age_days is not None:
            return atom.max_age_days
        return self.max_age_by_subject.get(atom.metric_def.subject.value, self.max_age_days)


@dataclass(frozen=True)
class _Interval:
    low: Decimal | dt.date | None
    low_closed: bool
    high: Decimal | dt.date | None
    high_closed: bool

    def within(self, other: _Interval) -> bool:
        def low_ok() -> bool:
            if other.low is None:
                return True
            if self.low is None:
                return False
            if self.low != other.low:
                return bool(self.low > other.low)  # type: ignore[operator]
            return other.low_closed or not self.low_closed

        def high_ok() -> bool:
            if other.high is None:
                return True
            if self.high is None:
                return False
            if self.high != other.high:
                return bool(self.high < other.high)  # type: ignore[operator]
            return other.high_closed or not self.high_closed

        return low_ok() and high_ok()


def _interval(op: str, value: Decimal | dt.date) -> _Interval:
    return {
        ">": _Interval(value, False, None, False),
        ">=": _Interval(value, True, None, False),
        "<": _Interval(None, False, value, False),
        "<=": _Interval(None, False, value, True),
        "==": _Interval(value, True, value, True),
    }[op]


def _labels(metric: Metric) -> tuple[Any, ...]:
    return (True, False) if metric.type is ValueType.boolean else metric.choices


_ORDER: dict[str, Callable[[int, int], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _label_set(atom: Threshold) -> frozenset[Any]:
    """The labels (or booleans) for which a threshold on a labelled metric is true."""
    metric = atom.metric_def
    labels = _labels(metric)
    threshold = atom.threshold()
    if atom.op == "in":
        assert isinstance(threshold, frozenset)
        return threshold
    if atom.op == "==":
        return frozenset({threshold})
    if atom.op == "!=":
        return frozenset(label for label in labels if label != threshold)
    assert isinstance(threshold, str)
    rank = ordinal_rank(metric, threshold)
    compare = _ORDER[atom.op]
    return frozenset(label for label in labels if compare(ordinal_rank(metric, label), rank))


def _sources_problem(a: Atom, a_ctx: DataContext, b: Atom, b_ctx: DataContext) -> str | None:
    """Why ``b`` does not read the same data as ``a`` at least as strictly (None: it does)."""
    a_providers, b_providers = a_ctx.providers_for(a), b_ctx.providers_for(b)
    if a_providers != b_providers:
        shown = ", ".join(a_providers) if a_providers else "any provider"
        return f"uses other providers than the base ({shown})"
    a_age, b_age = a_ctx.max_age_for(a), b_ctx.max_age_for(b)
    if b_age > a_age:
        return f"accepts older data (max_age_days {b_age} > {a_age})"
    if b_age < a_age and not b_ctx.unknown_blocks:
        return f"shortens max_age_days ({b_age} < {a_age}) while unknown is allowed"
    return None


def _atom_problem(a: Atom, a_ctx: DataContext, b: Atom, b_ctx: DataContext) -> str | None:
    """Why atom ``b`` may fail to fire where atom ``a`` fires (None: it never does)."""
    if a.metric != b.metric:
        return (
            f"tests {b.metric} instead of {a.metric} (a base rule can be tightened, never "
            "dropped or replaced)"
        )
    sources = _sources_problem(a, a_ctx, b, b_ctx)
    if sources:
        return sources
    metric = a.metric_def
    if isinstance(a, Duration):
        if isinstance(b, Duration):
            if a.threshold() != b.threshold() or a.since_metric != b.since_metric:
                return f"tests for {_value_text(b.value)} instead of {_value_text(a.value)}"
            if a.start_unobserved == "unknown" and b.start_unobserved != "unknown":
                return (
                    "counts an unobserved start from the first observation, where the base "
                    "treats it as unknown"
                )
            shorter_or_equal = (
                b.for_at_least.total_months <= a.for_at_least.total_months
                and b.for_at_least.days <= a.for_at_least.days
            ) or b.for_at_least.max_days() <= a.for_at_least.min_days()
            if not shorter_or_equal:
                return f"waits longer ({b.for_at_least.text()} instead of {a.for_at_least.text()})"
            return None
        if a.threshold() in _label_set(b):
            return None
        return f"{describe(b)} does not hold for {_value_text(a.value)}"
    if isinstance(b, Duration):
        return "adds a minimum duration the base does not have"
    if metric.type in (ValueType.boolean, ValueType.choice, ValueType.ordinal):
        missing = _label_set(a) - _label_set(b)
        if missing:
            shown = ", ".join(_value_text(v) for v in sorted(missing, key=str))
            return f"no longer catches {shown}"
        return None
    if metric.type is ValueType.authorities:
        a_set, b_set = a.threshold(), b.threshold()
        assert isinstance(a_set, frozenset)
        assert isinstance(b_set, frozenset)
        missing_authorities = a_set - b_set
        if missing_authorities:
            return f"no longer catches {', '.join(sorted(map(str, missing_authorities)))}"
        return None
    a_value, b_value = a.threshold(), b.threshold()
    assert isinstance(a_value, Decimal | dt.date)
    assert isinstance(b_value, Decimal | dt.date)
    if _interval(a.op, a_value).within(_interval(b.op, b_value)):
        return None
    if a.op in (">", ">=") and b.op in (">", ">="):
        return f"raises the threshold from {a.op} {a.value} to {b.op} {b.value}"
    if a.op in ("<", "<=") and b.op in ("<", "<="):
        return f"lowers the threshold from {a.op} {a.value} to {b.op} {b.value}"
    return f"{describe(b)} does not catch everything {describe(a)} catches"


AnyCondition = Threshold | Duration | AnyOf | AllOf


def condition_problem(
    a: AnyCondition, a_ctx: DataContext, b: AnyCondition, b_ctx: DataContext
) -> str | None:
    """Why ``b`` may fail to fire where ``a`` fires; None when ``b`` provably covers ``a``.

    Sound, not complete: a None answer is a proof (by the structure of any/all and by comparing
    thresholds, label sets and data settings); a conservative "may fail" is possible for
    conditions that are equivalent in ways this does not see.
    """
    if isinstance(a, AnyOf):  # every alternative of a must be covered
        for member in a.any:
            problem = condition_problem(member, a_ctx, b, b_ctx)
            if problem:
                return problem
        return None
    if isinstance(b, AllOf):  # a must imply every conjunct of b
        for member in b.all:
            problem = condition_problem(a, a_ctx, member, b_ctx)
            if problem:
                return problem
        return None
    if isinstance(a, AllOf):  # one conjunct of a suffices
        pairs = [(m, condition_problem(m, a_ctx, b, b_ctx)) for m in a.all]
        return _closest(pairs, b)
    if isinstance(b, AnyOf):  # one alternative of b suffices
        pairs = [(m, condition_problem(a, a_ctx, m, b_ctx)) for m in b.any]
        return _closest(pairs, a)
    return _atom_problem(a, a_ctx, b, b_ctx)


def _closest(pairs: list[tuple[AnyCondition, str | None]], other: AnyCondition) -> str | None:
    """None if any pair has no problem; else the problem of the member on the same metric."""
    if any(problem is None for _, problem in pairs):
        return None
    wanted = {atom.metric for atom in iter_atoms(other)}
    for member, problem in pairs:
        if {atom.metric for atom in iter_atoms(member)} & wanted:
            return problem
    return f"has nothing that catches {describe(other)}"


def _metrics_in(condition: AnyCondition) -> Iterator[str]:
    if isinstance(condition, AnyOf):
        for member in condition.any:
            yield from _metrics_in(member)
    elif isinstance(condition, AllOf):
        for member in condition.all:
            yield from _metrics_in(member)
    else:
        yield condition.metric
        metric = condition.metric_def
        yield from metric.derived_from
        if isinstance(condition, Duration) and condition.since_metric:
            yield condition.since_metric


def metrics_used(document: PolicyDocument) -> set[str]:
    used: set[str] = set()
    for rule in document.rules:
        used.update(_metrics_in(rule.when))
    for exception in document.exceptions:
        if exception.conditions.void_when is not None:
            used.update(_metrics_in(exception.conditions.void_when))
    return used


# ---------------------------------------------------------------------------------------------
# Overlays
# ---------------------------------------------------------------------------------------------


def _is_set(model: Schema, field: str) -> bool:
    return field in model.model_fields_set


def _rule_problems(
    base: Rule, base_ctx: DataContext, rule: Rule, ctx: DataContext, index: int
) -> list[FieldError]:
    here: tuple[str | int, ...] = ("rules", index)
    name = f"rule {rule.id!r}"
    problems: list[FieldError] = []
    for field in ("asset_classes", "issuer_kinds"):
        before: list[StrEnum] = getattr(base.applies_to, field)
        after: list[StrEnum] = getattr(rule.applies_to, field)
        dropped = [v.value for v in before if v not in after]
        if dropped:
            problems.append(
                FieldError(
                    (*here, "applies_to", field),
                    f"{name} narrows applies_to.{field}: the base rule also covers "
                    f"{', '.join(dropped)}",
                )
            )
    if OUTCOME_RANK[rule.outcome] < OUTCOME_RANK[base.outcome]:
        problems.append(
            FieldError(
                (*here, "outcome"),
                f"{name} weakens the outcome from {base.outcome.value} to {rule.outcome.value}",
            )
        )
    if base.propagate and not rule.propagate:
        problems.append(
            FieldError((*here, "propagate"), f"{name} stops propagation the base rule has")
        )
    problem = condition_problem(base.when, base_ctx, rule.when, ctx)
    if problem:
        problems.append(
            FieldError(
                (*here, "when"),
                f"{name} loosens the base rule ({describe(base.when)}): its condition {problem}",
            )
        )
    return problems


def _exception_problems(
    base: PolicyException,
    base_ctx: DataContext,
    exception: PolicyException,
    ctx: DataContext,
    index: int,
) -> list[FieldError]:
    here: tuple[str | int, ...] = ("exceptions", index)
    name = f"exception {exception.id!r}"
    problems: list[FieldError] = []

    def widen(loc: tuple[str | int, ...], what: str) -> None:
        problems.append(FieldError((*here, *loc), f"{name} widens the base's exception: {what}"))

    extra = [r for r in exception.lifts if r not in base.lifts]
    if extra:
        widen(("lifts",), f"it also lifts {', '.join(extra)}")
    for field in ("issuer_countries", "issuer_kinds"):
        before = getattr(base.conditions, field)
        after = getattr(exception.conditions, field)
        if before is not None and (after is None or any(v not in before for v in after)):
            shown = "any" if after is None else ", ".join(str(v) for v in after if v not in before)
            widen(("conditions", field), f"{field} adds {shown}")
    dropped = [r for r in base.conditions.not_hit_by if r not in exception.conditions.not_hit_by]
    if dropped:
        widen(("conditions", "not_hit_by"), f"no longer void when {', '.join(dropped)} fires")
    base_void, void = base.conditions.void_when, exception.conditions.void_when
    if base_void is not None:
        problem = (
            "it drops the condition"
            if void is None
            else condition_problem(base_void, base_ctx, void, ctx)
        )
        if problem:
            widen(("conditions", "void_when"), f"void_when {problem}")
    missing = [f for f in base.requires if f not in exception.requires]
    if missing:
        widen(("requires",), f"entries need not carry {', '.join(missing)}")
    if base.max_duration_days is not None and (
        exception.max_duration_days is None or exception.max_duration_days > base.max_duration_days
    ):
        widen(
            ("max_duration_days",),
            f"max_duration_days {exception.max_duration_days} exceeds {base.max_duration_days}",
        )
    if base.scope != "all" and exception.scope != base.scope:
        widen(("scope",), f"scope {exception.scope} instead of {base.scope}")
    return problems


def _threshold_covers(
    base: ControlThreshold | StateOwnership | None,
    overlay: ControlThreshold | StateOwnership | None,
) -> bool:
    if base is None:
        return True
    if overlay is None:
        return False

    def pct(t: ControlThreshold | StateOwnership) -> Decimal:
        return Decimal(str(t.control_pct if isinstance(t, ControlThreshold) else t.pct))

    return _interval(base.op, pct(base)).within(_interval(overlay.op, pct(overlay)))


@dataclass(frozen=True)
class OverlayResult:
    """The merged document and every way the overlay tried to loosen its base."""

    document: PolicyDocument
    problems: tuple[FieldError, ...]


def merge_overlay(base: PolicyDocument, overlay: PolicyDocument) -> OverlayResult:
    """Merge an overlay onto its base; never looser than the base, whatever the overlay says.

    Settings the overlay leaves out are inherited. Every base rule is inherited; an overlay rule
    with a base rule's id replaces it when it is at least as strict in every respect, other
    overlay rules are added. Exceptions: only the base's, narrowed by the overlay. Position
    limits: the base's, lowered by the overlay, plus the overlay's own. Principles (not
    evaluated): the base's, restated by the overlay's of the same id, plus the overlay's own.
    Where the overlay would loosen something, the merged document keeps the base's version and
    ``problems`` says why.
    """
    problems: list[FieldError] = []

    def refuse(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append(FieldError(loc, msg))

    if base.extends is not None:
        refuse(
            ("extends",),
            f"{base.key!r} is itself an overlay; overlays of overlays are not "
            "supported: extend its base instead",
        )

    # Settings, each inherited unless set, and each refused if looser.
    unknown = base.unknown
    if _is_set(overlay, "unknown"):
        if base.unknown is UnknownPolicy.block and overlay.unknown is UnknownPolicy.allow:
            refuse(("unknown",), "unknown: allow loosens the base policy's unknown: block")
        else:
            unknown = overlay.unknown
    blocks = unknown is UnknownPolicy.block

    data_set = _is_set(overlay, "data")
    max_age = base.data.max_age_days
    if data_set and _is_set(overlay.data, "max_age_days"):
        wanted = overlay.data.max_age_days
        if wanted > max_age:
            refuse(
                ("data", "max_age_days"),
                f"max_age_days {wanted} accepts older data than the base's {max_age}",
            )
        elif wanted < max_age and not blocks:
            refuse(
                ("data", "max_age_days"),
                "shortening max_age_days turns data into unknown, which this policy allows",
            )
        else:
            max_age = wanted
    providers = dict(base.data.providers)
    if data_set and _is_set(overlay.data, "providers"):
        used = metrics_used(base)
        for metric, preferred in overlay.data.providers.items():
            if metric in used and providers.get(metric) != preferred:
                shown = ", ".join(providers[metric]) if metric in providers else "any provider"
                refuse(
                    ("data", "providers", metric),
                    f"changes the providers of {metric}, which base rules read ({shown})",
                )
            else:
                providers[metric] = preferred
    bands = base.data.percent_bands
    if data_set and _is_set(overlay.data, "percent_bands"):
        wanted_bands = overlay.data.percent_bands
        if wanted_bands != bands:
            refuse(
                ("data", "percent_bands"),
                f"percent_bands {wanted_bands} instead of the base's {bands}: how vendor bands "
                "are read is the base's methodology",
            )
    by_subject = dict(base.data.max_age_days_by_subject)
    if data_set and _is_set(overlay.data, "max_age_days_by_subject"):
        for subject, wanted in overlay.data.max_age_days_by_subject.items():
            current = base.data.max_age_days_by_subject.get(subject, base.data.max_age_days)
            loc = ("data", "max_age_days_by_subject", subject)
            if wanted > current:
                refuse(loc, f"{subject} data: {wanted} days accepts older data than {current}")
            elif wanted < current and not blocks:
                refuse(loc, "shortening a data age turns data into unknown, which this allows")
            else:
                by_subject[subject] = wanted
    data = DataSettings(
        max_age_days=max_age,
        max_age_days_by_subject=by_subject,
        providers=providers,
        percent_bands=bands,
    )

    propagation_set = _is_set(overlay, "propagation")
    to_parent = base.propagation.subsidiary_to_parent
    if propagation_set and _is_set(overlay.propagation, "subsidiary_to_parent"):
        wanted_parent = overlay.propagation.subsidiary_to_parent
        if _threshold_covers(to_parent, wanted_parent):
            to_parent = wanted_parent
        else:
            assert to_parent is not None
            refuse(
                ("propagation", "subsidiary_to_parent"),
                "weakens propagation to parents: the base propagates to a parent whose control "
                f"is {to_parent.op} {to_parent.control_pct:g} %",
            )
    state_owner = base.propagation.state_owner
    if propagation_set and _is_set(overlay.propagation, "state_owner"):
        wanted_owner = overlay.propagation.state_owner
        if _threshold_covers(state_owner, wanted_owner):
            state_owner = wanted_owner
        else:
            assert state_owner is not None
            refuse(
                ("propagation", "state_owner"),
                "weakens state-owner propagation: the base excludes companies in which a country "
                f"it excludes holds {state_owner.op} {state_owner.pct:g} %",
            )
    underlying = base.propagation.underlying
    if propagation_set and _is_set(overlay.propagation, "underlying"):
        if underlying and not overlay.propagation.underlying:
            refuse(
                ("propagation", "underlying"),
                "turns off propagation to derivatives, receipts and funds, which the base has",
            )
        else:
            underlying = overlay.propagation.underlying
    propagation = Propagation(
        subsidiary_to_parent=to_parent, state_owner=state_owner, underlying=underlying
    )

    look_through = _merge_look_through(base, overlay, blocks, refuse)

    actions = base.lists.model_dump()
    if _is_set(overlay, "lists"):
        for name in overlay.lists.model_fields_set:
            before_action, after_action = actions[name], getattr(overlay.lists, name)
            if LIST_ACTION_RANK[after_action] < LIST_ACTION_RANK[before_action]:
                refuse(
                    ("lists", name),
                    f"lists.{name}: {after_action.value} is looser than the base's "
                    f"{before_action.value}",
                )
            else:
                actions[name] = after_action
    lists = ListActions(**actions)

    merged_ctx = DataContext(
        providers={m: tuple(p) for m, p in providers.items()},
        max_age_days=max_age,
        unknown_blocks=blocks,
        max_age_by_subject=_by_subject(by_subject),
    )
    base_ctx = DataContext.of(base)

    # Rules: the base's, each replaced by a stricter redefinition, then the overlay's own.
    overlay_rules = {r.id: (i, r) for i, r in enumerate(overlay.rules)}
    rules: list[Rule] = []
    for base_rule in base.rules:
        if base_rule.id not in overlay_rules:
            rules.append(base_rule)
            continue
        index, redefined = overlay_rules[base_rule.id]
        rule_problems = _rule_problems(base_rule, base_ctx, redefined, merged_ctx, index)
        problems.extend(rule_problems)
        rules.append(base_rule if rule_problems else redefined)
    base_ids = {r.id for r in base.rules}
    rules.extend(r for r in overlay.rules if r.id not in base_ids)

    # Exceptions: the base declares them all; an overlay may only narrow one.
    overlay_exceptions = {e.id: (i, e) for i, e in enumerate(overlay.exceptions)}
    base_exception_ids = {e.id for e in base.exceptions}
    for index, exception in enumerate(overlay.exceptions):
        if exception.id not in base_exception_ids:
            refuse(
                ("exceptions", index, "id"),
                f"exception {exception.id!r} is not declared by the base policy "
                f"{base.key!r}: an overlay may narrow the base's exceptions, not add one",
            )
    exceptions: list[PolicyException] = []
    for base_exception in base.exceptions:
        if base_exception.id not in overlay_exceptions:
            exceptions.append(base_exception)
            continue
        index, narrowed = overlay_exceptions[base_exception.id]
        exception_problems = _exception_problems(
            base_exception, base_ctx, narrowed, merged_ctx, index
        )
        problems.extend(exception_problems)
        exceptions.append(base_exception if exception_problems else narrowed)

    # Position limits: the base's, lowered; the overlay's own added.
    overlay_limits = {p.id: (i, p) for i, p in enumerate(overlay.position_limits)}
    limits: list[PositionLimit] = []
    for base_limit in base.position_limits:
        if base_limit.id not in overlay_limits:
            limits.append(base_limit)
            continue
        index, limit = overlay_limits[base_limit.id]
        if limit.group != base_limit.group:
            refuse(
                ("position_limits", index, "group"),
                f"position limit {limit.id!r} applies to {limit.group} instead of the base's "
                f"{base_limit.group}",
            )
            limits.append(base_limit)
        elif limit.max_portfolio_pct > base_limit.max_portfolio_pct:
            refuse(
                ("position_limits", index, "max_portfolio_pct"),
                f"position limit {limit.id!r} raises max_portfolio_pct from "
                f"{base_limit.max_portfolio_pct} to {limit.max_portfolio_pct}",
            )
            limits.append(base_limit)
        else:
            limits.append(limit)
    base_limit_ids = {p.id for p in base.position_limits}
    limits.extend(p for p in overlay.position_limits if p.id not in base_limit_ids)

    # Principles (recorded, not evaluated): the base's, then the overlay's own; an overlay
    # principle with a base principle's id restates it.
    overlay_principles = {p.id: p for p in overlay.principles}
    principles = [overlay_principles.pop(p.id, p) for p in base.principles]
    principles.extend(overlay_principles.values())

    # The overlay's exceptions may name base rules and its own.
    problems.extend(
        _reference_errors(document_data(overlay), base_ids | {r.id for r in overlay.rules})
    )

    merged = PolicyDocument(
        key=overlay.key,
        title=overlay.title,
        extends=base.key,
        source=overlay.source,
        note=overlay.note,
        unknown=unknown,
        data=data,
        propagation=propagation,
        rules=rules,
        lists=lists,
        exceptions=exceptions,
        position_limits=limits,
        # Only when there are any: a merge of documents without principles stays as before.
        **({"principles": principles} if principles else {}),
        **(
            {"look_through": look_through}
            if _is_set(base, "look_through") or _is_set(overlay, "look_through")
            else {}
        ),
    )
    order = list(PolicyDocument.model_fields)
    problems.sort(key=lambda e: (order.index(str(e.loc[0])) if e.loc else -1, _loc_key(e.loc)))
    return OverlayResult(document=merged, problems=tuple(problems))


def _merge_look_through(
    base: PolicyDocument,
    overlay: PolicyDocument,
    blocks: bool,
    refuse: Callable[[tuple[str | int, ...], str], None],
) -> LookThrough:
    """The base's look-through, tightened by the overlay: lower thresholds, a higher coverage;
    a shorter age or a shallower depth (each turns more funds unknown) only where unknown
    blocks."""
    merged = base.look_through.model_dump()
    if not _is_set(overlay, "look_through"):
        return base.look_through
    wanted = overlay.look_through
    for name in wanted.model_fields_set:
        before, after = merged[name], getattr(wanted, name)
        loc: tuple[str | int, ...] = ("look_through", name)
        if name in ("exclude_above_pct", "watch_above_pct") and after > before:
            refuse(loc, f"{name} {after:g} is above the base's {before:g}")
        elif name == "min_coverage_pct" and after < before:
            refuse(loc, f"min_coverage_pct {after:g} accepts less coverage than {before:g}")
        elif name in ("max_age_days", "max_depth") and after > before:
            refuse(loc, f"{name} {after} is more lenient than the base's {before}")
        elif name in ("max_age_days", "max_depth") and after < before and not blocks:
            refuse(loc, f"lowering {name} turns funds into unknown, which this policy allows")
        else:
            merged[name] = after
    return LookThrough(**merged)


def _loc_key(loc: tuple[str | int, ...]) -> tuple[tuple[int, int, str], ...]:
    return tuple((1, p, "") if isinstance(p, int) else (0, 0, p) for p in loc)


def overlay_problems(base: PolicyDocument, overlay: PolicyDocument) -> tuple[FieldError, ...]:
    """Every way ``overlay`` drops or loosens ``base`` (empty: it only adds and tightens)."""
    return merge_overlay(base, overlay).problems


def effective_document(base: PolicyDocument, overlay: PolicyDocument) -> PolicyDocument:
    """The document the engine evaluates for an overlay: base plus overlay, never looser."""
    return merge_overlay(base, overlay).document


def iter_atoms(condition: AnyCondition) -> Iterable[Atom]:
    """Every threshold and duration in a condition, depth first (for evidence and data needs)."""
    if isinstance(condition, AnyOf):
        for member in condition.any:
            yield from iter_atoms(member)
    elif isinstance(condition, AllOf):
        for member in condition.all:
            yield from iter_atoms(member)
    else:
        yield condition


__all__ = [
    "KEY_PATTERN",
    "LIST_ACTION_RANK",
    "OUTCOME_RANK",
    "AllOf",
    "AnyOf",
    "AppliesTo",
    "Condition",
    "ControlThreshold",
    "DataContext",
    "DataSettings",
    "Duration",
    "DurationSpec",
    "ExceptionConditions",
    "ListAction",
    "ListActions",
    "Outcome",
    "OverlayResult",
    "PercentBands",
    "PolicyDocument",
    "PolicyDocumentInvalid",
    "PolicyException",
    "PositionLimit",
    "Principle",
    "Propagation",
    "Rule",
    "StateOwnership",
    "Threshold",
    "UnknownPolicy",
    "canonical_json",
    "condition_problem",
    "describe",
    "document_data",
    "document_sha256",
    "effective_document",
    "iter_atoms",
    "merge_overlay",
    "metrics_used",
    "overlay_problems",
    "parse_document",
    "parse_threshold",
    "policy_json_schema",
]
