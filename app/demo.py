"""`mayhold demo`: the shipped policies, approved, and a generated sample universe.

The universe is generated (seeded, so every run is the same) and loaded through the real
dataset loaders, as a data steward would: a few thousand companies with parents and state
owners, sovereigns with country indices and arms embargoes, instruments including derivatives
on an underlying, and vendor data that makes every rule of the shipped policies fire somewhere
(clean, excluded, on watch, undecidable bands, stale data, missing data).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum import isin as stdnum_isin

from app.auth.schemas import Actor
from app.datasets import service as datasets
from app.datasets.schemas import DatasetKind
from app.kit.settings import REPO_ROOT
from app.kit.time import utcnow
from app.kit.vocabulary import ILO_CORE_CONVENTIONS
from app.models import Dataset
from app.policies import service as policies
from app.policies.document import DurationSpec

SHIPPED_POLICIES = ("rpf", "asr", "dk-pension", "pensura")
# What a.s.r. reads of every company beyond norms, weapons and defence (seed 001: the ILO core
# conventions, severe and repeated human-rights controversies, dual-use with high-risk supply).
ASR_CLEAR = {
    **{f"ilo.{code}.violation": "false" for code, _, _ in ILO_CORE_CONVENTIONS},
    "controversy.human_rights.severity": "none",
    "controversy.human_rights.repeated": "false",
    "dual_use.involved": "false",
    "defence.high_risk_end_use": "false",
}
LOADER = Actor(name="demo:data-steward", key_id=None)
AUTHOR = Actor(name="demo:policy-author", key_id=None)
COMMITTEE = Actor(name="demo:investment-committee", key_id=None)

# country: (Freedom House status, PR, CL, ITUC, CPI), roughly as published around 2024.
COUNTRIES: dict[str, tuple[str, int, int, str, int]] = {
    "NL": ("F", 1, 1, "1", 79),
    "DE": ("F", 1, 1, "1", 78),
    "FR": ("F", 1, 2, "3", 71),
    "GB": ("F", 1, 1, "4", 71),
    "US": ("F", 2, 2, "4", 69),
    "NO": ("F", 1, 1, "1", 84),
    "DK": ("F", 1, 1, "1", 90),
    "JP": ("F", 1, 1, "2", 73),
    "BR": ("PF", 2, 3, "4", 36),
    "IN": ("PF", 2, 4, "5", 39),
    "ID": ("PF", 2, 4, "5", 34),
    "ZA": ("F", 2, 2, "4", 41),
    "CN": ("NF", 7, 6, "5", 42),
    "RU": ("NF", 7, 7, "5", 26),
    "VE": ("NF", 7, 6, "5+", 13),
    "MM": ("NF", 7, 7, "5+", 20),
    "AF": ("NF", 7, 7, "5+", 20),
    "SY": ("NF", 7, 7, "5+", 13),
    "BY": ("NF", 7, 6, "5", 37),
    "YE": ("NF", 7, 6, "5+", 16),
}
EMBARGOES = [  # country, authority, regime, since
    ("RU", "EU", "Council Decision 2014/512/CFSP", "2014-07-31"),
    ("RU", "US", "ITAR 126.1", "2014-03-01"),
    ("CN", "EU", "European Council declaration (Madrid)", "1989-06-27"),
    ("VE", "EU", "Council Decision (CFSP) 2017/2074", "2017-11-13"),
    ("MM", "EU", "EC declaration", "1991-07-29"),
    ("SY", "EU", "Council Decision 2011/273/CFSP", "2011-05-09"),
    ("BY", "EU", "Council Decision 2011/357/CFSP", "2011-06-20"),
    ("YE", "UN", "UNSCR 2216", "2015-04-14"),
    ("AF", "UN", "UNSCR 1988", "2011-06-17"),
]
# Financial / sectoral sanctions beyond arms embargoes (country.sanctions.financial, loaded as
# country facts): the authorities restricting investment in the sovereign's debt; others none.
FINANCIAL_SANCTIONS = {"RU": "EU;US", "VE": "US"}
COMPANY_COUNTRIES = [
    "NL",
    "DE",
    "FR",
    "GB",
    "US",
    "NO",
    "DK",
    "JP",
    "BR",
    "IN",
    "ID",
    "ZA",
    "CN",
    "RU",
]


def make_isin(prefix: str, number: int) -> str:
    body = f"{prefix}{number:09d}"
    return body + stdnum_isin.calc_check_digit(body)


@dataclass
class Universe:
    issuers: list[dict[str, str]] = field(default_factory=list)
    instruments: list[dict[str, str]] = field(default_factory=list)
    facts: list[dict[str, str]] = field(default_factory=list)
    msci: list[dict[str, str]] = field(default_factory=list)
    lists: list[dict[str, str]] = field(default_factory=list)
    portfolios: list[dict[str, str]] = field(default_factory=list)
    holdings: list[dict[str, str]] = field(default_factory=list)
    fund_holdings: list[dict[str, str]] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)


def generate(companies: int = 3000, seed: int = 42, *, extra_bonds: int = 0) -> Universe:
    """A sample universe; ``extra_bonds`` more corporate bonds per company (for benchmarks of
    a universe with several instruments per issuer)."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    today = utcnow().date()
    fresh = (today - dt.timedelta(days=45)).isoformat()
    stale = (today - dt.timedelta(days=500)).isoformat()
    u = Universe()
    for number, country in enumerate(COUNTRIES):
        u.issuers.append(
            {
                "issuer_id": f"SOV-{country}",
                "name": f"Government of {country}",
                "kind": "sovereign",
                "country": country,
            }
        )
        isin = make_isin(country, 900_000 + number)
        u.instruments.append(
            {
                "isin": isin,
                "issuer_id": f"SOV-{country}",
                "asset_class": "sovereign_bond",
                "name": f"{country} 10Y",
            }
        )
        if country in ("NL", "RU", "VE"):
            u.examples.setdefault(f"sovereign {country}", isin)
    for n in range(companies):
        issuer_id = f"CO{n:05d}"
        country = rng.choice(COMPANY_COUNTRIES)
        row = {
            "issuer_id": issuer_id,
            "name": f"Company {n} {country}",
            "kind": "company",
            "country": country,
            "msci_issuer_id": f"IID{n:012d}",
        }
        if n % 10 == 3 and n > 10:  # a controlled subsidiary of the previous company
            row["parent_issuer_id"] = f"CO{n - 1:05d}"
            row["parent_control_pct"] = rng.choice(["30", "50", "50.01", "75", "100"])
        if n % 20 == 7:  # state-owned
            owner = rng.choice(["CN", "RU", "NO", "FR", "VE"])
            row["state_owner_country"] = owner
            row["state_owner_pct"] = rng.choice(["26.6", "49.99", "50", "51", "70", "100"])
        u.issuers.append(row)
        share = make_isin("XS", n)
        u.instruments.append(
            {
                "isin": share,
                "issuer_id": issuer_id,
                "asset_class": "equity",
                "name": f"Company {n} shares",
            }
        )
        if n % 5 == 0:
            u.instruments.append(
                {
                    "isin": make_isin("XS", 500_000 + n),
                    "issuer_id": issuer_id,
                    "asset_class": "corporate_bond",
                    "name": f"Company {n} bond",
                }
            )
        for k in range(extra_bonds):
            u.instruments.append(
                {
                    "isin": make_isin("XS", 1_000_000 + n * extra_bonds + k),
                    "issuer_id": issuer_id,
                    "asset_class": "corporate_bond",
                    "name": f"Company {n} bond {k + 2}",
                }
            )
        if n % 50 == 1:  # a derivative on the share, issued by a bank
            u.instruments.append(
                {
                    "isin": make_isin("XS", 800_000 + n),
                    "issuer_id": "CO00000",
                    "asset_class": "derivative",
                    "underlying_isin": share,
                    "name": f"Option on company {n}",
                }
            )
        u.facts.extend(_company_facts(rng, issuer_id, n, fresh, stale, today))
        u.msci.append(_msci_row(rng, n, share, country))
        label = _label(n)
        if label:
            u.examples.setdefault(label, share)
    for key, issuer_id, kind, reason in (
        ("rpf", "CO00042", "exclusion", "Board decision: serious environmental damage"),
        ("rpf", "CO00044", "inclusion", "Engagement succeeded: readmitted by the committee"),
        ("dk-pension", "CO00046", "dialogue", "Asked for dialogue after exclusion"),
        ("asr", "CO00048", "focus", "Human-rights monitoring"),
    ):
        u.lists.append(
            {
                "policy": key,
                "issuer_ref": issuer_id,
                "list": kind,
                "reason": reason,
                "decided_on": (today - dt.timedelta(days=120)).isoformat(),
                "reference": "IC-DEMO",
                "expires_on": "",
            }
        )
    _portfolios(u, companies, fresh, today)
    _lifecycle_funds(u, fresh)
    return u


