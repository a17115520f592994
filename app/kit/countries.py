"""Resolve country names and codes, as data providers write them, to ISO 3166-1.

Country facts (Freedom House, Transparency International CPI, ITUC, arms embargoes) are keyed by
ISO 3166-1 alpha-2 (see ``Subject.country`` in the vocabulary). Providers name countries their
own way ("Congo (Kinshasa)", "Korea, South", "St. Lucia", "Türkiye", ISO3 "KSV"), so every load
goes through ``resolve_country``: codes, the English names pycountry knows, and an explicit alias
table for the rest. Anything else is refused rather than guessed: a wrong country is worse than a
row that a person has to look at.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import pycountry

__all__ = [
    "ALIASES",
    "CODE_ALIASES",
    "KOSOVO",
    "REFUSALS",
    "Country",
    "UnknownCountry",
    "normalise_name",
    "resolve_country",
    "resolve_country_or_none",
]


@dataclass(frozen=True, slots=True)
class Country:
    """A country or territory with an ISO 3166-1 code (or Kosovo's user-assigned XK)."""

    alpha2: str
    alpha3: str
    name: str  # pycountry's common name when it has one ("South Korea"), else its ISO name


_HINT = "use an ISO 3166-1 alpha-2 or alpha-3 code or an English name"


class UnknownCountry(ValueError):
    """The value names no country this module can resolve without guessing."""

    def __init__(self, value: str, reason: str = _HINT) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"unknown country {value!r}: {reason}")


# Kosovo has no ISO 3166-1 code. XK / XKX are the user-assigned codes the EU, IMF, World Bank and
# SWIFT use; pycountry leaves Kosovo out, so it is defined here.
KOSOVO = Country(alpha2="XK", alpha3="XKX", name="Kosovo")
_KOSOVO_NAMES = ("kosovo", "republic of kosovo")

# Codes that are not ISO 3166-1 but that published files use. Keys are upper case.
CODE_ALIASES: dict[str, str] = {
    "KSV": "XK",  # Transparency International's ISO3 column writes Kosovo as KSV
    "UK": "GB",  # exceptionally reserved by ISO for the United Kingdom; common in the wild
}

# Normalised name -> alpha-2, for names pycountry does not know. pycountry already covers many
# provider spellings (e.g. "Czech Republic" is Czechia's official name, "Laos", "Syria", "Iran",
# "South Korea" are common names, "Cote d'Ivoire" matches once accents are stripped, "St. Lucia"
# matches once "St." becomes "saint"), so those are not repeated here.
ALIASES: dict[str, str] = {
    # Freedom House names the two Congos by capital; ITUC puts the form in brackets.
    "congo brazzaville": "CG",
    "congo republic of": "CG",
    "republic of congo": "CG",
    "congo kinshasa": "CD",
    "congo democratic republic of": "CD",
    "democratic republic of congo": "CD",
    "dr congo": "CD",
    "drc": "CD",  # SIPRI arms-embargo archive
    "korea north": "KP",
    "korea south": "KR",
    "russia": "RU",
    "brunei": "BN",
    "cape verde": "CV",
    "ivory coast": "CI",
    "swaziland": "SZ",  # renamed Eswatini in 2018
    "micronesia": "FM",
    "east timor": "TL",
    "turkey": "TR",  # ISO renamed it Turkiye in 2022; FH and TI still wrote "Turkey"
    "macedonia": "MK",  # renamed North Macedonia in 2019
    "burma": "MM",
    "zaire": "CD",  # renamed 1997, same state and territory (ISO 3166-3 ZRCD)
    "southern rhodesia": "ZW",  # became Zimbabwe in 1980, same territory (ISO 3166-3 RHZW)
    "rhodesia": "ZW",
    "great britain": "GB",
    "uae": "AE",
    "holy see": "VA",
    "vatican": "VA",
    "vatican city": "VA",
    "macau": "MO",
    "palestine": "PS",
    "palestinian territories": "PS",
    "occupied palestinian territory": "PS",
    # Freedom House rates the Gaza Strip and the West Bank as two territories because they are
    # governed by different authorities. ISO 3166-1 has a single code, PS, covering both (West
    # Bank including East Jerusalem, and Gaza), and no code for either part, so both resolve to
    # PS. Consequence for loaders: two FH rows per edition share PS; keep the FH name alongside
    # the code (or decide explicitly which rating wins) rather than letting one overwrite the
    # other.
    "gaza strip": "PS",
    "gaza": "PS",
    "west bank": "PS",
    "west bank and gaza strip": "PS",  # older FH editions' single unit
    "palestinian authority administered territories": "PS",  # older FH editions
    # Historic states that continue as today's state under its code: the Federal Republic
    # absorbed the GDR in 1990 (same state, code DE throughout); the Democratic Republic of
    # Vietnam absorbed the South in 1976 and was renamed; North Yemen's code, capital and
    # continuity carried over to the 1990 Republic of Yemen. FH writes them "Germany, W.",
    # "Vietnam, N.", "Yemen, N.". Their other halves are refused (see REFUSALS), so no edition
    # holds two rated rows for one code.
    "germany w": "DE",
    "west germany": "DE",
    "vietnam n": "VN",
    "north vietnam": "VN",
    "yemen n": "YE",
    "north yemen": "YE",
}

# Reasons given for names that are deliberately not resolved.
_DISSOLVED = (
    "a former state that split into several countries, so no single current code fits; "
    "name the successor country instead"
)
_ABSORBED = (
    "a former state absorbed into its neighbour; its records describe that state, not the "
    "present-day country, so it is not mapped to one"
)
_TERRITORY = (
    "a territory without its own ISO 3166-1 code; it is not mapped to a country because its "
    "status is disputed or it is rated separately from the country it belongs to"
)

