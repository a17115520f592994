"""Validate and normalise security and entity identifiers: ISIN, LEI, CUSIP, SEDOL, FIGI.

The arithmetic (check digits, country prefixes) is python-stdnum's; nothing here recomputes a
check digit. What this module adds is one shape for every scheme (compact, upper-case form or
``InvalidIdentifier``) and messages a person can act on, instead of stdnum's generic
"The number has an invalid format."
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from stdnum import cusip, figi, isin, lei, luhn
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)
from stdnum.gb import sedol

__all__ = [
    "SECURITY_SCHEMES",
    "InvalidIdentifier",
    "SecurityId",
    "SecurityScheme",
    "UnrecognisedSecurity",
    "figi_shaped",
    "is_valid_isin",
    "normalize_cusip",
    "normalize_figi",
    "normalize_isin",
    "normalize_lei",
    "normalize_sedol",
    "security_ids",
]


class InvalidIdentifier(ValueError):
    """The value is not a valid identifier of the named scheme; the message says why."""

    def __init__(self, scheme: str, value: str, reason: str) -> None:
        self.scheme = scheme
        self.value = value
        self.reason = reason
        super().__init__(f"{value!r} is not a valid {scheme}: {reason}")


@dataclass(frozen=True)
class _Scheme:
    name: str
    length: int
    validate: Callable[[str], str]  # stdnum's: returns the compact form or raises
    compact: Callable[[str], str]
    allowed: str  # characters the scheme uses, to point at the offending ones
    layout: str  # what a valid value looks like, for format errors
    # Explains an InvalidComponent, given the compact value.
    component: Callable[[str], str] = lambda _compact: "part of it is not valid"
    checksum: str = "the check digit is wrong"


_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LEI_SHAPE = re.compile(r"[0-9A-Z]{18}[0-9]{2}")


def _validate_lei(number: str) -> str:
    # stdnum.lei only runs ISO 7064 mod 97-10, which "1" passes; ISO 17442 also fixes the shape
    # (18 letters or digits, then two check digits), so check that before the checksum.
    compact = lei.compact(number)
    if not all(ch in _DIGITS + _LETTERS for ch in compact):
        raise InvalidFormat()
    if len(compact) != 20:
        raise InvalidLength()
    if not _LEI_SHAPE.fullmatch(compact):
        raise InvalidFormat()
    return str(lei.validate(compact))


# ISO 6166 prefixes python-stdnum (2.2) does not know yet. stdnum has the ISO 3166 country
# codes and the other non-country prefixes (XS international securities, EU, XA-XD substitute
# agencies, XF, XK, QS, QT).
ISIN_PREFIXES_BEYOND_STDNUM = {
    # OTC derivatives, allocated by ANNA's Derivatives Service Bureau (ISO 6166:2021).
    "EZ": "OTC derivative",
}


def _validate_isin(number: str) -> str:
    """stdnum's ``isin.validate``, also accepting ``ISIN_PREFIXES_BEYOND_STDNUM``: for those,
    the same shape and stdnum's own check digit."""
    compact = str(isin.compact(number))
    if compact[:2] not in ISIN_PREFIXES_BEYOND_STDNUM:
        return str(isin.validate(compact))
    if len(compact) != 12:
        raise InvalidLength()
    if not _ISIN_SHAPE.fullmatch(compact):
        raise InvalidFormat()
    if isin.calc_check_digit(compact[:-1]) != compact[-1]:
        raise InvalidChecksum()
    return compact