# The Pensura group (seed 002 §3): the four sponsoring employers under one ultimate parent, and
# group companies on another branch (in the group, not sponsors). Issuer id, name, country,
# parent, whether a sponsor.
PENSURA_GROUP = (
    ("DIV-TOP", "Diamond (BC) Holding", "US", "", False),
    ("DIV-NL-HOLD", "Diamond (BC) Netherlands Holding B.V.", "NL", "DIV-TOP", True),
    ("DIV-EU-OPS", "Diversey Europe Operations B.V.", "NL", "DIV-NL-HOLD", True),
    ("DIV-BV", "Diversey B.V.", "NL", "DIV-NL-HOLD", True),
    ("DIV-NL-PROD", "Diversey Netherlands Productions B.V.", "NL", "DIV-BV", True),
    ("DIV-US-HOLD", "Diversey US Holdings Inc.", "US", "DIV-TOP", False),
    ("DIV-US-OPS", "Diversey US Operations Inc.", "US", "DIV-US-HOLD", False),
)
# Instruments of the group: ISIN, issuer, asset class, name.
PENSURA_INSTRUMENTS = (
    (make_isin("NL", 700_001), "DIV-EU-OPS", "corporate_bond", "Diversey Europe 4.25% 2030"),
    (make_isin("NL", 700_002), "DIV-BV", "corporate_bond", "Diversey B.V. 3.5% 2029"),
    (make_isin("NL", 700_003), "DIV-NL-HOLD", "corporate_bond", "Diamond (BC) NL 5% 2031"),
    (make_isin("US", 700_004), "DIV-US-OPS", "corporate_bond", "Diversey US 5.75% 2032"),
    (make_isin("US", 700_005), "DIV-TOP", "equity", "Diamond (BC) Holding shares"),
)
SPONSOR_BOND = PENSURA_INSTRUMENTS[0][0]
GROUP_BOND = PENSURA_INSTRUMENTS[3][0]
# A Dutch defence company (fictitious) with a board-approved nl-defence exception under asr.
DEFENCE_ISSUER = "NL-DEFENCE"
DEFENCE_SHARE = make_isin("NL", 700_010)
# PENSURA-DB's position report (EUR, 100,000,000 in all): the sponsors at 4.8% (limit 5%), the
# group at 9.5% (limit 10%), the rest in demo companies' shares. A buy of 150,000 of the sponsor
# bond stays within both limits (4.94%, 9.64%); one of 500,000 takes the sponsors to 5.27%.
PENSURA_TOTAL = 100_000_000
PENSURA_SPONSORS = {  # 4,800,000
    SPONSOR_BOND: 2_000_000,
    PENSURA_INSTRUMENTS[1][0]: 1_500_000,
    PENSURA_INSTRUMENTS[2][0]: 1_300_000,
}
PENSURA_GROUP_OTHERS = {GROUP_BOND: 3_000_000, PENSURA_INSTRUMENTS[4][0]: 1_700_000}
PORTFOLIOS = (
    ("PENSURA-DB", "Pensura defined benefit", "pensura", "client", "EUR", "ABN AMRO Clearing"),
    ("ASR-OWN", "a.s.r. own account", "asr", "own", "EUR", ""),
    ("ASR-CLIENT", "a.s.r. client mandate", "asr", "client", "EUR", ""),
)


