"""The policies API over HTTP, on Postgres and SQLite: versions, four eyes, immutability,
the version in force, overlays and diffs."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.auth.schemas import Actor
from app.auth.scopes import Scope
from app.models import ImmutableVersionError, PolicyVersion
from app.policies import service
from app.policies.document import document_sha256, parse_document
from app.screening.applied import applied_at
from tests.conftest import MakeKey, bearer
from tests.support.policies import (
    HOUSE,
    SHIPPED,
    approve,
    house_exception,
    house_rule,
    overlay,
    post_document,
    shipped,
    shipped_path,
)
from tests.support.problems import assert_problem

FUTURE = "2100-01-01T00:00:00Z"


@pytest.fixture
async def writer(make_key: MakeKey) -> dict[str, str]:
    return bearer(await make_key(Scope.policies_write, name="policy-author"))


@pytest.fixture
async def approver(make_key: MakeKey) -> dict[str, str]:
    return bearer(await make_key(Scope.policies_approve, name="policy-approver"))


@pytest.fixture
async def reader(make_key: MakeKey) -> dict[str, str]:
    return bearer(await make_key(Scope.check, name="oms"))


async def create(
    client: httpx.AsyncClient, document: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    response = await post_document(client, document["key"], document, headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_approved(
    client: httpx.AsyncClient,
    document: dict[str, Any],
    writer: dict[str, str],
    approver: dict[str, str],
    effective_from: str | None = None,
) -> dict[str, Any]:
    created = await create(client, document, writer)
    response = await approve(client, document["key"], created["version"], approver, effective_from)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------------------------------------
# Loading and round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", SHIPPED)
async def test_load_each_shipped_policy_and_round_trip(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    reader: dict[str, str],
    key: str,
) -> None:
    text_yaml = shipped_path(key).read_bytes()
    response = await post_document(client, key, text_yaml, writer, "application/yaml")
    assert response.status_code == 201, response.text
    created = response.json()
    expected_sha = document_sha256(parse_document(shipped(key)))
    assert created == {
        "key": key,
        "version": 1,
        "status": "draft",
        "sha256": expected_sha,
        "created_at": created["created_at"],
        "created_by": {"name": "policy-author", "key_id": created["created_by"]["key_id"]},
    }

    read = await client.get(f"/v1/policies/{key}/versions/1", headers=reader)
    assert read.status_code == 200
    version = read.json()
    assert version["sha256"] == expected_sha
    assert version["status"] == "draft"
    assert version["document"]["key"] == key
    assert version["approved_by"] is None

    # Export -> post again: the same hash; the latest draft is returned, not duplicated.
    again = await post_document(client, key, version["document"], writer)
    assert again.status_code == 200
    assert (again.json()["version"], again.json()["sha256"]) == (1, expected_sha)

    approved = await approve(client, key, 1, approver)
    assert approved.status_code == 200, approved.text
    # After approval the same document makes a new draft with the same hash.
    third = await post_document(client, key, version["document"], writer)
    assert third.status_code == 201
    assert (third.json()["version"], third.json()["sha256"]) == (2, expected_sha)


async def test_json_and_yaml_of_one_document_hash_alike(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    data = shipped("asr")
    data["key"] = "asr-json"
    from_json = await post_document(client, "asr-json", json.dumps(data, indent=4), writer)
    data["key"] = "asr-yaml"
    yaml_text = shipped_path("asr").read_text().replace("key: asr\n", "key: asr-yaml\n")
    from_yaml = await post_document(client, "asr-yaml", yaml_text, writer, "application/yaml")
    assert from_json.status_code == from_yaml.status_code == 201
    document = parse_document(data)
    assert from_yaml.json()["sha256"] == document_sha256(document)
    assert from_json.json()["sha256"] != from_yaml.json()["sha256"]  # the keys differ
    assert from_json.json()["sha256"] == document_sha256(
        parse_document({**data, "key": "asr-json"})
    )


async def test_service_loads_a_policy_file_like_the_cli(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    author = Actor(name="cli:tester", key_id=None)
    async with sessionmaker() as session:
        result = await service.load_policy_file(
            session, shipped_path("dk-pension").read_bytes(), "yaml", author
        )
        await session.commit()
    assert result.created
    assert (result.policy.key, result.version.version) == ("dk-pension", 1)
    assert result.version.created_by == "cli:tester"
    assert result.version.created_by_key_id is None
    assert result.version.sha256 == document_sha256(parse_document(shipped("dk-pension")))


async def test_list_and_get_policies(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    reader: dict[str, str],
) -> None:
    await create_approved(client, shipped("rpf"), writer, approver)
    await create(client, shipped("asr"), writer)
    listed = await client.get("/v1/policies", headers=reader)
    assert listed.status_code == 200
    by_key = {p["key"]: p for p in listed.json()}
    assert by_key["rpf"]["in_force_version"] == 1
    assert by_key["rpf"]["title"] == "RPF pension scheme exclusion policy"
    assert by_key["asr"]["in_force_version"] is None
    assert by_key["asr"]["latest_version"] == 1

    policy = await client.get("/v1/policies/rpf", headers=reader)
    assert policy.status_code == 200
    body = policy.json()
    assert body["created_by"] == "policy-author"
    (version,) = body["versions"]
    assert version["status"] == "approved"
    assert version["approved_by"]["name"] == "policy-approver"
    assert version["effective_from"] is not None

    assert_problem(await client.get("/v1/policies"), 401)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


async def test_invalid_document_is_422_listing_every_problem(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    document = copy.deepcopy(shipped("rpf"))
    document["rules"][3]["when"]["metric"] = "revenue_pct.tobaco"
    document["rules"][0]["when"]["providers"] = ["bloomberg"]
    document["rules"][5]["when"]["value"] = 101
    document["rules"][10]["when"]["op"] = "in"
    document["rules"][9]["id"] = "tobacco"
    response = await post_document(client, "rpf", document, writer)
    body = assert_problem(response, 422)
    errors = {tuple(e["loc"]): e["msg"] for e in body["errors"]}
    assert "unknown metric" in errors[("body", "rules", 3, "when", "metric")]
    assert "unknown provider 'bloomberg'" in errors[("body", "rules", 0, "when", "providers", 0)]
    assert "above 100" in errors[("body", "rules", 5, "when", "value")]
    assert "'in' is not a comparison" in errors[("body", "rules", 10, "when", "op")]
    assert "duplicate id 'tobacco'" in errors[("body", "rules", 9, "id")]
    assert len(errors) == 5
    assert "rules.3.when.metric" in body["detail"]
    # Nothing was stored.
    assert_problem(await client.get("/v1/policies/rpf", headers=writer), 404)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "loc", "message"),
    [
        ({**shipped("asr"), "owner": "x"}, "application/json", 422, ["body", "owner"], "unknown"),
        (
            {**shipped("asr"), "rules": [{**shipped("asr")["rules"][0], "severity": 1}]},
            "application/json",
            422,
            ["body", "rules", 0, "severity"],
            "unknown field",
        ),
        ({**shipped("asr"), "key": "rpf"}, "application/json", 422, ["body", "key"], "'rpf'"),
        (
            "key: asr\ntitle: [unclosed\nrules: []\n",
            "application/yaml",
            422,
            ["body"],
            "line 3",
        ),
        ('{"key": "asr",', "application/json", 422, ["body"], "line 1"),
        ("", "application/json", 422, ["body"], "empty"),
        ("[1, 2]", "application/json", 422, ["body"], "mapping"),
        ("key: asr", "text/plain", 415, None, None),
    ],
    ids=[
        "unknown-field",
        "unknown-rule-field",
        "key-mismatch",
        "bad-yaml",
        "bad-json",
        "empty",
        "not-a-mapping",
        "media-type",
    ],
)
async def test_bad_bodies(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    body: Any,
    content_type: str,
    status: int,
    loc: list[Any] | None,
    message: str | None,
) -> None:
    response = await post_document(client, "asr", body, writer, content_type)
    problem = assert_problem(response, status)
    if loc is not None:
        errors = {tuple(e["loc"]): e["msg"] for e in problem["errors"]}
        assert message is not None
        assert message in errors[tuple(loc)], errors


async def test_too_large_a_document_is_413(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    document = {**shipped("asr"), "note": "x" * (1024 * 1024)}
    assert_problem(await post_document(client, "asr", document, writer), 413)


async def test_scopes(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    reader: dict[str, str],
) -> None:
    assert_problem(await post_document(client, "asr", shipped("asr"), reader), 403)
    assert_problem(await post_document(client, "asr", shipped("asr"), approver), 403)
    assert_problem(await post_document(client, "asr", shipped("asr"), {}), 401)
    await create(client, shipped("asr"), writer)
    assert_problem(await approve(client, "asr", 1, reader), 403)
    assert (await client.get("/v1/policies/asr/versions/1", headers=approver)).status_code == 200


async def test_unknown_policy_or_version_is_404(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    reader: dict[str, str],
) -> None:
    await create(client, shipped("asr"), writer)
    for path in (
        "/v1/policies/nope",
        "/v1/policies/nope/versions/1",
        "/v1/policies/asr/versions/2",
        "/v1/policies/asr/versions/0",
        "/v1/policies/asr/versions/1/diff?against=7",
        "/v1/policies/nope/in-force",
        "/v1/policies/asr/in-force",  # exists, but nothing approved
    ):
        assert_problem(await client.get(path, headers=reader), 404)
    assert_problem(await approve(client, "asr", 2, approver), 404)
    assert_problem(await approve(client, "nope", 1, approver), 404)


# ---------------------------------------------------------------------------------------------
# Four eyes and immutability
# ---------------------------------------------------------------------------------------------


async def test_four_eyes(
    client: httpx.AsyncClient, make_key: MakeKey, approver: dict[str, str]
) -> None:
    both = bearer(await make_key(Scope.policies_write, Scope.policies_approve, name="both"))
    admin = bearer(await make_key(Scope.admin, name="root"))
    await create(client, shipped("asr"), both)
    body = assert_problem(await approve(client, "asr", 1, both), 403)
    assert "four eyes" in body["detail"]
    # admin implies every scope, but not a second pair of eyes on its own draft
    await create(client, shipped("dk-pension"), admin)
    assert_problem(await approve(client, "dk-pension", 1, admin), 403)

    approved = await approve(client, "asr", 1, approver)
    assert approved.status_code == 200
    version = approved.json()
    assert version["status"] == "approved"
    assert version["created_by"]["name"] == "both"
    assert version["approved_by"]["name"] == "policy-approver"
    assert version["approved_by"]["key_id"] != version["created_by"]["key_id"]
    body = assert_problem(await approve(client, "asr", 1, admin), 409)
    assert "only a draft" in body["detail"]


async def test_approval_effective_from_rules(
    client: httpx.AsyncClient, writer: dict[str, str], approver: dict[str, str]
) -> None:
    await create(client, shipped("asr"), writer)
    past = await approve(client, "asr", 1, approver, "2020-01-01T00:00:00Z")
    assert assert_problem(past, 422)["errors"][0]["loc"] == ["body", "effective_from"]
    naive = await approve(client, "asr", 1, approver, "2100-01-01T00:00:00")
    assert_problem(naive, 422)
    unknown_field = await client.post(
        "/v1/policies/asr/versions/1/approve", json={"effective": FUTURE}, headers=approver
    )
    assert_problem(unknown_field, 422)
    assert (await approve(client, "asr", 1, approver, FUTURE)).status_code == 200
    changed = copy.deepcopy(shipped("asr"))
    changed["title"] = "a.s.r. v2"
    await create(client, changed, writer)
    earlier = await approve(client, "asr", 2, approver, "2099-01-01T00:00:00Z")
    assert "after it" in assert_problem(earlier, 409)["detail"]
    same = await approve(client, "asr", 2, approver, FUTURE)
    assert_problem(same, 409)
    assert (await approve(client, "asr", 2, approver, "2100-01-01T00:00:01Z")).status_code == 200


async def test_no_endpoint_changes_an_approved_version(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    make_key: MakeKey,
) -> None:
    admin = bearer(await make_key(Scope.admin))
    approved = await create_approved(client, shipped("rpf"), writer, approver, FUTURE)
    path = "/v1/policies/rpf/versions/1"
    for method in ("PUT", "PATCH", "DELETE"):
        response = await client.request(method, path, headers=admin, json=shipped("rpf"))
        assert_problem(response, 405)
    assert_problem(await approve(client, "rpf", 1, admin, "2200-01-01T00:00:00Z"), 409)
    changed = copy.deepcopy(shipped("rpf"))
    changed["rules"][3]["when"]["value"] = 60
    created = await create(client, changed, writer)
    assert created["version"] == 2
    after = (await client.get(path, headers=admin)).json()
    assert after == approved
    assert after["document"]["rules"][3]["when"]["value"] == 50


async def _approved_id(connection: AsyncConnection) -> Any:
    return (
        await connection.execute(text("SELECT id FROM policy_versions WHERE status = 'approved'"))
    ).scalar_one()


@pytest.mark.parametrize(
    "statement",
    [
        'UPDATE policy_versions SET document = \'{"key": "rpf"}\' WHERE id = :id',
        "UPDATE policy_versions SET sha256 = 'x' WHERE id = :id",
        "UPDATE policy_versions SET status = 'draft', approved_at = NULL, approved_by = NULL,"
        " approved_by_key_id = NULL, effective_from = NULL WHERE id = :id",
        "UPDATE policy_versions SET effective_from = approved_at WHERE id = :id",
        "UPDATE policy_versions SET approved_by = 'someone else' WHERE id = :id",
        "DELETE FROM policy_versions WHERE id = :id",
        "UPDATE policies SET key = 'rpf2'",
    ],
    ids=["document", "sha256", "unapprove", "effective-from", "approver", "delete", "policy-key"],
)
async def test_database_refuses_to_change_an_approved_version(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    connection: AsyncConnection,
    statement: str,
) -> None:
    await create_approved(client, shipped("rpf"), writer, approver, FUTURE)
    version_id = await _approved_id(connection)
    with pytest.raises(DBAPIError, match="immutable"):
        async with connection.begin_nested():
            await connection.execute(text(statement), {"id": version_id})
    row = (
        await connection.execute(
            text("SELECT status, sha256 FROM policy_versions WHERE id = :id"), {"id": version_id}
        )
    ).one()
    assert row.status == "approved"


async def test_database_allows_only_approval_of_a_draft(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection
) -> None:
    await create(client, shipped("asr"), writer)
    draft_id = (await connection.execute(text("SELECT id FROM policy_versions"))).scalar_one()
    with pytest.raises(DBAPIError, match="immutable"):
        async with connection.begin_nested():
            await connection.execute(
                text("UPDATE policy_versions SET document = '{}' WHERE id = :id"), {"id": draft_id}
            )
    author_id = (
        await connection.execute(
            text("SELECT created_by_key_id FROM policy_versions WHERE id = :id"), {"id": draft_id}
        )
    ).scalar_one()
    # Four eyes is a constraint too: the drafting key cannot be recorded as the approver.
    approve_sql = text(
        "UPDATE policy_versions SET status = 'approved', approved_at = created_at,"
        " approved_by = 'x', approved_by_key_id = :key, effective_from = created_at"
        " WHERE id = :id"
    )
    with pytest.raises(DBAPIError, match="four_eyes"):
        async with connection.begin_nested():
            await connection.execute(approve_sql, {"id": draft_id, "key": author_id})
    async with connection.begin_nested():
        await connection.execute(approve_sql, {"id": draft_id, "key": None})
    status = (
        await connection.execute(
            text("SELECT status FROM policy_versions WHERE id = :id"), {"id": draft_id}
        )
    ).scalar_one()
    assert status == "approved"


async def test_orm_refuses_to_change_an_approved_version(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await create_approved(client, shipped("rpf"), writer, approver, FUTURE)
    async with sessionmaker() as session:
        version = (await session.execute(select(PolicyVersion))).scalar_one()
        version.document = {**version.document, "title": "changed"}
        with pytest.raises(ImmutableVersionError):
            await session.flush()
    async with sessionmaker() as session:
        version = (await session.execute(select(PolicyVersion))).scalar_one()
        await session.delete(version)
        with pytest.raises(ImmutableVersionError):
            await session.flush()


# ---------------------------------------------------------------------------------------------
# The version in force
# ---------------------------------------------------------------------------------------------


async def test_version_in_force_at_the_boundaries(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    reader: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first_from, second_from = "2100-01-01T00:00:00Z", "2100-06-01T12:00:00.000001Z"
    await create_approved(client, shipped("rpf"), writer, approver, first_from)
    second = copy.deepcopy(shipped("rpf"))
    second["title"] = "RPF v2"
    await create_approved(client, second, writer, approver, second_from)
    third = copy.deepcopy(shipped("rpf"))
    third["title"] = "RPF v3 (draft, never in force)"
    await create(client, third, writer)

    async def in_force(at: str) -> httpx.Response:
        return await client.get("/v1/policies/rpf/in-force", params={"at": at}, headers=reader)

    assert_problem(await in_force("2099-12-31T23:59:59.999999Z"), 404)
    assert_problem(await in_force("2026-01-01T00:00:00Z"), 404)
    assert (await in_force(first_from)).json()["version"] == 1
    assert (await in_force("2100-01-01T01:00:00+01:00")).json()["version"] == 1  # same instant
    assert (await in_force("2100-06-01T12:00:00Z")).json()["version"] == 1
    at_second = await in_force(second_from)
    assert at_second.json()["version"] == 2
    assert at_second.json()["document"]["title"] == "RPF v2"
    assert (await in_force("2999-01-01T00:00:00Z")).json()["version"] == 2
    assert_problem(await in_force("2100-01-01T00:00:00"), 422)  # no offset
    assert_problem(
        await client.get("/v1/policies/rpf/in-force", params={"when": FUTURE}, headers=reader),
        422,
    )
    # Nothing is in force now: both approvals take effect in 2100.
    assert_problem(await client.get("/v1/policies/rpf/in-force", headers=reader), 404)

    # The function the screening engine calls.
    import datetime as dt

    async with sessionmaker() as session:
        boundary = dt.datetime(2100, 6, 1, 12, 0, 0, 1, tzinfo=dt.UTC)
        version = await service.get_version_in_force(session, "rpf", boundary)
        assert version.version == 2
        before = await service.get_version_in_force(
            session, "rpf", boundary - dt.timedelta(microseconds=1)
        )
        assert before.version == 1
        effective = await applied_at(session, "rpf", boundary)
        assert (effective.version, effective.base_key) == (2, None)
        assert effective.document.title == "RPF v2"


async def test_approval_without_effective_from_is_in_force_now(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    reader: dict[str, str],
) -> None:
    approved = await create_approved(client, shipped("dk-pension"), writer, approver)
    now = await client.get("/v1/policies/dk-pension/in-force", headers=reader)
    assert now.status_code == 200
    assert now.json()["version"] == 1
    assert now.json()["effective_from"] == approved["effective_from"]


# ---------------------------------------------------------------------------------------------
# Overlays
# ---------------------------------------------------------------------------------------------

LOOSENINGS: list[tuple[str, dict[str, Any], list[Any], str]] = [
    (
        "raise-threshold",
        overlay(rules=[house_rule("tobacco", when_update={"value": 60})]),
        ["rules", 0, "when"],
        "'tobacco' loosens the base rule (revenue_pct.tobacco > 50): its condition raises",
    ),
    (
        "lower-upper-bound",
        overlay(rules=[house_rule("corruption", when_update={"value": 15})]),
        ["rules", 0, "when"],
        "'corruption' loosens the base rule (country.cpi.score <= 19): its condition lowers",
    ),
    (
        "change-equals",
        overlay(rules=[house_rule("freedom", when_update={"value": "Partly Free"})]),
        ["rules", 0, "when"],
        "'freedom' loosens the base rule (country.freedom_house.status == Not Free): its "
        "condition no longer catches Not Free",
    ),
    (
        "shrink-in",
        overlay(rules=[house_rule("labour", when_update={"value": ["5+"]})]),
        ["rules", 0, "when"],
        "'labour' loosens the base rule (country.ituc.rating in [5, 5+]): its condition no "
        "longer catches 5",
    ),
    (
        "shrink-intersects",
        overlay(rules=[house_rule("embargo", when_update={"value": ["UN"]})]),
        ["rules", 0, "when"],
        "no longer catches EU, US",
    ),
    (
        "ordinal-equals",
        overlay(
            rules=[
                house_rule(
                    "labour", when={"metric": "country.ituc.rating", "op": "==", "value": "5+"}
                )
            ]
        ),
        ["rules", 0, "when"],
        "'labour'",
    ),
    (
        "narrow-asset-classes",
        overlay(
            rules=[
                house_rule(
                    "tobacco", applies_to={"asset_classes": ["equity"], "issuer_kinds": ["company"]}
                )
            ]
        ),
        ["rules", 0, "applies_to", "asset_classes"],
        "'tobacco' narrows applies_to.asset_classes: the base rule also covers corporate_bond",
    ),
    (
        "narrow-issuer-kinds",
        overlay(rules=[house_rule("freedom", applies_to={"issuer_kinds": ["sub_sovereign"]})]),
        ["rules", 0, "applies_to", "issuer_kinds"],
        "'freedom' narrows applies_to.issuer_kinds: the base rule also covers sovereign",
    ),
    (
        "exclude-to-watch",
        overlay(rules=[house_rule("weapons", outcome="watch")]),
        ["rules", 0, "outcome"],
        "'weapons' weakens the outcome from exclude to watch",
    ),
    (
        "stop-propagation",
        overlay(rules=[house_rule("weapons", propagate=False)]),
        ["rules", 0, "propagate"],
        "'weapons' stops propagation",
    ),
    (
        "drop-rule",
        overlay(
            rules=[
                house_rule(
                    "weapons",
                    when={"metric": "revenue_pct.tobacco", "op": ">", "value": 0},
                )
            ]
        ),
        ["rules", 0, "when"],
        "'weapons' loosens the base rule (controversial_weapons.involved == true): its "
        "condition tests revenue_pct.tobacco instead of controversial_weapons.involved (a base "
        "rule can be tightened, never dropped or replaced)",
    ),
    (
        "longer-duration",
        overlay(rules=[house_rule("norms", when_update={"for_at_least": {"years": 3}})]),
        ["rules", 0, "when"],
        "'norms' loosens the base rule (norms.status == non_compliant for at least 2 years): "
        "its condition waits longer (3 years instead of 2 years)",
    ),
    (
        "rule-older-data",
        overlay(rules=[house_rule("tobacco", when_update={"max_age_days": 500})]),
        ["rules", 0, "when"],
        "accepts older data (max_age_days 500 > 400)",
    ),
    (
        "rule-other-provider",
        overlay(rules=[house_rule("tobacco", when_update={"providers": ["msci"]})]),
        ["rules", 0, "when"],
        "uses other providers than the base (iss)",
    ),
    ("older-data", overlay(data={"max_age_days": 401}), ["data", "max_age_days"], "older data"),
    (
        "providers",
        overlay(data={"providers": {"revenue_pct.tobacco": ["iss", "msci"]}}),
        ["data", "providers", "revenue_pct.tobacco"],
        "changes the providers of revenue_pct.tobacco",
    ),
    ("percent-bands", overlay(data={"percent_bands": "lower"}), ["data", "percent_bands"], "lower"),
    (
        "unknown-allow",
        overlay(unknown="allow"),
        ["unknown"],
        "loosens the base policy's unknown: block",
    ),
    (
        "parent-off",
        overlay(propagation={"subsidiary_to_parent": None}),
        ["propagation", "subsidiary_to_parent"],
        "weakens propagation to parents",
    ),
    (
        "parent-raised",
        overlay(propagation={"subsidiary_to_parent": {"op": ">=", "control_pct": 75}}),
        ["propagation", "subsidiary_to_parent"],
        "control is > 50",
    ),
    (
        "state-owner-off",
        overlay(propagation={"state_owner": None}),
        ["propagation", "state_owner"],
        "holds >= 50",
    ),
    (
        "state-owner-strict-gt",
        overlay(propagation={"state_owner": {"op": ">", "pct": 50}}),
        ["propagation", "state_owner"],
        "state-owner",
    ),
    (
        "underlying-off",
        overlay(propagation={"underlying": False}),
        ["propagation", "underlying"],
        "derivatives",
    ),
    (
        "exclusion-list-ignored",
        overlay(lists={"exclusion": "watch"}),
        ["lists", "exclusion"],
        "lists.exclusion: watch is looser than the base's exclude",
    ),
    (
        "add-exception",
        overlay(
            exceptions=[house_exception(id="us-defence", conditions={"issuer_countries": ["US"]})]
        ),
        ["exceptions", 0, "id"],
        "exception 'us-defence' is not declared by the base policy 'house'",
    ),
    (
        "exception-lifts-more",
        overlay(exceptions=[house_exception(lifts=["defence", "tobacco"])]),
        ["exceptions", 0, "lifts"],
        "exception 'nl-defence' widens the base's exception: it also lifts tobacco",
    ),
    (
        "exception-more-countries",
        overlay(exceptions=[house_exception(conditions_update={"issuer_countries": ["NL", "BE"]})]),
        ["exceptions", 0, "conditions", "issuer_countries"],
        "issuer_countries adds BE",
    ),
    (
        "exception-any-country",
        overlay(exceptions=[house_exception(conditions_update={"issuer_countries": None})]),
        ["exceptions", 0, "conditions", "issuer_countries"],
        "issuer_countries adds any",
    ),
    (
        "exception-not-hit-by",
        overlay(exceptions=[house_exception(conditions_update={"not_hit_by": []})]),
        ["exceptions", 0, "conditions", "not_hit_by"],
        "no longer void when weapons fires",
    ),
    (
        "exception-longer",
        overlay(exceptions=[house_exception(max_duration_days=731)]),
        ["exceptions", 0, "max_duration_days"],
        "max_duration_days 731 exceeds 366",
    ),
    (
        "exception-fewer-requirements",
        overlay(exceptions=[house_exception(requires=["reference"])]),
        ["exceptions", 0, "requires"],
        "entries need not carry expires_on",
    ),
    (
        "exception-scope",
        overlay(exceptions=[house_exception(scope="all")]),
        ["exceptions", 0, "scope"],
        "scope all instead of own_account",
    ),
    (
        "position-limit-raised",
        overlay(
            position_limits=[
                {**HOUSE["position_limits"][0], "max_portfolio_pct": 10},
            ]
        ),
        ["position_limits", 0, "max_portfolio_pct"],
        "raises max_portfolio_pct from 5.0 to 10.0",
    ),
]


@pytest.fixture
async def house(
    client: httpx.AsyncClient, writer: dict[str, str], approver: dict[str, str]
) -> dict[str, Any]:
    return await create_approved(client, HOUSE, writer, approver)


@pytest.mark.parametrize(
    ("document", "loc", "message"),
    [case[1:] for case in LOOSENINGS],
    ids=[case[0] for case in LOOSENINGS],
)
async def test_overlay_loosening_is_422_naming_what_loosened(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    house: dict[str, Any],
    document: dict[str, Any],
    loc: list[Any],
    message: str,
) -> None:
    response = await post_document(client, "mandate", document, writer)
    body = assert_problem(response, 422)
    errors = {tuple(e["loc"]): e["msg"] for e in body["errors"]}
    assert ("body", *loc) in errors, errors
    assert message in errors[("body", *loc)]
    assert len(errors) == 1, errors


async def test_overlay_tightening_is_accepted_and_merged(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    house: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    document = overlay(
        unknown="block",
        data={"max_age_days": 200, "percent_bands": "upper"},
        propagation={"subsidiary_to_parent": {"op": ">=", "control_pct": 25}},
        rules=[
            house_rule("tobacco", when_update={"value": 5}, applies_to={}),
            house_rule("labour", when={"metric": "country.ituc.rating", "op": ">=", "value": "4"}),
            house_rule("norms", when={"metric": "norms.status", "op": "!=", "value": "compliant"}),
            house_rule("freedom", applies_to={"issuer_kinds": ["sovereign", "sub_sovereign"]}),
            {
                "id": "coal",
                "title": "No coal power at all",
                "source": "mandate annex 1",
                "when": {"metric": "revenue_pct.thermal_coal_power", "op": ">", "value": 0},
                "outcome": "exclude",
            },
        ],
        lists={"focus": "exclude", "inclusion": "ignore"},
        exceptions=[house_exception(max_duration_days=90, lifts=[])],
        position_limits=[{**HOUSE["position_limits"][0], "max_portfolio_pct": 2.5}],
    )
    created = await create(client, document, writer)
    assert created["version"] == 1
    read = (await client.get("/v1/policies/mandate/versions/1", headers=writer)).json()
    assert (read["extends"], read["base_version"]) == ("house", house["version"])
    await approve(client, "mandate", 1, approver)

    import datetime as dt

    async with sessionmaker() as session:
        effective = await applied_at(session, "mandate", dt.datetime.now(dt.UTC))
    assert (effective.base_key, effective.base_version) == ("house", 1)
    merged = effective.document
    assert [r.id for r in merged.rules][-1] == "coal"
    tobacco = merged.rule("tobacco")
    assert tobacco is not None
    assert tobacco.when.value == 5  # type: ignore[union-attr]
    assert merged.data.max_age_days == 200
    assert merged.lists.focus == "exclude"
    assert merged.exceptions[0].lifts == []

    # A later version may not switch its base or drop the overlay.
    standalone = {k: v for k, v in document.items() if k != "extends"}
    body = assert_problem(await post_document(client, "mandate", standalone, writer), 422)
    assert ["body", "extends"] in [e["loc"] for e in body["errors"]]


async def test_overlay_needs_an_approved_plain_base(
    client: httpx.AsyncClient, writer: dict[str, str], approver: dict[str, str]
) -> None:
    nothing = await post_document(client, "mandate", overlay(), writer)
    assert "no policy 'house'" in assert_problem(nothing, 422)["errors"][0]["msg"]
    await create(client, HOUSE, writer)
    draft_only = await post_document(client, "mandate", overlay(), writer)
    assert "no approved version" in assert_problem(draft_only, 422)["errors"][0]["msg"]
    await approve(client, "house", 1, approver)
    assert (await post_document(client, "mandate", overlay(), writer)).status_code == 201
    await approve(client, "mandate", 1, approver)
    deeper = {**overlay(), "key": "deeper", "extends": "mandate"}
    body = assert_problem(await post_document(client, "deeper", deeper, writer), 422)
    assert "overlays of overlays" in body["errors"][0]["msg"]
    itself = {**overlay(), "extends": "mandate"}
    body = assert_problem(await post_document(client, "mandate", itself, writer), 422)
    assert body["errors"][0]["loc"] == ["body", "extends"]


async def test_overlay_approval_is_checked_again_against_the_latest_base(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    approver: dict[str, str],
    house: dict[str, Any],
) -> None:
    mandate = overlay(rules=[house_rule("tobacco", when_update={"value": 30})])
    await create(client, mandate, writer)
    stricter_base = copy.deepcopy(HOUSE)
    stricter_base["rules"][0]["when"]["value"] = 10
    await create_approved(client, stricter_base, writer, approver)
    body = assert_problem(await approve(client, "mandate", 1, approver), 409)
    assert "no longer passes against its base" in body["detail"]
    assert body["errors"][0]["loc"] == ["document", "rules", 0, "when"]


async def test_overlay_exceptions_may_name_base_rules(
    client: httpx.AsyncClient, writer: dict[str, str], house: dict[str, Any]
) -> None:
    good = overlay(exceptions=[house_exception(lifts=["defence"])])
    assert (await post_document(client, "mandate", good, writer)).status_code == 201
    bad = overlay(
        exceptions=[house_exception(lifts=[], conditions_update={"not_hit_by": ["weapons", "x"]})]
    )
    body = assert_problem(await post_document(client, "mandate", bad, writer), 422)
    assert body["errors"][0]["loc"] == ["body", "exceptions", 0, "conditions", "not_hit_by", 1]


# ---------------------------------------------------------------------------------------------
# Diff
# ---------------------------------------------------------------------------------------------


async def test_diff_shows_rules_added_removed_and_changed_field_by_field(
    client: httpx.AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    await create(client, shipped("rpf"), writer)
    second = copy.deepcopy(shipped("rpf"))
    tobacco = next(r for r in second["rules"] if r["id"] == "tobacco")
    tobacco["when"]["value"] = 40
    tobacco["title"] = "Tobacco producers (more than 40 % of revenue)"
    fossil = next(r for r in second["rules"] if r["id"] == "fossil-fuels")
    fossil["when"]["any"][2]["value"] = 1
    second["rules"] = [r for r in second["rules"] if r["id"] != "coal-power"]
    second["rules"].append(
        {
            "id": "gambling",
            "title": "Gambling",
            "source": "committee decision 2026-11",
            "when": {"metric": "norms.status", "op": "==", "value": "watchlist"},
            "outcome": "watch",
        }
    )
    second["data"]["max_age_days"] = 200
    del second["lists"]
    await create(client, second, writer)

    response = await client.get("/v1/policies/rpf/versions/2/diff?against=1", headers=reader)
    assert response.status_code == 200, response.text
    diff = response.json()
    assert (diff["version"], diff["against"], diff["identical"]) == (2, 1, False)
    rules = diff["rules"]
    assert rules["added"] == [{"id": "gambling", "title": "Gambling"}]
    assert rules["removed"] == [
        {"id": "coal-power", "title": "Power generation from thermal coal above 10 % of revenue"}
    ]
    changed = {c["id"]: c["changes"] for c in rules["changed"]}
    assert set(changed) == {"tobacco", "fossil-fuels"}
    assert changed["tobacco"] == [
        {
            "path": "title",
            "change": "changed",
            "before": "Tobacco producers (more than 50 % of revenue)",
            "after": "Tobacco producers (more than 40 % of revenue)",
        },
        {"path": "when.value", "change": "changed", "before": 50, "after": 40},
    ]
    assert changed["fossil-fuels"] == [
        {"path": "when.any.2.value", "change": "changed", "before": 5, "after": 1}
    ]
    changes = {c["path"]: c for c in diff["changes"]}
    assert changes["data.max_age_days"] == {
        "path": "data.max_age_days",
        "change": "changed",
        "before": 400,
        "after": 200,
    }
    assert changes["lists"]["change"] == "removed"
    assert diff["exceptions"] == {"added": [], "removed": [], "changed": []}

    default_against = await client.get("/v1/policies/rpf/versions/2/diff", headers=reader)
    assert default_against.json() == diff
    backwards = (
        await client.get("/v1/policies/rpf/versions/1/diff?against=2", headers=reader)
    ).json()
    assert backwards["rules"]["added"][0]["id"] == "coal-power"
    same = (await client.get("/v1/policies/rpf/versions/1/diff?against=1", headers=reader)).json()
    assert same["identical"] is True
    assert_problem(await client.get("/v1/policies/rpf/versions/1/diff", headers=reader), 422)


@pytest.mark.parametrize("key", SHIPPED)
async def test_the_document_endpoint_gives_exactly_the_hashed_bytes(
    client: httpx.AsyncClient, writer: dict[str, str], reader: dict[str, str], key: str
) -> None:
    """What an auditor verifies with `curl .../document | sha256sum`: the body's SHA-256 is the
    version's published sha256 (floats such as `pct: 50.0` kept as hashed, nothing added)."""
    document = shipped_path(key).read_bytes()
    created = await post_document(client, key, document, writer, "application/yaml")
    assert created.status_code == 201, created.text
    published = (await client.get(f"/v1/policies/{key}/versions/1", headers=reader)).json()
    response = await client.get(f"/v1/policies/{key}/versions/1/document", headers=reader)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert hashlib.sha256(response.content).hexdigest() == published["sha256"]
    assert response.headers["etag"] == f'"{published["sha256"]}"'
    assert json.loads(response.content) == published["document"]

    assert_problem(await client.get(f"/v1/policies/{key}/versions/9/document", headers=reader), 404)
    assert_problem(await client.get("/v1/policies/nope/versions/1/document", headers=reader), 404)
    assert_problem(await client.get(f"/v1/policies/{key}/versions/x/document", headers=reader), 422)
    assert_problem(await client.get(f"/v1/policies/{key}/versions/1/document"), 401)
