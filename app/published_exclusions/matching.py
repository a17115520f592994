"""Company-name matching: published names ("AES Corp/The", "Imperial Tobacco Group Plc.",
"Airbus SE (Former EADS NV)") against our issuers' names. Pure functions, no I/O.

A name is normalised before it is compared: accents folded, case folded, ``&`` read as
``and``, punctuation dropped, and legal forms (Plc, Ltd, Inc, Corp, SA, SE, AG, SpA, Tbk,
PT...) and a leading or trailing "The" taken off both ends. A published name yields several
variants: the name without its parentheses, each parenthesised alias ("(Eletrobras)"; a
"(Former EADS NV)" gives "EADS NV": a former name is how an older issuer record may be named),
and each part of a "/"-joined name ("BHP Group Ltd/BHP Group Plc"). Editorial remarks in
parentheses ("(as spelled in source)") are not aliases.

The confidence is 1.0 when a normalised variant equals the issuer's normalised name; otherwise
rapidfuzz's token_sort_ratio of the two normalised names (0..100, scaled to 0..1 and kept
below 1): the edit similarity of the words in sorted order, so word order does not matter,
"Korea Electric" against "Korea Electric Power Corp" scores 0.82 and "Huidan Energy" against
"Huadian Energy" 0.89, while "Finmeccanica SpA" against "Leonardo SpA" scores 0.3 (a renamed
company needs a person). WRatio and the partial ratios were set aside: they score a short
name inside a long one (an unrelated three-letter name at 0.72, "AES" inside "AES Andes", a
different company, at 0.9). The best variant's score is the candidate's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from rapidfuzz import fuzz, process

# Legal forms and articles taken off either end of a name (lower case, no punctuation).
LEGAL_FORMS = frozenset(
    {
        "ab", "ag", "as", "asa", "bhd", "berhad", "bv", "co", "company", "corp", "corporation",
        "cv", "gmbh", "inc", "incorporated", "kg", "kgaa", "llc", "lp", "ltd", "limited", "nv",
        "oyj", "plc", "pt", "pte", "pty", "sa", "sab", "saa", "sas", "se", "spa", "tbk", "the",
        "ojsc", "pjsc", "jsc", "hf", "kk",
    }
)  # fmt: skip
_PARENTHESES = re.compile(r"\(([^()]*)\)")
_FORMER = re.compile(r"^\s*(?:former(?:ly)?|prev(?:iously)?|ex)\b[\s:.-]*", re.IGNORECASE)
_REMARK = re.compile(r"\b(?:as spelled|source|sic)\b", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^0-9a-z]+")
# Below this a candidate is noise, not a lead worth a steward's time.
MIN_CONFIDENCE = Decimal("0.7")
_ONE = Decimal(1)
_BELOW_ONE = Decimal("0.99")  # a fuzzy match is never as good as an exact one


_DOTTED = re.compile(r"(?<=\b[a-z])\.(?=[a-z]\b)")
# "&" reads "and"; an apostrophe joins ("BJ'S", "McDonald's"), it does not separate.
_SPELLING = str.maketrans({"&": " and ", "'": "", "\u2019": ""})


def normalise(name: str) -> str:
    """A name as compared: folded, ``&`` as "and", no punctuation, no legal form at its ends."""
    folded = name
    if not folded.isascii():  # most names are: skip the decomposition (a universe is large)
        folded = unicodedata.normalize("NFKD", folded)
        folded = "".join(c for c in folded if not unicodedata.combining(c))
    folded = folded.casefold().translate(_SPELLING)
    # "S.p.A.", "N.V.", "Co.,": letters joined by dots are one word once the dots go.
    if "." in folded:
        folded = _DOTTED.sub("", folded)
    words = _NOT_WORD.sub(" ", folded).split()
    while words and words[-1] in LEGAL_FORMS:
        words.pop()
    while words and words[0] in LEGAL_FORMS:
        words.pop(0)
    return " ".join(words)


def variants(published: str) -> list[str]:
    """The normalised names a published name may stand for, the full name first, distinct."""
    found: list[str] = []
    aliases = [
        _FORMER.sub("", alias)
        for alias in _PARENTHESES.findall(published)
        if not _REMARK.search(alias)
    ]
    main = _PARENTHESES.sub(" ", published)
    # "BHP Group Ltd/BHP Group Plc" is two names; "AES Corp/The" one (the part "The" is empty).
    for raw in (*main.split("/"), *aliases):
        name = normalise(raw)
        if name and name not in found:
            found.append(name)
    return found


@dataclass(frozen=True)
class Candidate:
    issuer_id: str
    name: str
    confidence: Decimal  # 0..1, three decimals; 1 only for an exact normalised match
    exact: bool


def _scaled(score: float) -> Decimal:
    value = (Decimal(str(score)) / 100).quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
    return min(value, _BELOW_ONE)


def confidence(published: str, issuer_name: str) -> Decimal:
    """How well a published name matches one issuer's name, 0..1 (1: exact normalised)."""
    target = normalise(issuer_name)
    names = variants(published)
    if not target or not names:
        return Decimal(0)
    if target in names:
        return _ONE
    return max(_scaled(fuzz.token_sort_ratio(name, target)) for name in names)


def candidates(published: str, issuers: Mapping[str, str], limit: int) -> list[Candidate]:
    """The issuers (``issuer_id -> name``) whose names best match a published name, best
    first (ties by issuer id), at most ``limit``, none below ``MIN_CONFIDENCE``."""
    names = variants(published)
    normalised = {issuer_id: normalise(name) for issuer_id, name in issuers.items()}
    best: dict[str, tuple[Decimal, bool]] = {}
    for issuer_id, target in normalised.items():
        if target and target in names:
            best[issuer_id] = (_ONE, True)
    cutoff = float(MIN_CONFIDENCE * 100)
    for name in names:
        # rapidfuzz scores every issuer in C; only those past the cut-off come back.
        for _, score, issuer_id in process.extract(
            name,
            normalised,
            scorer=fuzz.token_sort_ratio,
            processor=None,
            limit=None,
            score_cutoff=cutoff,
        ):
            if issuer_id in best and best[issuer_id][1]:
                continue
            scaled = _scaled(score)
            if issuer_id not in best or scaled > best[issuer_id][0]:
                best[issuer_id] = (scaled, False)
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))
    return [
        Candidate(issuer_id, issuers[issuer_id], score, exact)
        for issuer_id, (score, exact) in ranked[:limit]
    ]