def _portfolios(u: Universe, companies: int, fresh: str, today: dt.date) -> None:
    """The Pensura group, a Dutch defence company with an asr exception, and the demo's
    portfolios with their position reports."""
    for issuer_id, name, country, parent, _ in PENSURA_GROUP:
        row = {"issuer_id": issuer_id, "name": name, "kind": "company", "country": country}
        if parent:
            row["parent_issuer_id"] = parent
            row["parent_control_pct"] = "100"
        u.issuers.append(row)
    u.issuers.append(
        {
            "issuer_id": DEFENCE_ISSUER,
            "name": "Nederlandse Defensiesystemen N.V.",
            "kind": "company",
            "country": "NL",
        }
    )
    for isin, issuer_id, asset_class, name in PENSURA_INSTRUMENTS:
        u.instruments.append(
            {"isin": isin, "issuer_id": issuer_id, "asset_class": asset_class, "name": name}
        )
    u.instruments.append(
        {
            "isin": DEFENCE_SHARE,
            "issuer_id": DEFENCE_ISSUER,
            "asset_class": "equity",
            "name": "Nederlandse Defensiesystemen shares",
        }
    )
    for issuer_id in [g[0] for g in PENSURA_GROUP]:
        u.facts.extend(_clean_company_facts(issuer_id, fresh))
    u.facts.extend(_clean_company_facts(DEFENCE_ISSUER, fresh, defence=True))
    decided = (today - dt.timedelta(days=30)).isoformat()
    for issuer_id, _, _, _, sponsor in PENSURA_GROUP:
        if sponsor:
            u.lists.append(
                {
                    "policy": "pensura",
                    "issuer_ref": issuer_id,
                    "list": "sponsor",
                    "reason": "ABTN §1.1: sponsoring employer",
                    "decided_on": decided,
                    "reference": "ABTN-2022",
                    "expires_on": "",
                }
            )
    u.lists.append(
        {
            "policy": "asr",
            "issuer_ref": DEFENCE_ISSUER,
            "list": "exception",
            "reason": "nl-defence: board approval after Security Affairs review",
            "decided_on": decided,
            "reference": "BOARD-DEMO-1",
            "expires_on": (today + dt.timedelta(days=300)).isoformat(),
        }
    )
    for portfolio_id, name, policy, account, currency, custodian in PORTFOLIOS:
        u.portfolios.append(
            {
                "portfolio_id": portfolio_id,
                "name": name,
                "policy": policy,
                "account": account,
                "base_currency": currency,
                "custodian": custodian,
            }
        )
    # The rest of PENSURA-DB: equal parts in the shares of the first demo companies.
    others = [make_isin("XS", n) for n in range(min(companies, 20))]
    held = {**PENSURA_SPONSORS, **PENSURA_GROUP_OTHERS}
    rest = PENSURA_TOTAL - sum(held.values())
    if not others:  # a universe without companies: the rest in the Dutch government's bond
        others = [make_isin("NL", 900_000)]
    for number, isin in enumerate(others):
        share = rest // len(others)
        held[isin] = share if number < len(others) - 1 else rest - share * (len(others) - 1)
    for code, amount in held.items():
        u.holdings.append(_holding("PENSURA-DB", code, amount))
    for portfolio_id in ("ASR-OWN", "ASR-CLIENT"):
        u.holdings.append(_holding(portfolio_id, DEFENCE_SHARE, 2_500_000))
        if companies:
            u.holdings.append(_holding(portfolio_id, make_isin("XS", 0), 47_500_000))


