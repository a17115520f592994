"""Custodian lists through the HTTP API, with data loaded through the dataset endpoints and the
shipped policies approved through the policy endpoints (four eyes). Both dialects."""

import asyncio
import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.auth.scopes import Scope
from app.kit.time import utcnow
from app.lists import formats, service
from app.lists.formats import csv_text
from app.lists.service import ListRow
from app.lists.tokens import ListToken
from app.screening.index import VerdictIndex
from app.screening.repository import ScreeningRepository
from tests.conftest import MakeKey, bearer
from tests.support.calendar import today, years_before
from tests.support.checks import FRESH, Desk, open_desk
from tests.support.databases import DIALECTS
from tests.support.datasets import FIXTURES, load_ok
from tests.support.index import demo_database, running
from tests.support.policies import approve, post_document, rule, shipped
from tests.support.problems import assert_problem

INSTRUMENT_HEADER = [
    "issuer_id",
    "name",
    "country",
    "lei",
    "verdict",
    "rule_ids",
    "since",
    "isin",
    "asset_class",
]
PMI_EQUITY = "US7181721090"
SHELL_EQUITY = "GB00BP6MXD84"
SHENHUA_EQUITY = "CNE1000002R0"
BATS_EQUITY = "GB0002875804"
ANGLO_EQUITY = "GB00B1XZS820"
PETROCHINA_H = "CNE1000003W8"
PETROCHINA_ADR = "US71646E1001"


