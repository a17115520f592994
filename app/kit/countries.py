"""Resolve country names and codes, as data providers write them, to ISO 3166-1.

Country facts (Freedom House, Transparency International CPI, ITUC, arms embargoes) are keyed by
ISO 3166-1 alpha-2 (see ``Subject.country`` in the vocabulary). Providers name countries their
own way ("Congo (Kinshasa)", "Korea, Dem. People's Rep.", "Myanmar/Burma", "DPRK", ISO3 "KSV"),
so every load goes through ``resolve_country``:

1. codes (alpha-2, alpha-3, any case) through pycountry, plus Kosovo and two codes in the wild;
2. a small table of names refused on purpose (historic states, territories) and of overrides
   where the product decides differently from, or goes beyond, the name library;
3. country_converter, a maintained table of name variants (UN, EU, World Bank, FAO, ...) as
   regular expressions. It needs pandas, so it is imported on the first name that is not a code
   (never for checks, which carry codes), and every answer is cached.

Anything else is refused rather than guessed: a wrong country is worse than a row that a person
has to look at.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import pycountry

__all__ = [
    "CODE_ALIASES",
    "KOSOVO",
    "OVERRIDES",
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

# Codes that are not ISO 3166-1 but that published files use. Keys are upper case.
CODE_ALIASES: dict[str, str] = {
    "KSV": "XK",  # Transparency International's ISO3 column writes Kosovo as KSV
    "UK": "GB",  # exceptionally reserved by ISO for the United Kingdom; common in the wild
}

# Normalised name -> alpha-2: the few names the name library (country_converter, see
# ``_library_alpha2``) gets wrong or does not know, and the product's own decisions. Everything
# else a publisher writes ("Myanmar/Burma", "DPRK", "Korea, Dem. People's Rep.", "Lao PDR",
# "Congo (Kinshasa)", "Swaziland", "Zaire", ...) is the library's job; add a line here only with
# a test showing the library's answer, and say why.
OVERRIDES: dict[str, str] = {
    # Product decision (the library agrees today; the entries pin it): Freedom House rates the
    # Gaza Strip and the West Bank as two territories because they are governed by different
    # authorities. ISO 3166-1 has a single code, PS, covering both (West Bank including East
    # Jerusalem, and Gaza), and no code for either part, so both resolve to PS rather than being
    # refused as territories. Consequence for loaders: two FH rows per edition share PS; keep the
    # FH name alongside the code (or decide explicitly which rating wins) rather than letting one
    # overwrite the other.
    "gaza strip": "PS",
    "west bank": "PS",
    "west bank and gaza strip": "PS",  # older FH editions' single unit
    "palestinian authority administered territories": "PS",  # older FH editions
    # Historic states that continue as today's state under its code: the Federal Republic
    # absorbed the GDR in 1990 (same state, code DE throughout); the Democratic Republic of
    # Vietnam absorbed the South in 1976 and was renamed; North Yemen's code, capital and
    # continuity carried over to the 1990 Republic of Yemen. FH writes them "Germany, W.",
    # "Vietnam, N.", "Yemen, N.". The library does not know the German and Vietnamese ones; it
    # maps every Yemen to YE, "Yemen, S." included, so the Yemen entries pin the decision. Their
    # other halves are refused (see REFUSALS), so no edition holds two rated rows for one code.
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
# territories next to their countries); a precise message saves a person a lookup. They are
# checked before the name library, which maps several of them to a country on purpose for its
# own users and wrongly for ours: "Czechoslovakia" to CZ, "Yemen, S." to YE, "Somaliland" to SO,
# "Northern Cyprus" to CY, "Indian/Pakistani Kashmir" to IN/PK, "Israeli-Occupied Territories"
# to IL.
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
    by_code: dict[str, Country]  # alpha-2, alpha-3 and CODE_ALIASES, upper case
    by_alpha2: dict[str, Country]


def _add(table: dict[str, Country], key: str, country: Country) -> None:
    # Two countries under one key would make resolution depend on iteration order; fail loudly
    # instead (a pycountry upgrade would show up here, and in the tests).
    existing = table.setdefault(key, country)
    if existing != country:
        raise RuntimeError(f"country key {key!r} is ambiguous: {existing} and {country}")


@cache
def _index() -> _Index:
    """Build the code tables once, on first use."""
    by_alpha2: dict[str, Country] = {KOSOVO.alpha2: KOSOVO}
    by_code: dict[str, Country] = {KOSOVO.alpha2: KOSOVO, KOSOVO.alpha3: KOSOVO}
    for record in pycountry.countries:
        common = getattr(record, "common_name", None)
        country = Country(
            alpha2=str(record.alpha_2), alpha3=str(record.alpha_3), name=str(common or record.name)
        )
        by_alpha2[country.alpha2] = country
        _add(by_code, country.alpha2, country)
        _add(by_code, country.alpha3, country)
    for code, alpha2 in CODE_ALIASES.items():
        _add(by_code, code, by_alpha2[alpha2])
    for key, alpha2 in OVERRIDES.items():
        if normalise_name(key) != key:
            raise RuntimeError(
                f"override {key!r} is not normalised (expected {normalise_name(key)!r})"
            )
        if alpha2 not in by_alpha2:
            raise RuntimeError(f"override {key!r} names no country: {alpha2!r}")
    for key in REFUSALS:
        if key in OVERRIDES:
            raise RuntimeError(f"refused name {key!r} is also an override")
    return _Index(by_code=by_code, by_alpha2=by_alpha2)


# Longest name handed to the name library (the longest real one, "Saint Vincent and the
# Grenadines" or "United Kingdom of Great Britain and Northern Ireland", is far shorter): its
# regular expressions run over the whole text, so a bound keeps a hostile cell cheap.
_MAX_NAME = 100
# The characters publishers use in country names. The library's regular expressions search
# rather than match whole names ("Germany!!x" would be Germany), so text with anything else is
# refused before it gets there.
_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ .,'\u2018\u2019\u02bc()/&-])*")
_NOT_FOUND = "\x00not found"


@cache
def _converter() -> Any:
    """country_converter's table, loaded on the first name that is not a code (imports pandas)."""
    import logging

    import country_converter

    # It logs a warning for every name it does not find; an unknown name is ours to report.
    logging.getLogger("country_converter").setLevel(logging.ERROR)
    return country_converter.CountryConverter()