# Pensura's standard lifecycle (seed 002 §2.3.3): its six funds by ISIN, their managers
# (fictitious issuer records: the seed names the funds, not their management companies) and
# whether the demo ships a composition. Three do, so a fund is judged through what it holds;
# three do not, so they show the fail-closed answer (`unknown`: composition missing).
LIFECYCLE_MANAGERS = (
    ("NTAM", "Northern Trust Fund Managers (Ireland) Limited", "US"),
    ("AMUNDI", "Amundi Luxembourg S.A.", "FR"),
    ("BLACKROCK", "BlackRock Asset Management Ireland Limited", "US"),
)
LIFECYCLE_FUNDS = (  # ISIN, manager, name (as the seed prints it), composition shipped
    ("NL0011225305", "NTAM", "Northern Trust World Custom ESG Equity Index UCITS FGR", True),
    ("NL0010948220", "NTAM", "Northern Trust Eu Eq Idx UCITS FGR A EUR", True),
    ("LU1162503145", "AMUNDI", "Amundi Fds Index Eq Emerging Mkts A3E-D", False),
    ("NL0010948246", "NTAM", "Northern Trust DeRlEs Idx UCITSFGR A EUR", False),
    ("LU0916238545", "BLACKROCK", "BlackRock Euro Aggregate Bond Idx N7 EUR", False),
    ("IE00B1FZS913", "BLACKROCK", "iShares Euro Government Bond 15-30yr", True),
)
WORLD_FUND, EUROPE_FUND, EMERGING_FUND = (f[0] for f in LIFECYCLE_FUNDS[:3])
GOVERNMENT_BOND_FUND = LIFECYCLE_FUNDS[5][0]
# The demo companies a fund may hold without any shipped rule firing on them: a clean kind
# (see _label: not tobacco, coal, weapons, norms, bands, stale data or defence), no parent or
# subsidiary link, no state owner, no list entry, domiciled where no country rule applies.
_CLEAN_KINDS = frozenset({0, 4, 5, 6, 8, 9})
_LISTED = frozenset({"CO00042", "CO00044", "CO00046", "CO00048"})
_CLEAN_COUNTRIES = frozenset({"NL", "DE", "FR", "GB", "US", "NO", "DK", "JP"})
_TOBACCO_IN_EUROPE_FUND_PCT = Decimal("1")


