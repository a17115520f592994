"""Identifier validation, driven by real vectors.

python-stdnum's own test vectors, OFAC's NS-CMIC ISINs (two of which OFAC published with a wrong
check digit) and GLEIF LEIs: excerpts in tests/fixtures/identifiers, and the full files from
../shared/data/real, which CI checks out beside the repo (missing files fail, not skip).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kit.identifiers import (
    ISIN_PREFIXES_BEYOND_STDNUM,
    InvalidIdentifier,
    is_valid_isin,
    normalize_cusip,
    normalize_figi,
    normalize_isin,
    normalize_lei,
    normalize_sedol,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "identifiers"
# The repo is checked out beside shared/ (locally /work/main next to /work/shared, and in CI).
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

NORMALIZERS: dict[str, Callable[[str], str]] = {
    "ISIN": normalize_isin,
    "LEI": normalize_lei,
    "CUSIP": normalize_cusip,
    "SEDOL": normalize_sedol,
    "FIGI": normalize_figi,
}

# The reason phrase each stdnum exception named in the vectors file must produce.
REASONS = {
    "InvalidChecksum": "check digit",
    "InvalidFormat": "it must be",
    "InvalidComponent": "prefix",
}

# SOURCE.txt: OFAC lists these two China Communications Construction ISINs with a wrong check
# digit. They are rejected, not "fixed": an official list with a bad ISIN needs a person.
OFAC_BAD_ISINS = {"CND10002K094", "CND10002G601"}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def real_file(relative: str) -> Path:
    path = REAL / relative
    if not path.is_file():
        pytest.fail(
            f"real data file missing: {path}. The suite expects the shared data set checked out "
            "beside the repo (../shared/data/real); it is part of CI, so this is not skipped."
        )
    return path


def check_vectors(rows: list[dict[str, str]]) -> None:
    """Every vector gets stdnum's verdict, with a reason matching stdnum's exception."""
    wrong = []
    for row in rows:
        normalize = NORMALIZERS[row["scheme"]]
        if row["expected"] == "valid":
            try:
                assert normalize(row["value"]) == row["value"]
            except InvalidIdentifier as error:
                wrong.append((row["scheme"], row["value"], str(error)))
        else:
            with pytest.raises(InvalidIdentifier, match=REASONS[row["exception"]]) as caught:
                normalize(row["value"])
            assert caught.value.scheme == row["scheme"]
            assert caught.value.value == row["value"]
    assert wrong == []


def mutate_check_digit(value: str) -> str:
    """The same identifier with its last (check) digit changed: always invalid."""
    return value[:-1] + str((int(value[-1]) + 1) % 10)


# --- messages and normalisation -----------------------------------------------------------------


MESSAGES = [
    ("ISIN", "US0378331004", "the check digit is wrong"),
    ("ISIN", "US037833100", "it must be 12 characters long, not 11"),
    ("ISIN", "", "it is empty"),
    (
        "ISIN",
        "US-0378331005",
        "it must be a two-letter country code, nine letters or digits and a check digit "
        "(found '-')",
    ),
    (
        "ISIN",
        "ZZ0378331005",
        "its prefix 'ZZ' is not an ISO 3166 country code or another ISIN prefix such as XS, EU "
        "or EZ",
    ),
    ("LEI", "213800KUD8LXJWSQ9D15", "the check digits are wrong"),
    ("LEI", "1", "it must be 20 characters long, not 1"),
    (
        "LEI",
        "213800KUD8LAJWSQ9D1X",
        "it must be 18 letters or digits followed by two check digits",
    ),
    ("CUSIP", "DUS0421CN", "the check digit is wrong"),
    ("CUSIP", "DUS0421C", "it must be 9 characters long, not 8"),
    ("SEDOL", "B15KXQ7", "the check digit is wrong"),
    (
        "SEDOL",
        "BO7MXC9",
        "it must be six letters (not vowels) or digits and a check digit; one that starts with "
        "a digit must be all digits (found 'O')",
    ),
    ("FIGI", "BBG000BLNQ14", "the check digit is wrong"),
    (
        "FIGI",
        "BSG000BLNR71",
        "it starts 'BSG', but a FIGI starts with a two-letter prefix other than BS, BM, GG, GB or "
        "VG (those read as ISIN country codes) followed by 'G'",
    ),
]


@pytest.mark.parametrize(("scheme", "value", "reason"), MESSAGES)
def test_messages_name_the_value_and_the_reason(scheme: str, value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        NORMALIZERS[scheme](value)
    assert str(caught.value) == f"{value!r} is not a valid {scheme}: {reason}"
    assert (caught.value.scheme, caught.value.value, caught.value.reason) == (scheme, value, reason)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("normalize", "value", "compact"),
    [
        (normalize_isin, " us0378331005 ", "US0378331005"),
        (normalize_isin, "US 0378 3310 05", "US0378331005"),
        (normalize_lei, "2138-00KU D8LA JWSQ 9D15", "213800KUD8LAJWSQ9D15"),
        (normalize_lei, "213800kud8lajwsq9d15", "213800KUD8LAJWSQ9D15"),
        (normalize_cusip, "dus0421c5", "DUS0421C5"),
        (normalize_sedol, "b15kxq8", "B15KXQ8"),
        (normalize_figi, "bbg000blnq16", "BBG000BLNQ16"),
    ],
)
def test_returns_the_compact_upper_case_form(
    normalize: Callable[[str], str], value: str, compact: str
) -> None:
    assert normalize(value) == compact


def test_lei_shape_is_checked_not_only_the_mod_97_checksum() -> None:
    # stdnum.lei.validate("1") passes (1 mod 97 == 1); ISO 17442 requires 20 characters.
    with pytest.raises(InvalidIdentifier, match="20 characters"):
        normalize_lei("1")


def test_every_iso_6166_prefix_is_accepted() -> None:
    """ISO 6166:2021: an ISO 3166 country code, or XS (international), EU, EZ (OTC
    derivatives, ANNA DSB), XA-XD (substitute agencies), XF, XK, QS, QT."""
    assert normalize_isin("EZ1MT2VWVH68") == "EZ1MT2VWVH68"  # a DSB-issued OTC derivative
    assert normalize_isin("ez1mt2vwvh68") == "EZ1MT2VWVH68"
    with pytest.raises(InvalidIdentifier, match="the check digit is wrong"):
        normalize_isin("EZ1MT2VWVH69")
    with pytest.raises(InvalidIdentifier, match="12 characters long"):
        normalize_isin("EZ1MT2VWVH6")
    from stdnum import isin as stdnum_isin

    for prefix in ("XS", "EU", "EZ", "XA", "XB", "XC", "XD", "XF", "XK", "QS", "QT", "US", "CN"):
        body = f"{prefix}000000001"
        assert is_valid_isin(body + stdnum_isin.calc_check_digit(body)), prefix
    assert not is_valid_isin("ZZ0000000018")


def test_is_valid_isin() -> None:
    assert is_valid_isin("US0378331005")
    assert is_valid_isin("us0378331005")
    assert not is_valid_isin("US0378331004")
    assert not is_valid_isin("")


# --- fixture excerpts ---------------------------------------------------------------------------


def test_fixture_stdnum_vectors() -> None:
    rows = read_rows(FIXTURES / "stdnum_identifier_vectors.csv")
    assert {row["scheme"] for row in rows} == set(NORMALIZERS)
    assert sum(row["expected"] == "invalid" for row in rows) == 11
    check_vectors(rows)


def test_fixture_vectors_with_a_changed_check_digit_are_rejected() -> None:
    for row in read_rows(FIXTURES / "stdnum_identifier_vectors.csv"):
        if row["expected"] == "valid":
            with pytest.raises(InvalidIdentifier, match="check digit"):
                NORMALIZERS[row["scheme"]](mutate_check_digit(row["value"]))


def test_fixture_ofac_isins() -> None:
    rows = read_rows(FIXTURES / "ofac_ns_cmic_isins.csv")
    assert {row["isin"] for row in rows if not is_valid_isin(row["isin"])} == OFAC_BAD_ISINS
    with pytest.raises(InvalidIdentifier, match="the check digit is wrong"):
        normalize_isin("CND10002K094")


def test_fixture_gleif_leis() -> None:
    rows = read_rows(FIXTURES / "gleif_level1_records.csv")
    assert len(rows) >= 15
    assert all(normalize_lei(row["lei"]) == row["lei"] for row in rows)


# --- the full real files from ../shared ---------------------------------------------------------


def test_real_stdnum_vectors() -> None:
    rows = read_rows(real_file("identifier_test_vectors/stdnum_identifier_vectors.csv"))
    assert len(rows) > 800
    check_vectors(rows)


def test_real_vectors_with_a_changed_check_digit_are_rejected() -> None:
    rows = read_rows(real_file("identifier_test_vectors/stdnum_identifier_vectors.csv"))
    wrong = []
    for row in rows:
        if row["expected"] == "valid":
            mutated = mutate_check_digit(row["value"])
            try:
                NORMALIZERS[row["scheme"]](mutated)
            except InvalidIdentifier as error:
                if not error.reason.startswith("the check digit"):
                    wrong.append((row["scheme"], mutated, error.reason))
            else:
                wrong.append((row["scheme"], mutated, "accepted"))
    assert wrong == []


def test_real_ofac_isins_only_the_two_known_bad_ones_fail() -> None:
    rows = read_rows(real_file("ofac_ns_cmic/ofac_ns_cmic_isins.csv"))
    assert len(rows) == 164
    assert {row["isin"] for row in rows if not is_valid_isin(row["isin"])} == OFAC_BAD_ISINS


def test_real_gleif_leis_are_all_valid() -> None:
    rows = read_rows(real_file("gleif_lei/gleif_level1_records.csv"))
    assert len(rows) == 157
    invalid = []
    for row in rows:
        try:
            normalize_lei(row["lei"])
        except InvalidIdentifier as error:
            invalid.append(str(error))
    assert invalid == []


# The bulk-load fast path must agree with stdnum's own isin.validate on every input.
_ISIN_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@settings(max_examples=3000, deadline=None)
@given(
    prefix=st.sampled_from(["US", "GB", "NL", "XS", "EU", "CN", "ZZ", "QQ", "AA", "KY", "EZ"]),
    body=st.text(alphabet=_ISIN_CHARS, min_size=9, max_size=9),
    check=st.sampled_from("0123456789A"),
    noise=st.sampled_from(["", " ", "lower"]),
)
def test_isin_fast_path_agrees_with_stdnum(prefix: str, body: str, check: str, noise: str) -> None:
    from stdnum import isin as stdnum_isin

    value = prefix + body + check
    given_value = value.lower() if noise == "lower" else f"{noise}{value}{noise}"
    try:
        normalize_isin(given_value)
        accepted = True
    except InvalidIdentifier:
        accepted = False
    # stdnum's answer, but for the ISO 6166 prefixes it does not know yet (EZ): its check digit.
    if prefix in ISIN_PREFIXES_BEYOND_STDNUM:
        expected = stdnum_isin.calc_check_digit(prefix + body) == check
    else:
        expected = stdnum_isin.is_valid(given_value)
    assert accepted == expected


@settings(max_examples=2000, deadline=None)
@given(body=st.text(alphabet=_ISIN_CHARS, min_size=9, max_size=9))
def test_isin_fast_path_accepts_every_valid_isin(body: str) -> None:
    from stdnum import isin as stdnum_isin

    number = "US" + body
    number += stdnum_isin.calc_check_digit(number)
    assert normalize_isin(number) == number