class Custodian:
    """A custodian pulling lists, with the desk that loads data and checks."""

    def __init__(self, desk: Desk, reader: str) -> None:
        self.desk = desk
        self.client = desk.client
        self.reader = reader

    async def get(self, policy: str = "rpf", **params: str) -> httpx.Response:
        return await self.client.get(
            f"/v1/lists/{policy}", params=params, headers=bearer(self.reader)
        )

    async def csv(self, policy: str = "rpf", **params: str) -> tuple[list[dict[str, str]], str]:
        """The list's rows (header checked and dropped) and its token."""
        response = await self.get(policy, format="csv", **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.text.endswith("\r\n")
        reader = csv.reader(io.StringIO(response.text, newline=""))
        header = next(reader)
        rows = [dict(zip(header, values, strict=True)) for values in reader]
        return rows, token_of(response)

    async def ndjson(self, policy: str = "rpf", **params: str) -> list[dict[str, Any]]:
        response = await self.get(policy, format="ndjson", **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.text.splitlines()]


def token_of(response: httpx.Response) -> str:
    token = response.headers["x-list-token"]
    assert response.headers["etag"] == f'"{token}"'
    return token


def by_key(rows: list[dict[str, Any]], key: str = "isin") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


@pytest.fixture
async def desk(client: httpx.AsyncClient, make_key: MakeKey) -> Desk:
    return await open_desk(client, make_key)


@pytest.fixture
async def custodian(desk: Desk, make_key: MakeKey) -> Custodian:
    """PMI excluded (tobacco), SHELL on watch (norms), SHENHUA excluded (exclusion list entry and
    tobacco), PETROCHINA on watch (dialogue list entry), BATS and ANGLO allowed; the rest
    unknown (no data), which is on no list."""
    for issuer in ("PMI", "SHELL", "SHENHUA", "PETROCHINA", "BATS", "ANGLO"):
        overrides = {
            "PMI": {"revenue_pct__tobacco": "96.4"},
            "SHELL": {"norms__status": "non_compliant"},
            "SHENHUA": {"revenue_pct__tobacco": "60"},
        }.get(issuer, {})
        await desk.clean(issuer, **overrides)
    # Flagged for a year (a known start: under two years, so engagement, not exclusion).
    await desk.facts(
        "SHELL", "robeco", {"norms.non_compliant_since": years_before(today(), 1).isoformat()}
    )
    await load_ok(desk.client, desk.steward, "list-entries", FIXTURES / "list_entries.csv")
    return Custodian(desk, await make_key(Scope.lists_read, name="custodian"))


async def test_instrument_list_as_csv(custodian: Custodian) -> None:
    response = await custodian.get()  # the defaults: format=csv, level=instrument
    assert response.status_code == 200, response.text
    assert response.text.startswith(",".join(INSTRUMENT_HEADER) + "\r\n")
    rows, _ = await custodian.csv(level="instrument")
    assert [r["isin"] for r in rows] == sorted(
        [PMI_EQUITY, SHELL_EQUITY, SHENHUA_EQUITY, PETROCHINA_H, PETROCHINA_ADR]
    )
    listed = by_key(rows)
    assert listed[PMI_EQUITY] == {
        "issuer_id": "PMI",
        "name": "Philip Morris International Inc.",
        "country": "US",
        "lei": "",
        "verdict": "excluded",
        "rule_ids": "tobacco",
        "since": FRESH,
        "isin": PMI_EQUITY,
        "asset_class": "equity",
    }
    shell = listed[SHELL_EQUITY]
    assert (shell["verdict"], shell["rule_ids"], shell["since"]) == (
        "watch",
        "norms-engagement",
        FRESH,
    )
    assert shell["lei"] == "21380068P1DRHMJ8KU70"
    # Two reasons carry the exclusion: since is the earlier (the board's decision).
    shenhua = listed[SHENHUA_EQUITY]
    assert (shenhua["verdict"], shenhua["rule_ids"], shenhua["since"]) == (
        "excluded",
        "list:exclusion tobacco",
        "2024-03-01",
    )
    # The ADR takes its underlying's watch (a dialogue entry decided 2025-03-01).
    for isin in (PETROCHINA_H, PETROCHINA_ADR):
        assert (listed[isin]["verdict"], listed[isin]["rule_ids"], listed[isin]["since"]) == (
            "watch",
            "list:dialogue",
            "2025-03-01",
        )


async def test_issuer_list_as_ndjson_and_json(custodian: Custodian) -> None:
    rows = await custodian.ndjson(level="issuer")
    assert [r["issuer_id"] for r in rows] == ["PETROCHINA", "PMI", "SHELL", "SHENHUA"]
    assert rows[1] == {
        "issuer_id": "PMI",
        "name": "Philip Morris International Inc.",
        "country": "US",
        "lei": None,
        "verdict": "excluded",
        "rule_ids": ["tobacco"],
        "since": FRESH,
    }
    assert rows[3]["rule_ids"] == ["list:exclusion", "tobacco"]

    response = await custodian.get(format="json", level="issuer")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["rows"] == rows
    assert document["level"] == "issuer"
    assert document["policy"]["key"] == "rpf"
    assert document["policy"]["version"] == 1
    assert document["token"] == token_of(response)
    assert document["since"] is None
    token = ListToken.decode(document["token"])
    assert (token.policy_key, token.policy_version, token.day) == ("rpf", 1, today())
    assert token.data_version == document["data_version"]

    dk = await custodian.get("dk-pension", format="json", level="issuer")
    assert [(r["issuer_id"], r["rule_ids"]) for r in dk.json()["rows"]] == [
        ("SHELL", ["norms-focus"])
    ]


async def test_a_rule_restricted_to_an_asset_class_lists_the_issuer(
    custodian: Custodian, make_key: MakeKey
) -> None:
    # Tobacco bonds only: PMI (shares only) is listed at issuer level, none of its instruments.
    author = await make_key(Scope.policies_write, name="bonds-author")
    approver = await make_key(Scope.policies_approve, name="bonds-approver")
    document = {
        "key": "bonds",
        "title": "Bond mandate",
        "rules": [
            rule(
                "tobacco-bonds",
                {"metric": "revenue_pct.tobacco", "op": ">", "value": 50, "providers": ["iss"]},
                applies_to={"issuer_kinds": ["company"], "asset_classes": ["corporate_bond"]},
            )
        ],
    }
    created = await post_document(custodian.client, "bonds", document, bearer(author))
    assert created.status_code == 201, created.text
    assert (await approve(custodian.client, "bonds", 1, bearer(approver))).status_code == 200
    issuers = await custodian.ndjson("bonds", level="issuer")
    assert [(r["issuer_id"], r["rule_ids"]) for r in issuers] == [
        ("PMI", ["tobacco-bonds"]),
        ("SHENHUA", ["tobacco-bonds"]),
    ]
    assert await custodian.ndjson("bonds", level="instrument") == []


async def test_as_of_gives_the_list_as_it_was(custodian: Custodian) -> None:
    before = utcnow()
    await custodian.desk.facts("BATS", "iss", {"revenue_pct.tobacco": "97.1"})
    now_rows, now_token = await custodian.csv()
    then_rows, then_token = await custodian.csv(as_of=before.isoformat())
    assert BATS_EQUITY in by_key(now_rows)
    assert BATS_EQUITY not in by_key(then_rows)
    assert by_key(then_rows).keys() == by_key(now_rows).keys() - {BATS_EQUITY}
    assert ListToken.decode(then_token).data_version == ListToken.decode(now_token).data_version - 1
    future = await custodian.get(as_of="2999-01-01T00:00:00Z")
    assert_problem(future, 422)


async def test_etag_and_if_none_match(custodian: Custodian) -> None:
    first = await custodian.get(level="issuer")
    token = token_of(first)
    assert token.startswith("ml1.")
    assert first.headers["cache-control"] == "no-cache"
    for tag in (f'"{token}"', f'W/"{token}"', f'"other", "{token}"', "*"):
        cached = await custodian.client.get(
            "/v1/lists/rpf",
            params={"level": "issuer"},
            headers={**bearer(custodian.reader), "If-None-Match": tag},
        )
        assert cached.status_code == 304, tag
        assert cached.content == b""
        assert cached.headers["etag"] == f'"{token}"'
    await custodian.desk.facts("BATS", "iss", {"revenue_pct.tobacco": "97.1"})
    fresh = await custodian.client.get(
        "/v1/lists/rpf",
        params={"level": "issuer"},
        headers={**bearer(custodian.reader), "If-None-Match": f'"{token}"'},
    )
    assert fresh.status_code == 200
    assert token_of(fresh) != token
    assert "BATS" in fresh.text


async def test_head_answers_the_token_without_computing_the_rows(
    custodian: Custodian, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A custodian's poller: HEAD gives GET's status and headers (ETag, X-List-Token, type,
    disposition), no body, and 304 with If-None-Match, without loading the list."""
    gets = {fmt: await custodian.get(level="issuer", format=fmt) for fmt in ("csv", "ndjson")}

    async def unused(*_: Any) -> None:
        raise AssertionError("HEAD must not compute the list's rows")

    monkeypatch.setattr(service, "load_list", unused)
    for fmt, get in gets.items():
        head = await custodian.client.head(
            "/v1/lists/rpf",
            params={"level": "issuer", "format": fmt},
            headers=bearer(custodian.reader),
        )
        assert head.status_code == 200, head.text
        assert head.content == b""
        for name in (
            "etag",
            "x-list-token",
            "content-type",
            "content-disposition",
            "cache-control",
        ):
            assert head.headers[name] == get.headers[name], name
        assert "content-length" not in head.headers  # as the streamed GET
        cached = await custodian.client.head(
            "/v1/lists/rpf",
            params={"level": "issuer", "format": fmt},
            headers={**bearer(custodian.reader), "If-None-Match": get.headers["etag"]},
        )
        assert (cached.status_code, cached.content) == (304, b"")
        assert cached.headers["etag"] == get.headers["etag"]
    no_key = await custodian.client.head("/v1/lists/rpf")
    assert (no_key.status_code, no_key.content) == (401, b"")


async def test_delta_across_data_loads(custodian: Custodian) -> None:
    desk = custodian.desk
    old_rows, old_token = await custodian.csv()
    await desk.facts("BATS", "iss", {"revenue_pct.tobacco": "97.1"})  # added
    await desk.facts("PMI", "iss", {"revenue_pct.tobacco": "10"})  # removed
    weapons = {"controversial_weapons.involved": "true"}
    await desk.facts("SHELL", "sustainalytics", weapons)  # watch -> excluded
    delta, new_token = await custodian.csv(since=old_token)
    assert new_token != old_token
    assert [(r["change"], r["isin"], r["verdict"], r["rule_ids"]) for r in delta] == [
        ("added", BATS_EQUITY, "excluded", "tobacco"),
        ("changed", SHELL_EQUITY, "excluded", "controversial-weapons"),
        ("removed", PMI_EQUITY, "excluded", "tobacco"),  # as it was
    ]
    assert {k: v for k, v in delta[2].items() if k != "change"} == by_key(old_rows)[PMI_EQUITY]

    # Applying the delta to the old list gives the new one.
    applied = by_key(old_rows)
    for row in delta:
        change = row.pop("change")
        if change == "removed":
            del applied[row["isin"]]
        else:
            applied[row["isin"]] = row
    new_rows, _ = await custodian.csv()
    assert applied == by_key(new_rows)

    issuers = await custodian.ndjson(level="issuer", since=old_token)
    assert [(r["change"], r["issuer_id"]) for r in issuers] == [
        ("added", "BATS"),
        ("removed", "PMI"),
        ("changed", "SHELL"),
    ]
    nothing, _ = await custodian.csv(since=new_token)
    assert nothing == []
    empty = await custodian.get(format="json", since=new_token)
    assert empty.json()["rows"] == []


async def test_delta_across_a_policy_version_change(
    custodian: Custodian, make_key: MakeKey
) -> None:
    desk = custodian.desk
    await desk.facts("ANGLO", "msci", {"revenue_pct.thermal_coal_power": "8"})
    _, v1_token = await custodian.csv()
    document = shipped("rpf")
    for item in document["rules"]:
        if item["id"] == "tobacco":
            item["when"]["value"] = 97  # PMI (96.4) leaves the list
        if item["id"] == "coal-power":
            item["when"]["value"] = 5  # ANGLO (8) joins it
        if item["id"] == "norms-engagement":
            item["outcome"] = "exclude"  # SHELL: watch -> excluded
    author = await make_key(Scope.policies_write, name="v2-author")
    approver = await make_key(Scope.policies_approve, name="v2-approver")
    created = await post_document(desk.client, "rpf", document, bearer(author))
    assert created.status_code == 201, created.text
    assert (await approve(desk.client, "rpf", 2, bearer(approver))).status_code == 200

    delta = await custodian.ndjson(since=v1_token)
    assert [(r["change"], r["isin"], r["verdict"], r["rule_ids"]) for r in delta] == [
        ("changed", SHENHUA_EQUITY, "excluded", ["list:exclusion"]),  # tobacco 60 < 97
        ("added", ANGLO_EQUITY, "excluded", ["coal-power"]),
        ("changed", SHELL_EQUITY, "excluded", ["norms-engagement"]),
        ("removed", PMI_EQUITY, "excluded", ["tobacco"]),
    ]
    response = await custodian.get(format="json", since=v1_token)
    document = response.json()
    assert document["policy"]["version"] == 2
    assert document["since"] == v1_token
    assert ListToken.decode(document["token"]).policy_version == 2


async def test_bad_and_unknown_tokens(custodian: Custodian) -> None:
    _, token = await custodian.csv()
    for bad in ("garbage", token[:-1] + ("0" if token[-1] != "0" else "1"), "ml1.@@.x"):
        problem = assert_problem(await custodian.get(since=bad), 422)
        assert "list token" in problem["detail"]
        assert problem["errors"][0]["loc"] == ["query", "since"]
    parsed = ListToken.decode(token)
    for unknown in (
        replace(parsed, policy_version=9),
        replace(parsed, data_version=parsed.data_version + 100),
        replace(parsed, data_sha="00000000"),
        replace(parsed, day=today() + dt.timedelta(days=1)),
    ):
        problem = assert_problem(await custodian.get(since=unknown.encode()), 404)
        assert "ETag" in problem["detail"]
    other = assert_problem(await custodian.get("dk-pension", since=token), 422)
    assert "policy 'rpf'" in other["detail"]


async def test_errors(custodian: Custodian) -> None:
    assert_problem(await custodian.get("nope"), 404)
    assert_problem(await custodian.get(format="xml"), 422)
    assert_problem(await custodian.get(level="country"), 422)
    unknown = assert_problem(await custodian.get(fromat="csv"), 422)
    assert unknown["errors"][0]["loc"] == ["query", "fromat"]
    no_scope = await custodian.client.get("/v1/lists/rpf", headers=bearer(custodian.desk.trader))
    problem = assert_problem(no_scope, 403)
    assert "lists:read" in problem["detail"]
    assert_problem(await custodian.client.get("/v1/lists/rpf"), 401)


HOSTILE_NAMES = {
    "EVIL-EQ": "=cmd|' /C calc'!A0",
    "EVIL-AT": '@SUM(1+1)*cmd|" /C calc"!A0',
    "EVIL-PL": "+41 22, Geneva",
    "EVIL-MI": "-2+3",
}  # A leading tab or CR never reaches a list (the loader trims names); the property test
# below covers them.


async def test_formula_like_cells_are_neutralised_in_csv_only(custodian: Custodian) -> None:
    """OWASP CSV injection: a cell a spreadsheet would evaluate is written as quoted text with a
    leading ``'``, in the endpoint's CSV and the delta's; NDJSON and JSON keep the name exact."""
    desk = custodian.desk
    _, before = await custodian.csv(level="issuer")
    body = "issuer_id,name,kind,country\n" + "".join(
        f'{issuer},"{name.replace(chr(34), chr(34) * 2)}",company,CH\n'
        for issuer, name in HOSTILE_NAMES.items()
    )
    await load_ok(desk.client, desk.steward, "issuers", body)
    for issuer in HOSTILE_NAMES:
        await desk.clean(issuer, revenue_pct__tobacco="90")

    response = await custodian.get(level="issuer", format="csv")
    assert response.status_code == 200, response.text
    assert "\r\nEVIL-EQ,\"'=cmd|' /C calc'!A0\",CH," in response.text
    assert '\r\nEVIL-AT,"\'@SUM(1+1)*cmd|"" /C calc""!A0",CH,' in response.text
    rows, _ = await custodian.csv(level="issuer")
    names = {r["issuer_id"]: r["name"] for r in rows if r["issuer_id"] in HOSTILE_NAMES}
    assert names == {issuer: f"'{name}" for issuer, name in HOSTILE_NAMES.items()}
    delta, _ = await custodian.csv(level="issuer", since=before)
    assert {r["name"] for r in delta if r["issuer_id"] in HOSTILE_NAMES} == set(names.values())

    exact = {r["issuer_id"]: r["name"] for r in await custodian.ndjson(level="issuer")}
    assert {issuer: exact[issuer] for issuer in HOSTILE_NAMES} == HOSTILE_NAMES
    document = (await custodian.get(level="issuer", format="json")).json()
    assert {r["name"] for r in document["rows"]} >= set(HOSTILE_NAMES.values())


@pytest.mark.parametrize("policy", ["rpf", "dk-pension"])
async def test_every_row_agrees_with_a_check_at_the_same_time(
    custodian: Custodian, policy: str
) -> None:
    await custodian.desk.facts("SHELL-EP84", "sustainalytics", {"norms.status": "watchlist"})
    at = utcnow().isoformat()
    listed = by_key(await custodian.ndjson(policy, as_of=at))
    assert listed, "the list must not be empty for this test to mean something"
    universe = [line.split(",")[0] for line in (FIXTURES / "instruments.csv").open()][1:]
    verdicts = set()
    for isin in universe:
        decision = await custodian.desk.check(isin, policy, as_of=at)
        verdicts.add(decision["verdict"])
        row = listed.get(isin)
        if row is None:
            assert decision["verdict"] in ("allowed", "unknown"), isin
            continue
        assert row["verdict"] == decision["verdict"], isin
        carrying = {
            r["rule_id"]
            for r in decision["reasons"]
            if {"exclude": "excluded", "watch": "watch"}.get(r["outcome"]) == row["verdict"]
        }
        assert row["rule_ids"] == sorted(carrying), isin
        assert row["issuer_id"] == decision["issuer"]["issuer_id"]
        assert row["asset_class"] == decision["instrument"]["asset_class"]
    assert {"allowed", "unknown"} <= verdicts


def export(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``mayhold lists export`` as a cron job runs it: its own process, bytes on stdout."""
    env = {**os.environ, "MAYHOLD_DATABASE_URL": url, "MAYHOLD_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "lists", "export", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_cli_export_equals_the_endpoint_served_from_the_index(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with demo_database(dialect, tmp_path) as (url, key, _), running(url) as (app, client):
        index: VerdictIndex = app.state.verdict_index
        deadline = time.monotonic() + 60
        while index.lookup("rpf", utcnow()) is None:  # the first lookup starts the build
            assert time.monotonic() < deadline, "the index was never compiled"
            await asyncio.sleep(0.1)

        async def unused(*_: Any) -> None:
            raise AssertionError("a current list must come from the compiled index")

        served: dict[str, httpx.Response] = {}
        with monkeypatch.context() as patch:
            patch.setattr(ScreeningRepository, "full_snapshot", unused)
            for level in ("instrument", "issuer"):
                served[level] = await client.get(
                    "/v1/lists/rpf", params={"level": level}, headers=bearer(key)
                )
                assert served[level].status_code == 200, served[level].text
        rows = list(csv.DictReader(io.StringIO(served["instrument"].text, newline="")))
        assert {r["verdict"] for r in rows} == {"excluded", "watch"}
        assert len(rows) > 100

        token_file = tmp_path / "rpf.token"
        for level in ("instrument", "issuer"):
            exported = export(url, "rpf", "--level", level, "--token-file", str(token_file))
            assert exported.returncode == 0, exported.stderr
            assert exported.stdout == served[level].content
            token = served[level].headers["x-list-token"]
            assert token_file.read_text() == token + "\n"
            assert f"list token: {token}" in exported.stderr.decode()

        delta = export(url, "rpf", "--format", "ndjson", "--since", token_file.read_text())
        assert (delta.returncode, delta.stdout) == (0, b"")
        bad = export(url, "rpf", "--since", "ml1.nonsense")
        assert bad.returncode == 1
        assert b"since is not a list token" in bad.stderr
        unknown = export(url, "nope")
        assert unknown.returncode == 1
        assert b"there is no policy 'nope'" in unknown.stderr


def _reference_csv(records: list[list[str]]) -> str:
    """What OWASP's guidance asks of ``csv.writer``'s output: a row without formula-like cells
    exactly as it writes it; in a row with some, each such cell ``'``-prefixed and quoted."""
    out = io.StringIO()
    plain = csv.writer(out, lineterminator="\r\n")
    for record in records:
        risky = [c[:1] in ("=", "+", "-", "@", "\t", "\r") for c in record]
        if not any(risky):
            plain.writerow(record)
            continue
        cells = []
        for cell, is_risky in zip(record, risky, strict=True):
            # One cell as csv.writer writes it in a row (a second cell avoids its special case
            # of a lone empty cell), QUOTE_ALL for a neutralised one.
            one = io.StringIO()
            writer = (
                csv.writer(one, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
                if is_risky
                else csv.writer(one, lineterminator="\r\n")
            )
            writer.writerow(["'" + cell if is_risky else cell, "z"])
            cells.append(one.getvalue().removesuffix(',"z"\r\n' if is_risky else ",z\r\n"))
        out.write(",".join(cells) + "\r\n")
    return out.getvalue()


_text = st.text() | st.text(alphabet=st.sampled_from('=+-@\t\r,"\n a'), max_size=5)


@given(st.lists(st.lists(_text, min_size=2, max_size=10), max_size=20))
def test_csv_rendering_is_the_csv_module_with_formulas_neutralised(
    records: list[list[str]],
) -> None:
    text = csv_text(records)
    assert text == _reference_csv(records)
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [
        [f"'{c}" if c[:1] in formats.FORMULA_STARTS else c for c in record] for record in records
    ]


_cell = st.text(alphabet=st.sampled_from('ab,"\r\n é=+-@\t'), max_size=6)


@given(
    st.lists(
        st.builds(
            ListRow,
            issuer_id=st.sampled_from(["I1", "I2", "I,3", 'I"4', "-I5", "@I6"]),
            name=_cell,
            country=st.sampled_from(["NL", "FR"]),
            lei=st.none() | _cell,
            verdict=st.sampled_from(["excluded", "watch"]),
            rule_ids=st.lists(
                st.sampled_from(["r1", "list:exclusion", "data:issuer"]), max_size=2
            ).map(tuple),
            since=st.none() | st.dates(),
            isin=st.none() | st.sampled_from(["NL0000009165"]),
            asset_class=st.none() | st.sampled_from(["equity"]),
            change=st.none() | st.sampled_from(["added", "removed", "changed"]),
        ),
        max_size=12,
    ),
    st.booleans(),
    st.booleans(),
)
def test_csv_lines_of_rows_are_exactly_the_csv_module(
    rows: list[ListRow], instrument: bool, delta: bool
) -> None:
    """The direct formatting of list rows writes what csv_text writes for their records (which
    is csv.writer's output with formula-like cells neutralised)."""
    names = formats.INSTRUMENT_COLUMNS if instrument else formats.ISSUER_COLUMNS
    names = ("change", *names) if delta else names
    records = [list(r) for r in formats._records(rows, names, formats._joined, "")]
    assert formats._csv_lines(rows, names) == _reference_csv(records)


@given(
    st.lists(
        st.builds(
            ListRow,
            issuer_id=st.sampled_from(["I1", "I2", "I,3", 'I"4', "-I5", "@I6", "", "é7"]),
            name=st.text(max_size=8) | _cell,
            country=st.sampled_from(["NL", "FR"]),
            lei=st.none() | _cell,
            verdict=st.sampled_from(["excluded", "watch"]),
            rule_ids=st.lists(
                st.sampled_from(["r1", "list:exclusion", "data:issuer"]), max_size=2
            ).map(tuple),
            since=st.none() | st.sampled_from([dt.date(2025, 6, 30), dt.date(2026, 1, 2)]),
            isin=st.none() | st.sampled_from(["NL0000009165"]),
            asset_class=st.none() | st.sampled_from(["equity"]),
            change=st.none() | st.sampled_from(["added", "removed", "changed"]),
        ),
        max_size=30,
    ),
    st.booleans(),
    st.booleans(),
    st.integers(min_value=1, max_value=7),
)
def test_a_list_rendered_in_chunks_is_exactly_the_csv_module(
    rows: list[ListRow], instrument: bool, delta: bool, chunk: int
) -> None:
    """One renderer per list, its chunks one after another (what it remembers between chunks,
    each date's text, must not change a byte): the csv module's output with formula-like cells
    neutralised, whatever the names hold (any unicode, quotes, commas, line breaks)."""
    names = formats.INSTRUMENT_COLUMNS if instrument else formats.ISSUER_COLUMNS
    names = ("change", *names) if delta else names
    records = [list(r) for r in formats._records(rows, names, formats._joined, "")]
    writer = formats.CsvRows(names)
    text = "".join(writer.lines(rows[i : i + chunk]) for i in range(0, len(rows), chunk))
    assert text == _reference_csv(records)


def test_tricky_issuer_names_render_as_the_csv_module_writes_them() -> None:
    """Quotes, commas, line breaks, formula starts and non-ASCII text in the free text of a
    row (issuer id, name, LEI): each row exactly as the csv module (plus neutralising) writes
    it, the clean rows around them untouched."""
    names_seen = [
        "Philip Morris International Inc.",
        'The "Best" Tobacco, Inc.',
        "Samsung Electronics Co., Ltd.",
        "Line\nbreak Corp",
        "Carriage\rreturn AG",
        '=HYPERLINK("http://x")',
        "+31 Holdings",
        "-minus SA",
        "@handle plc",
        "\ttab Ltd",
        "Société Générale",
        "株式会社トヨタ",
        "Ærø Øster Å/S",
        "😀 emoji Ltd",
        "",
    ]
    rows = [
        ListRow(
            issuer_id=f"I{n}" if n % 5 else f"-I{n}",
            name=name,
            country="FR",
            lei=None if n % 3 else ("5493,X" if n % 2 else "549300ABCDEF01234567"),
            verdict="excluded" if n % 2 else "watch",
            rule_ids=("list:exclusion", "tobacco") if n % 2 else (),
            since=dt.date(2025, 6, 30) if n % 4 else None,
            isin=f"NL{n:09d}5",
            asset_class="equity",
        )
        for n, name in enumerate(names_seen)
    ]
    names = formats.INSTRUMENT_COLUMNS
    records = [list(r) for r in formats._records(rows, names, formats._joined, "")]
    expected = _reference_csv(records)
    assert formats.CsvRows(names).lines(rows) == expected
    parsed = list(csv.reader(io.StringIO(expected, newline="")))
    assert [row[1] for row in parsed] == [
        f"'{n}" if n[:1] in formats.FORMULA_STARTS else n for n in names_seen
    ]