def _equal_weights(holdings: list[str], total: Decimal) -> list[tuple[str, Decimal]]:
    """``total`` percent split over ``holdings`` in hundredths, the rounding on the last one."""
    share = (total / len(holdings)).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    weights = [share] * (len(holdings) - 1)
    return list(zip(holdings, [*weights, total - sum(weights)], strict=True))


def _lifecycle_funds(u: Universe, fresh: str) -> None:
    """Seed 002's lifecycle funds as instruments, and compositions for three of them: a world
    equity index fund of clean companies (allowed), a European one that also holds the tobacco
    producer at 1 % (excluded under rpf, whose look-through excludes on any excluded holding of
    positive weight; the other shipped policies have no tobacco rule), and a long government
    bond fund (Dutch, German and French bonds)."""
    for issuer_id, name, country in LIFECYCLE_MANAGERS:
        msci_id = f"IID-{issuer_id}"
        u.issuers.append(
            {
                "issuer_id": issuer_id,
                "name": name,
                "kind": "company",
                "country": country,
                "msci_issuer_id": msci_id,
            }
        )
        u.facts.extend(_clean_company_facts(issuer_id, fresh))
        u.msci.append(
            {
                "ISSUERID": msci_id,
                "ISSUER_NAME": name.upper(),
                "ISSUER_ISIN": "",
                "ISSUER_CNTRY_DOMICILE": country,
                "CWEAP_TIE": "No",
                **dict.fromkeys(MSCI_REVENUE_COLUMNS, "0"),
                "UNGC_COMPLIANCE": "Pass",
            }
        )
    for isin, manager, name, _ in LIFECYCLE_FUNDS:
        u.instruments.append(
            {"isin": isin, "issuer_id": manager, "asset_class": "fund", "name": name}
        )
    share_of = {i["issuer_id"]: i["isin"] for i in u.instruments if i["asset_class"] == "equity"}
    clean = [
        share_of[row["issuer_id"]]
        for row in u.issuers
        if row["issuer_id"].startswith("CO")
        and int(row["issuer_id"][2:]) % 40 in _CLEAN_KINDS
        and row["issuer_id"] not in _LISTED
        and row["country"] in _CLEAN_COUNTRIES
        and "parent_issuer_id" not in row
        and "state_owner_country" not in row
    ][:10]
    compositions: dict[str, list[tuple[str, Decimal]]] = {
        GOVERNMENT_BOND_FUND: [
            (make_isin(country, 900_000 + list(COUNTRIES).index(country)), Decimal(pct))
            for country, pct in (("DE", "40"), ("FR", "35"), ("NL", "25"))
        ]
    }
    tobacco = share_of.get("CO00011")
    if clean:
        compositions[WORLD_FUND] = _equal_weights(clean, Decimal(100))
    if clean and tobacco:
        rest = Decimal(100) - _TOBACCO_IN_EUROPE_FUND_PCT
        compositions[EUROPE_FUND] = [
            (tobacco, _TOBACCO_IN_EUROPE_FUND_PCT),
            *_equal_weights(clean[:9], rest),
        ]
    for fund, parts in compositions.items():
        for holding, weight in parts:
            u.fund_holdings.append(
                {"fund_isin": fund, "holding_ref": holding, "weight_pct": str(weight)}
            )
    u.examples["lifecycle fund"] = WORLD_FUND
    if EUROPE_FUND in compositions:
        u.examples["lifecycle fund holding a tobacco producer"] = EUROPE_FUND
    u.examples["lifecycle fund without a composition"] = EMERGING_FUND