@lru_cache(maxsize=4096)
def _library_alpha2(text: str) -> str | None:
    """The alpha-2 country_converter gives for ``text``, or None if none or several match."""
    found = _converter().convert(
        text, src="regex", to="ISO2", enforce_list=True, not_found=_NOT_FOUND
    )
    codes = {str(code) for code in found[0]} - {_NOT_FOUND}
    return codes.pop() if len(codes) == 1 else None


def resolve_country(value: str) -> Country:
    """Resolve an ISO 3166-1 alpha-2/alpha-3 code (any case) or an English name to a ``Country``.

    Raises ``UnknownCountry`` for anything else, including historic states that split up or were
    absorbed and territories without their own code.
    """
    index = _index()
    text = " ".join(value.split())
    if _CODE.fullmatch(text):
        country = index.by_code.get(text.upper())
        if country is not None:
            return country
    if not text or len(text) > _MAX_NAME:
        raise UnknownCountry(value)
    keys = _keys(text)
    for key in keys:
        if key in REFUSALS:
            raise UnknownCountry(value, f"it is {REFUSALS[key]}")
        if key in OVERRIDES:
            return index.by_alpha2[OVERRIDES[key]]
    if _NAME.fullmatch(text):
        # As written first (the library knows "Korea, Dem. People's Rep."), then the lookup keys
        # ("Sudan, South" as "south sudan", "St." as "saint").
        for candidate in (text, *keys):
            alpha2 = _library_alpha2(candidate)
            if alpha2 is not None and alpha2 in index.by_alpha2:
                return index.by_alpha2[alpha2]
    raise UnknownCountry(value)


def resolve_country_or_none(value: str | None) -> Country | None:
    """Like ``resolve_country``, but ``None`` for a missing or unknown value."""
    if value is None:
        return None
    try:
        return resolve_country(value)
    except UnknownCountry:
        return None