_ISIN = _Scheme(
    name="ISIN",
    length=12,
    validate=_validate_isin,
    compact=isin.compact,
    allowed=_DIGITS + _LETTERS,
    layout="a two-letter country code, nine letters or digits and a check digit",
    component=lambda compact: (
        f"its prefix {compact[:2]!r} is not an ISO 3166 country code or another ISIN prefix "
        "such as XS, EU or EZ"
    ),
)
_LEI = _Scheme(
    name="LEI",
    length=20,
    validate=_validate_lei,
    compact=lei.compact,
    allowed=_DIGITS + _LETTERS,
    layout="18 letters or digits followed by two check digits",
    checksum="the check digits are wrong",
)
_CUSIP = _Scheme(
    name="CUSIP",
    length=9,
    validate=cusip.validate,
    compact=cusip.compact,
    allowed=_DIGITS + _LETTERS + "*@#",
    layout="eight letters or digits and a check digit",
)
_SEDOL = _Scheme(
    name="SEDOL",
    length=7,
    validate=sedol.validate,
    compact=sedol.compact,
    allowed=_DIGITS + "BCDFGHJKLMNPQRSTVWXYZ",
    layout=(
        "six letters (not vowels) or digits and a check digit; one that starts with a digit "
        "must be all digits"
    ),
)
_FIGI = _Scheme(
    name="FIGI",
    length=12,
    validate=figi.validate,
    compact=figi.compact,
    allowed=_DIGITS + "BCDFGHJKLMNPQRSTVWXYZ",
    layout="two letters, 'G', eight letters or digits and a check digit, with no vowels",
    component=lambda compact: (
        f"it starts {compact[:3]!r}, but a FIGI starts with a two-letter prefix other than BS, "
        "BM, GG, GB or VG (those read as ISIN country codes) followed by 'G'"
    ),
)


def _reason(scheme: _Scheme, compact: str, error: ValidationError) -> str:
    """Turn stdnum's exception into a phrase (InvalidLength first: it is an InvalidFormat)."""
    if not compact:
        return "it is empty"
    if isinstance(error, InvalidLength):
        return f"it must be {scheme.length} characters long, not {len(compact)}"
    if isinstance(error, InvalidFormat):
        stray = sorted({ch for ch in compact if ch not in scheme.allowed})
        found = f" (found {', '.join(repr(ch) for ch in stray)})" if stray else ""
        return f"it must be {scheme.layout}{found}"
    if isinstance(error, InvalidComponent):
        return scheme.component(compact)
    if isinstance(error, InvalidChecksum):
        return scheme.checksum
    return "it is not valid"


def _normalize(scheme: _Scheme, value: str) -> str:
    try:
        return str(scheme.validate(value))
    except ValidationError as error:
        reason = _reason(scheme, scheme.compact(value), error)
        raise InvalidIdentifier(scheme.name, value, reason) from error


_ISIN_SHAPE = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")
# ISIN check digits are Luhn over the number with letters spelled as 10..35.
_ISIN_AS_DIGITS = str.maketrans({c: str(i) for i, c in enumerate(_DIGITS + _LETTERS)})


@lru_cache(maxsize=1024)
def _isin_prefix_known(prefix: str) -> bool:
    """Whether ``_validate_isin`` accepts a two-letter ISIN prefix (asked once per prefix)."""
    body = f"{prefix}000000000"
    try:
        _validate_isin(body + isin.calc_check_digit(body))
    except ValidationError:
        return False
    return True


def normalize_isin(value: str) -> str:
    """Return the ISIN in compact upper-case form, or raise ``InvalidIdentifier``.

    Every prefix ISO 6166 allows: the ISO 3166 country codes and the others stdnum knows, and
    ``ISIN_PREFIXES_BEYOND_STDNUM`` (EZ, OTC derivatives). Bulk loads validate millions of
    ISINs, and stdnum's ``isin.validate`` spends ~20 us on each. The fast path asks the same
    three questions more cheaply (stdnum's Luhn routine over the digit-spelled number, the
    prefix once per prefix); anything it does not accept goes through the full validation, so
    every error message is the same.
    """
    compact = value.strip().upper()
    if (
        _ISIN_SHAPE.fullmatch(compact)
        and _isin_prefix_known(compact[:2])
        and luhn.is_valid(compact.translate(_ISIN_AS_DIGITS))
    ):
        return compact
    return _normalize(_ISIN, value)


def normalize_lei(value: str) -> str:
    """Return the LEI (ISO 17442) in compact upper-case form, or raise ``InvalidIdentifier``."""
    return _normalize(_LEI, value)


def normalize_cusip(value: str) -> str:
    """Return the CUSIP in compact upper-case form, or raise ``InvalidIdentifier``."""
    return _normalize(_CUSIP, value)