def _clean_company_facts(
    issuer_id: str, fresh: str, *, defence: bool = False
) -> Iterator[dict[str, str]]:
    """Facts on which no shipped rule fires (but ``defence.involved`` when ``defence``), from
    the providers each policy reads: a named company outside the generated universe."""
    rows = {
        "controversial_weapons.involved": ("false", "sustainalytics"),
        "civilian_firearms.involved": ("false", "sustainalytics"),
        "revenue_pct.tobacco": ("0", "iss"),
        "defence.involved": (str(defence).lower(), "sustainalytics"),
        **{metric: (value, "sustainalytics") for metric, value in ASR_CLEAR.items()},
    }
    for metric, (value, provider) in rows.items():
        yield {
            "issuer_ref": issuer_id,
            "metric": metric,
            "value": value,
            "as_of": fresh,
            "provider": provider,
        }
    for provider in ("robeco", "sustainalytics"):
        yield {
            "issuer_ref": issuer_id,
            "metric": "norms.status",
            "value": "compliant",
            "as_of": fresh,
            "provider": provider,
        }


def _holding(portfolio_id: str, isin: str, value: int) -> dict[str, str]:
    return {
        "portfolio_id": portfolio_id,
        "isin": isin,
        "quantity": str(value // 100),
        "market_value": str(value),
    }


def _label(n: int) -> str | None:
    return {
        0: "clean company",
        11: "tobacco producer",
        13: "coal miner",
        17: "controversial weapons",
        19: "norm violator under engagement",
        23: "norm violator for over two years",
        29: "band straddling 5 %",
        31: "stale data",
    }.get(n % 40 if n >= 40 else n)


def _company_facts(
    rng: random.Random, issuer_id: str, n: int, fresh: str, stale: str, today: dt.date
) -> Iterator[dict[str, str]]:
    kind = n % 40
    tobacco = "96.4" if kind == 11 else f"{rng.uniform(0, 4):.1f}"
    coal = "55.3" if kind == 13 else f"{rng.uniform(0, 4):.1f}"
    weapons = "true" if kind == 17 else "false"
    status = "non_compliant" if kind in (19, 23) else "compliant"
    as_of = stale if kind == 31 else fresh
    yield {
        "issuer_ref": issuer_id,
        "metric": "revenue_pct.tobacco",
        "value": tobacco,
        "as_of": as_of,
        "provider": "iss",
    }
    yield {
        "issuer_ref": issuer_id,
        "metric": "controversial_weapons.involved",
        "value": weapons,
        "as_of": fresh,
        "provider": "sustainalytics",
    }
    yield {
        "issuer_ref": issuer_id,
        "metric": "defence.involved",
        "value": "true" if kind in (17, 37) else "false",
        "as_of": fresh,
        "provider": "sustainalytics",
    }
    yield {
        "issuer_ref": issuer_id,
        "metric": "civilian_firearms.involved",
        "value": "false",
        "as_of": fresh,
        "provider": "sustainalytics",
    }
    for metric, value in ASR_CLEAR.items():  # a.s.r.'s own criteria (seed 001): all clear
        yield {
            "issuer_ref": issuer_id,
            "metric": metric,
            "value": value,
            "as_of": fresh,
            "provider": "sustainalytics",
        }
    for provider in ("robeco", "sustainalytics"):
        yield {
            "issuer_ref": issuer_id,
            "metric": "norms.status",
            "value": status,
            "as_of": fresh,
            "provider": provider,
        }
    if status == "non_compliant":
        years = 3 if kind == 23 else 1
        since = DurationSpec(years=years).before(today).isoformat()  # the policies' calendar
        yield {
            "issuer_ref": issuer_id,
            "metric": "norms.non_compliant_since",
            "value": since,
            "as_of": fresh,
            "provider": "robeco",
        }
    del coal  # coal comes from MSCI (see _msci_row)


MSCI_REVENUE_COLUMNS = (
    "TOB_MAX_REV_PCT",
    "THERMAL_COAL_MAX_REV_PCT",
    "GENERAT_MAX_REV_THERMAL_COAL",
    "UNCONV_OIL_GAS_MAX_REV_PCT",
    "ARCTIC_OIL_MAX_REV_PCT",
    "ARCTIC_GAS_MAX_REV_PCT",
)


def _msci_row(rng: random.Random, n: int, isin: str, country: str) -> dict[str, str]:
    kind = n % 40
    return {
        "ISSUERID": f"IID{n:012d}",
        "ISSUER_NAME": f"COMPANY {n}",
        "ISSUER_ISIN": isin,
        "ISSUER_CNTRY_DOMICILE": country,
        "CWEAP_TIE": "Yes" if kind == 17 else "No",
        "TOB_MAX_REV_PCT": "96.4" if kind == 11 else "0",
        "THERMAL_COAL_MAX_REV_PCT": "55.3" if kind == 13 else f"{rng.uniform(0, 4):.1f}",
        "GENERAT_MAX_REV_THERMAL_COAL": f"{rng.uniform(0, 4):.1f}",
        "UNCONV_OIL_GAS_MAX_REV_PCT": "5-9.9" if kind == 29 else f"{rng.uniform(0, 4):.1f}",
        "ARCTIC_OIL_MAX_REV_PCT": "0",
        "ARCTIC_GAS_MAX_REV_PCT": "0",
        "UNGC_COMPLIANCE": "Fail" if kind in (19, 23) else "Pass",
    }


# The columns of the issuers file the demo writes (the `issuers` kind's, in this order).
ISSUER_COLUMNS = [
    "issuer_id",
    "name",
    "kind",
    "country",
    "lei",
    "parent_issuer_id",
    "parent_control_pct",
    "state_owner_country",
    "state_owner_pct",
    "msci_issuer_id",
    "sustainalytics_entity_id",
]


def _csv(rows: list[dict[str, str]], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


async def _load(
    session: AsyncSession, kind: DatasetKind, content: bytes, name: str, **options: object
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield content

    upload = await datasets.spool(chunks(), f"demo:{name}")
    try:
        await datasets.load_dataset(
            session,
            LOADER,
            kind,
            upload,
            provider=options.get("provider"),  # type: ignore[arg-type]
            as_of=options.get("as_of"),  # type: ignore[arg-type]
        )
    finally:
        upload.discard()


async def load_rows(
    session: AsyncSession,
    kind: DatasetKind,
    rows: list[dict[str, str]],
    columns: list[str],
    name: str,
    **options: object,
) -> None:
    """Load ``rows`` as a CSV file of ``kind`` through the real loader (as a data steward would:
    a dataset with provenance); for benchmarks and scripts building on the demo."""
    await _load(session, kind, _csv(rows, columns), name, **options)


async def demo_loaded(session: AsyncSession) -> bool:
    found = await session.execute(select(Dataset.id).where(Dataset.loaded_by == LOADER.name))
    return found.first() is not None


async def load_demo(
    session: AsyncSession, companies: int = 3000, *, extra_bonds: int = 0
) -> dict[str, str]:
    """Approve the shipped policies and load the sample universe (once). Returns example ISINs."""
    universe = generate(companies, extra_bonds=extra_bonds)
    if await demo_loaded(session):
        return universe.examples
    for key in SHIPPED_POLICIES:
        content = (REPO_ROOT / "policies" / f"{key}.yaml").read_bytes()
        created = await policies.load_policy_file(session, content, "yaml", AUTHOR)
        await policies.approve(session, key, created.version.version, COMMITTEE)
    today = utcnow().date()
    fresh = today - dt.timedelta(days=45)
    await _load(
        session,
        DatasetKind.issuers,
        _csv(universe.issuers, ISSUER_COLUMNS),
        "issuers.csv",
    )
    await _load(
        session,
        DatasetKind.instruments,
        _csv(
            universe.instruments,
            [
                "isin",
                "issuer_id",
                "asset_class",
                "underlying_isin",
                "name",
            ],
        ),
        "instruments.csv",
    )
    for provider in ("iss", "sustainalytics", "robeco"):
        rows = [r for r in universe.facts if r["provider"] == provider]
        await _load(
            session,
            DatasetKind.facts,
            _csv(rows, ["issuer_ref", "metric", "value", "as_of"]),
            f"facts-{provider}.csv",
            provider=provider,
        )
    await _load(
        session,
        DatasetKind.msci_esg,
        _csv(universe.msci, list(universe.msci[0])),
        "msci.csv",
        as_of=fresh,
    )
    fh = [
        {
            "Country/Territory": c,
            "C/T": "c",
            "Edition": str(today.year),
            "Status": v[0],
            "PR rating": str(v[1]),
            "CL rating": str(v[2]),
        }
        for c, v in COUNTRIES.items()
    ]
    await _load(session, DatasetKind.freedom_house, _csv(fh, list(fh[0])), "fiw.csv", as_of=fresh)
    ituc = [{"country": c, "rating": v[3]} for c, v in COUNTRIES.items()]
    await _load(
        session, DatasetKind.ituc, _csv(ituc, ["country", "rating"]), "ituc.csv", as_of=fresh
    )
    cpi = [{"Country": c, "ISO3": "", "CPI score": str(v[4])} for c, v in COUNTRIES.items()]
    await _load(
        session,
        DatasetKind.ti_cpi,
        _csv(cpi, ["Country", "ISO3", "CPI score"]),
        "cpi.csv",
        as_of=fresh,
    )
    sanctions = [
        {
            "issuer_ref": c,
            "metric": "country.sanctions.financial",
            "value": FINANCIAL_SANCTIONS.get(c, "none"),
        }
        for c in COUNTRIES
    ]
    await _load(
        session,
        DatasetKind.facts,
        _csv(sanctions, ["issuer_ref", "metric", "value"]),
        "financial_sanctions.csv",
        provider="internal",
        as_of=fresh,
    )
    embargoes = [
        {"country": c, "authority": a, "regime": r, "since": s} for c, a, r, s in EMBARGOES
    ]
    await _load(
        session,
        DatasetKind.arms_embargoes,
        _csv(embargoes, ["country", "authority", "regime", "since"]),
        "embargoes.csv",
        as_of=fresh,
    )
    await _load(
        session,
        DatasetKind.list_entries,
        _csv(
            universe.lists,
            [
                "policy",
                "issuer_ref",
                "list",
                "reason",
                "decided_on",
                "reference",
                "expires_on",
            ],
        ),
        "lists.csv",
    )
    await _load(
        session,
        DatasetKind.fund_holdings,
        _csv(universe.fund_holdings, ["fund_isin", "holding_ref", "weight_pct"]),
        "fund_holdings.csv",
        as_of=fresh,
    )
    await _load(
        session,
        DatasetKind.portfolios,
        _csv(
            universe.portfolios,
            ["portfolio_id", "name", "policy", "account", "base_currency", "custodian"],
        ),
        "portfolios.csv",
    )
    await _load(
        session,
        DatasetKind.holdings,
        _csv(universe.holdings, ["portfolio_id", "isin", "quantity", "market_value"]),
        "holdings.csv",
        as_of=today,
    )
    return universe.examples