# Normalised name -> why it is refused. Freedom House rates these (historic states, and
# territories next to their countries); a precise message saves a person a lookup.
REFUSALS: dict[str, str] = {
    "ussr": _DISSOLVED,
    "soviet union": _DISSOLVED,
    "union of soviet socialist republics": _DISSOLVED,
    "czechoslovakia": _DISSOLVED,
    "yugoslavia": _DISSOLVED,
    "serbia and montenegro": _DISSOLVED,
    "germany e": _ABSORBED,
    "east germany": _ABSORBED,
    "german democratic republic": _ABSORBED,
    "vietnam s": _ABSORBED,
    "south vietnam": _ABSORBED,
    "yemen s": _ABSORBED,
    "south yemen": _ABSORBED,
    "abkhazia": _TERRITORY,
    "chechnya": _TERRITORY,
    "crimea": _TERRITORY,
    "eastern donbas": _TERRITORY,
    "indian kashmir": _TERRITORY,
    "israeli occupied territories": _TERRITORY,  # an FH unit that is not one ISO area
    "kurdistan": _TERRITORY,
    "nagorno karabakh": _TERRITORY,
    "northern cyprus": _TERRITORY,
    "northern ireland": _TERRITORY,
    "pakistani kashmir": _TERRITORY,
    "somaliland": _TERRITORY,
    "south ossetia": _TERRITORY,
    "tibet": _TERRITORY,
    "transnistria": _TERRITORY,
    "west papua": _TERRITORY,
}

# Abbreviations providers use inside names ("St. Lucia", "Central African Rep.").
_TOKEN_EXPANSIONS = {"st": "saint", "rep": "republic", "dem": "democratic"}
_APOSTROPHES = str.maketrans("", "", "'\u2018\u2019\u02bc`\u00b4")
_NON_WORD = re.compile(r"[\W_]+")
_CODE = re.compile(r"[A-Za-z]{2,3}")


def normalise_name(value: str) -> str:
    """Reduce a country name to its lookup key: no accents, case, punctuation or leading "the"."""
    text = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    # Apostrophes vanish rather than split a word, so typographic and ASCII "d'Ivoire" agree.
    text = text.casefold().translate(_APOSTROPHES).replace("&", " and ")
    tokens = [_TOKEN_EXPANSIONS.get(token, token) for token in _NON_WORD.sub(" ", text).split()]
    if tokens[:1] == ["the"]:
        tokens = tokens[1:]
    return " ".join(tokens)


def _keys(value: str) -> list[str]:
    """Lookup keys for a name: as written, and inverted ("Korea, South" as "South Korea")."""
    keys = [normalise_name(value)]
    head, comma, tail = value.partition(",")
    if comma and "," not in tail:
        inverted = normalise_name(f"{tail} {head}")
        if inverted != keys[0]:
            keys.append(inverted)
    return keys


@dataclass(frozen=True)
class _Index:
    by_code: dict[str, Country]
    by_name: dict[str, Country]


def _add(table: dict[str, Country], key: str, country: Country) -> None:
    # Two countries under one key would make resolution depend on iteration order; fail loudly
    # instead (a pycountry upgrade or a careless alias would show up here, and in the tests).
    existing = table.setdefault(key, country)
    if existing != country:
        raise RuntimeError(f"country key {key!r} is ambiguous: {existing} and {country}")


@cache
def _index() -> _Index:
    """Build the code and name tables once, on first use."""
    by_alpha2: dict[str, Country] = {KOSOVO.alpha2: KOSOVO}
    by_code: dict[str, Country] = {KOSOVO.alpha2: KOSOVO, KOSOVO.alpha3: KOSOVO}
    by_name: dict[str, Country] = {}
    for record in pycountry.countries:
        common = getattr(record, "common_name", None)
        country = Country(
            alpha2=str(record.alpha_2), alpha3=str(record.alpha_3), name=str(common or record.name)
        )
        by_alpha2[country.alpha2] = country
        _add(by_code, country.alpha2, country)
        _add(by_code, country.alpha3, country)
        for attribute in ("name", "official_name", "common_name"):
            text = getattr(record, attribute, None)
            if text:
                for key in _keys(str(text)):
                    _add(by_name, key, country)
    for key in _KOSOVO_NAMES:
        _add(by_name, key, KOSOVO)
    for code, alpha2 in CODE_ALIASES.items():
        _add(by_code, code, by_alpha2[alpha2])
    for key, alpha2 in ALIASES.items():
        if normalise_name(key) != key:
            raise RuntimeError(
                f"alias {key!r} is not normalised (expected {normalise_name(key)!r})"
            )
        _add(by_name, key, by_alpha2[alpha2])
    for key in REFUSALS:
        if key in by_name:
            raise RuntimeError(f"refused name {key!r} is also a known country name")
    return _Index(by_code=by_code, by_name=by_name)


def resolve_country(value: str) -> Country:
    """Resolve an ISO 3166-1 alpha-2/alpha-3 code (any case) or an English name to a ``Country``.

    Raises ``UnknownCountry`` for anything else, including historic states that split up or were
    absorbed and territories without their own code.
    """
    index = _index()
    text = value.strip()
    if _CODE.fullmatch(text):
        country = index.by_code.get(text.upper())
        if country is not None:
            return country
    keys = _keys(text)
    for key in keys:
        country = index.by_name.get(key)
        if country is not None:
            return country
    for key in keys:
        if key in REFUSALS:
            raise UnknownCountry(value, f"it is {REFUSALS[key]}")
    raise UnknownCountry(value)


def resolve_country_or_none(value: str | None) -> Country | None:
    """Like ``resolve_country``, but ``None`` for a missing or unknown value."""
    if value is None:
        return None
    try:
        return resolve_country(value)
    except UnknownCountry:
        return None
