"""The canonical metric vocabulary: the names policies refer to and vendor adapters map onto.

One table, used by three readers: dataset loads (is this value of the right type and range?),
policy validation (does this rule name a real metric, a comparison that makes sense for it, a
threshold inside its range?) and the rule engine (how do two values compare?).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Literal


class ValueType(StrEnum):
    boolean = "boolean"
    percent = "percent"  # 0..100, exact, or a vendor band such as "5-9.9"
    score = "score"  # a bounded number (CPI 0..100, Freedom House ratings 1..7)
    choice = "choice"  # one of a fixed set of labels
    ordinal = "ordinal"  # one of a fixed, ordered set of labels (ITUC: 1 < ... < 5 < 5+)
    date = "date"
    authorities = "authorities"  # a set drawn from a fixed set (arms embargoes: UN, EU, US)


class AssetClass(StrEnum):
    """What an instrument is (contract: the `asset_class` of an instrument)."""

    equity = "equity"
    corporate_bond = "corporate_bond"
    sovereign_bond = "sovereign_bond"
    derivative = "derivative"
    fund = "fund"


class IssuerKind(StrEnum):
    """Who issued it (contract: the `kind` of an issuer)."""

    company = "company"
    sovereign = "sovereign"
    sub_sovereign = "sub_sovereign"
    agency = "agency"
    supranational = "supranational"


class Subject(StrEnum):
    issuer = "issuer"  # a fact about a company (or any issuer), keyed by issuer
    country = "country"  # a fact about a country, keyed by ISO 3166-1 alpha-2


# Comparisons a policy may use on each value type.
COMPARISONS: dict[ValueType, frozenset[str]] = {
    ValueType.boolean: frozenset({"=="}),
    ValueType.percent: frozenset({">", ">=", "<", "<=", "=="}),
    ValueType.score: frozenset({">", ">=", "<", "<=", "=="}),
    ValueType.choice: frozenset({"==", "!=", "in"}),
    ValueType.ordinal: frozenset({">", ">=", "<", "<=", "==", "in"}),
    ValueType.date: frozenset({"<", "<=", ">", ">="}),
    ValueType.authorities: frozenset({"intersects"}),
}


# The eight ILO core conventions seed 001 (and seed 003) name: (NORMLEX code, number, subject).
ILO_CORE_CONVENTIONS: tuple[tuple[str, int, str], ...] = (
    ("c029", 29, "forced labour"),
    ("c087", 87, "freedom of association and protection of the right to organise"),
    ("c098", 98, "right to organise and collective bargaining"),
    ("c100", 100, "equal remuneration"),
    ("c105", 105, "abolition of forced labour"),
    ("c111", 111, "discrimination in employment and occupation"),
    ("c138", 138, "minimum age"),
    ("c182", 182, "worst forms of child labour"),
)

# Controversy severity, lowest first: Sustainalytics' Controversy Category 0..5 by name.
CONTROVERSY_SEVERITY: tuple[str, ...] = (
    "none",
    "low",
    "moderate",
    "significant",
    "high",
    "severe",
)


@dataclass(frozen=True)
class Metric:
    name: str
    type: ValueType
    subject: Subject
    description: str
    choices: tuple[str, ...] = ()  # choice/ordinal labels (ordinal: lowest first); authorities
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    derived_from: tuple[str, ...] = ()  # computed by the engine, never loaded


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "controversial_weapons.involved",
            ValueType.boolean,
            Subject.issuer,
            "Involved in controversial weapons (production, components, delivery systems).",
        ),
        Metric(
            "defence.involved",
            ValueType.boolean,
            Subject.issuer,
            "Produces or sells defence (military), auxiliary or dual-use products.",
        ),
        Metric(
            "civilian_firearms.involved",
            ValueType.boolean,
            Subject.issuer,
            "Produces or distributes civilian firearms.",
        ),
        Metric(
            "norms.status",
            ValueType.choice,
            Subject.issuer,
            "Compliance with UN Global Compact / OECD guidelines / UNGP.",
            choices=("compliant", "watchlist", "non_compliant"),
        ),
        Metric(
            "norms.non_compliant_since",
            ValueType.date,
            Subject.issuer,
            "Since when the issuer has been non-compliant (given, or derived from history).",
        ),
        *(
            Metric(
                f"revenue_pct.{activity}",
                ValueType.percent,
                Subject.issuer,
                f"Share of revenue from {label}, percent.",
                minimum=Decimal(0),
                maximum=Decimal(100),
            )
            for activity, label in (
                ("tobacco", "production and distribution of tobacco"),
                ("thermal_coal_extraction", "thermal coal mining and sales to third parties"),
                ("thermal_coal_power", "electricity generated from thermal coal"),
                ("unconventional_oil_gas", "tar sands and shale oil & gas"),
                ("arctic_oil_gas", "Arctic oil and gas"),
            )
        ),
        Metric(
            "country.freedom_house.status",
            ValueType.choice,
            Subject.country,
            "Freedom in the World status.",
            choices=("Free", "Partly Free", "Not Free"),
        ),
        Metric(
            "country.freedom_house.pr_rating",
            ValueType.score,
            Subject.country,
            "Freedom House Political Rights rating, 1 (most free) to 7 (least free).",
            minimum=Decimal(1),
            maximum=Decimal(7),
        ),
        Metric(
            "country.freedom_house.cl_rating",
            ValueType.score,
            Subject.country,
            "Freedom House Civil Liberties rating, 1 (most free) to 7 (least free).",
            minimum=Decimal(1),
            maximum=Decimal(7),
        ),
        Metric(
            "country.freedom_house.pr_cl_average",
            ValueType.score,
            Subject.country,
            "Average of the Political Rights and Civil Liberties ratings (computed).",
            minimum=Decimal(1),
            maximum=Decimal(7),
            derived_from=("country.freedom_house.pr_rating", "country.freedom_house.cl_rating"),
        ),
        Metric(
            "country.ituc.rating",
            ValueType.ordinal,
            Subject.country,
            "ITUC Global Rights Index rating; 5+ (no guarantee of rights) is above 5.",
            choices=("1", "2", "3", "4", "5", "5+"),
        ),
        Metric(
            "country.cpi.score",
            ValueType.score,
            Subject.country,
            "Transparency International Corruption Perceptions Index score, 0..100.",
            minimum=Decimal(0),
            maximum=Decimal(100),
        ),
        Metric(
            "country.sanctions.arms_embargo",
            ValueType.authorities,
            Subject.country,
            "Authorities with an arms embargo in force on the country.",
            choices=("UN", "EU", "US"),
        ),
        # --- a.s.r.'s criteria (seed 001): ILO core conventions, human-rights controversies,
        # dual-use. Names follow the vocabulary's `<topic>.<subject>.<attribute>` style; an ILO
        # convention is named by its NORMLEX code (C029 ... C182), lower-cased, so the eight
        # sort in convention order and the name is the code an analyst looks up.
        *(
            Metric(
                f"ilo.{code}.violation",
                ValueType.boolean,
                Subject.issuer,
                f"Violates ILO convention No. {number} ({subject}): an established, "
                "company-attributable breach, not an allegation under review. "
                "Providers: no vendor field per convention; supplied by norms-based research "
                "(ISS ESG Norm-Based Research, Sustainalytics Global Standards Screening cite "
                "the conventions a case breaches) or the house's own research (`internal`).",
            )
            for code, number, subject in ILO_CORE_CONVENTIONS
        ),
        Metric(
            "controversy.human_rights.severity",
            ValueType.ordinal,
            Subject.issuer,
            "Severity of the company's worst human-rights controversy (none < low < moderate < "
            "significant < high < severe). Sustainalytics Controversies Research, the Human "
            "Rights event's Controversy Category: 0 none, 1 low, 2 moderate, 3 significant, "
            "4 high, 5 severe. MSCI ESG Controversies, the Human Rights Concerns flag (coarser): "
            "Green low (none when no case), Yellow significant, Orange high, Red severe.",
            choices=CONTROVERSY_SEVERITY,
        ),
        Metric(
            "controversy.human_rights.repeated",
            ValueType.boolean,
            Subject.issuer,
            "The human-rights controversy recurs: more than one incident in the vendor's "
            "look-back, or an ongoing, structural pattern (seed 001 'herhaaldelijk'). No vendor "
            "field of that name: derived from the incident history (Sustainalytics: an event "
            "with more than one incident; MSCI: a case assessed Structural; RepRisk: incident "
            "count) or supplied by the house's own research (`internal`).",
        ),
        Metric(
            "dual_use.involved",
            ValueType.boolean,
            Subject.issuer,
            "Produces or sells dual-use items (civil goods with military use, e.g. items on the "
            "EU dual-use list, Regulation (EU) 2021/821 Annex I). No vendor field of that name; "
            "supplied by export-control or product-involvement research (`internal`).",
        ),
        Metric(
            "defence.high_risk_end_use",
            ValueType.boolean,
            Subject.issuer,
            "Its defence, auxiliary or dual-use products are at risk of use against people or of "
            "delivery to dubious authorities (seed 001): supplies high-risk countries as the "
            "Dutch IMVO arms-trade framework defines them, or end users tied to human-rights "
            "abuses. No vendor field; supplied by the house's own research (`internal`, for "
            "a.s.r. its Security Affairs) or NGO arms-trade research.",
        ),
        Metric(
            "country.sanctions.financial",
            ValueType.authorities,
            Subject.country,
            "Authorities (UN Security Council, EU, US) with financial or sectoral sanctions in "
            "force on the country beyond arms embargoes: measures that forbid or restrict "
            "investing in its government's debt or its financial sector (seed 004 'sancties', "
            "seed 003 section 16 and 38). No vendor publishes this uniformly (no vendor field): "
            "a data steward loads it as `facts` for countries (`none` for a country under no "
            "such sanction), from the UN, EU and OFAC texts.",
            choices=("UN", "EU", "US"),
        ),
        Metric(
            "sanctions.us_ns_cmic",
            ValueType.boolean,
            Subject.issuer,
            "On OFAC's Non-SDN Chinese Military-Industrial Complex Companies List (E.O. 13959 as "
            "amended by E.O. 14032), judged from the provider's current list: an instrument of "
            "the issuer carries an ISIN the list names (matched textually); false when a fresh "
            "list does not name any. Loaded only as the `ofac-ns-cmic` kind (never as facts); "
            "the evidence gives the entity's listing date.",
        ),
        # --- other investors' published exclusions (Norges Bank / the Council on Ethics for the
        # GPFG, KLP): name-only lists, loaded as `published-exclusions` and resolved to issuers
        # by a data steward with four eyes; never loaded as facts.
        Metric(
            "peer_exclusion.excluded",
            ValueType.boolean,
            Subject.issuer,
            "Excluded (or recommended for exclusion) by another investor that publishes its "
            "exclusions (Norges Bank for the GPFG, its Council on Ethics, the Norwegian Ministry "
            "of Finance, KLP): true from a confirmed `Exclusion` or `Recommendation to exclude` "
            "entry, false from a confirmed revocation (`Exclusion revoked`, `re-included`, "
            "`rescinded`) or when the last confirmed entry is revoked; the newest published "
            "decision of the issuer's confirmed entries decides. The provider is the investor "
            "as published (e.g. `NBIM (GPFG)`, `KLP`); the evidence names the published entry "
            "and its date, and its dataset (the confirmation) gives the row, criterion and "
            "source URL. Written only when a second key confirms a steward's resolution of the "
            "published name to the issuer (`/v1/published-exclusions`); an unresolved name "
            "affects nothing.",
        ),
        Metric(
            "peer_exclusion.observation",
            ValueType.boolean,
            Subject.issuer,
            "Placed under observation by another investor that publishes its decisions (Norges "
            "Bank for the GPFG): true from a confirmed `Observation` entry, false from a "
            "confirmed `Removed from observation` entry or when the last confirmed entry is "
            "revoked. Provider, evidence and four-eyes confirmation as peer_exclusion.excluded.",
        ),
    )
}

# Provider names: the `provider` of a load and of a rule. Authorities (UN, EU, US) are not
# providers; they are values of country.sanctions.arms_embargo.
PROVIDERS: frozenset[str] = frozenset(
    {
        "msci",
        "sustainalytics",
        "iss",
        "robeco",
        "freedom-house",
        "transparency-international",
        "ituc",
        "sipri",  # arms-embargo compilations
        "ofac",
        "gleif",
        "internal",  # the house's own research, loaded as `facts`
    }
)


@dataclass(frozen=True, order=True)
class PercentBand:
    """A vendor revenue band such as 5-9.9: the true value lies in [low, high]."""

    low: Decimal
    high: Decimal

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


FactValue = bool | Decimal | PercentBand | str | dt.date | frozenset[str]

_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}
_BAND = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*%?\s*$")


class InvalidValue(ValueError):
    """A value that does not fit its metric; the message says what would."""


def _decimal(raw: str, metric: Metric) -> Decimal:
    try:
        value = Decimal(raw.strip().rstrip("%").strip())
    except InvalidOperation:
        raise InvalidValue(f"{raw!r} is not a number") from None
    if not value.is_finite():
        raise InvalidValue(f"{raw!r} is not a finite number")
    if metric.minimum is not None and value < metric.minimum:
        raise InvalidValue(f"{raw} is below {metric.minimum}, the lowest value of {metric.name}")
    if metric.maximum is not None and value > metric.maximum:
        raise InvalidValue(f"{raw} is above {metric.maximum}, the highest value of {metric.name}")
    return value


def parse_value(metric: Metric, raw: str) -> FactValue:
    """Parse a value as found in a file; InvalidValue says what would be accepted."""
    text = raw.strip()
    if not text:
        raise InvalidValue("empty value")
    if metric.type is ValueType.boolean:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise InvalidValue(f"{raw!r} is not a boolean (use true or false)")
    if metric.type is ValueType.percent:
        band = _BAND.match(text)
        if band:
            low, high = _decimal(band.group(1), metric), _decimal(band.group(2), metric)
            if low > high:
                raise InvalidValue(f"band {raw!r} has its low end above its high end")
            return PercentBand(low, high)
        return _decimal(text, metric)
    if metric.type is ValueType.score:
        return _decimal(text, metric)
    if metric.type in (ValueType.choice, ValueType.ordinal):
        if text in metric.choices:
            return text
        folded = {c.lower(): c for c in metric.choices}
        if text.lower() in folded:
            return folded[text.lower()]
        raise InvalidValue(f"{raw!r} is not one of {', '.join(metric.choices)}")
    if metric.type is ValueType.date:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise InvalidValue(f"{raw!r} is not a date (use YYYY-MM-DD)") from None
    # authorities: "UN;EU" or "UN,EU"; "none": the empty set (no authority, stated)
    if text.lower() == "none":
        return frozenset()
    parts = {p.strip().upper() for p in re.split(r"[;,|]", text) if p.strip()}
    unknown = parts - set(metric.choices)
    if unknown:
        raise InvalidValue(f"unknown authority {', '.join(sorted(unknown))}; use UN, EU or US")
    return frozenset(parts)


def format_value(value: FactValue) -> str:
    """The canonical text of a value: what is stored, hashed and shown as evidence."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        normalized = value.normalize()
        # normalize() turns 100 into 1E+2; keep plain notation.
        return format(normalized, "f")
    if isinstance(value, frozenset):
        return ";".join(sorted(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidValue(
            f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}"
        ) from None


def ordinal_rank(metric: Metric, label: str) -> int:
    """Position of an ordinal label (ITUC: '5+' ranks above '5')."""
    return metric.choices.index(label)


# Whose money a portfolio holds (seed 001; contract, "Portfolios and holdings"): ``own``, the
# house's own account, or ``client``. An exception scoped to the own account lifts a hit only
# for ``own`` money; a check without a portfolio is judged as client money.
Account = Literal["own", "client"]
ACCOUNTS: tuple[Account, ...] = ("own", "client")