def normalize_sedol(value: str) -> str:
    """Return the SEDOL in compact upper-case form, or raise ``InvalidIdentifier``."""
    return _normalize(_SEDOL, value)


def normalize_figi(value: str) -> str:
    """Return the FIGI in compact upper-case form, or raise ``InvalidIdentifier``."""
    return _normalize(_FIGI, value)


def is_valid_isin(value: str) -> bool:
    """Whether ``normalize_isin`` would accept the value."""
    try:
        normalize_isin(value)
    except InvalidIdentifier:
        return False
    return True


# ------------------------------------------------------------- an instrument by any identifier

SecurityScheme = Literal["ISIN", "CUSIP", "SEDOL", "FIGI"]
SECURITY_SCHEMES: tuple[SecurityScheme, ...] = ("ISIN", "CUSIP", "SEDOL", "FIGI")


@dataclass(frozen=True, slots=True)
class SecurityId:
    """An instrument identifier recognised under one scheme, in compact upper-case form."""

    scheme: SecurityScheme
    value: str


class UnrecognisedSecurity(InvalidIdentifier):
    """Valid under none of ISIN, CUSIP, SEDOL, FIGI; the message names each scheme tried and
    why it failed (only the schemes of the value's length, when there are any)."""

    def __init__(self, value: str, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        tried = "; ".join(
            why if name == "any of them" else f"as {'an' if name == 'ISIN' else 'a'} {name}, {why}"
            for name, why in reasons.items()
        )
        ValueError.__init__(self, f"{value!r} is not a valid ISIN, CUSIP, SEDOL or FIGI ({tried})")
        self.scheme = "ISIN, CUSIP, SEDOL or FIGI"
        self.value = value
        self.reason = tried


_SECURITY = ((_ISIN, "ISIN"), (_CUSIP, "CUSIP"), (_SEDOL, "SEDOL"), (_FIGI, "FIGI"))


def security_ids(value: str) -> tuple[SecurityId, ...]:
    """Every scheme ``value`` is valid under (python-stdnum's validators), ISIN first; raise
    ``UnrecognisedSecurity`` when none.

    The lengths differ (ISIN and FIGI 12, CUSIP 9, SEDOL 7) except ISIN and FIGI. stdnum's FIGI
    validator already refuses the prefixes that read as ISIN country codes (BS, BM, GG, GB,
    VG), so a string valid as both is rare (a country code such as BB, then 'G', no vowels, and
    both check digits right); then both are returned and the caller resolves them against the
    data (``app.screening.service``): never a guess.
    """
    compact = value.strip().upper()
    if len(compact) == 12 and compact[2] != "G":  # the hot path: an ISIN, never a FIGI
        try:
            return (SecurityId("ISIN", normalize_isin(value)),)
        except InvalidIdentifier as exc:
            raise UnrecognisedSecurity(value, {"ISIN": exc.reason}) from exc
    found: list[SecurityId] = []
    reasons: dict[str, str] = {}
    for scheme, name in _SECURITY:
        if len(scheme.compact(value)) != scheme.length:
            continue  # only the schemes of the value's length are tried (and named)
        try:
            normalized = normalize_isin(value) if scheme is _ISIN else _normalize(scheme, value)
        except InvalidIdentifier as exc:
            reasons[name] = exc.reason
            continue
        found.append(SecurityId(name, normalized))  # type: ignore[arg-type]
    if found:
        return tuple(found)
    if not compact:
        reasons = {"any of them": "it is empty"}
    elif not reasons:
        reasons = {
            "any of them": f"it is {len(compact)} characters long: an ISIN or a FIGI has 12, "
            "a CUSIP 9, a SEDOL 7"
        }
    raise UnrecognisedSecurity(value, reasons)


def figi_shaped(value: str) -> bool:
    """Cheap pre-test: could ``value`` (an ISIN of the universe, already valid) also be a FIGI?
    Only then is stdnum's FIGI validation worth running (a FIGI's third character is 'G')."""
    return len(value) == 12 and value[2] == "G"
