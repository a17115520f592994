"""Schemathesis over every operation (issue 11, "Done means"): through the real app and a real
database (both dialects), authenticated as admin, with the fixture universe and the shipped
policies loaded so that generated requests also reach real data. A few derandomised examples
per operation and generation mode keep CI fast; ``scripts/fuzz.sh`` runs long on demand.

Asserted for every response: no 500, every error problem+json, status, content type, headers
and body conform to the published OpenAPI document, and data the document calls invalid is
refused. Failures that open items of issue 11 fix are tolerated only as listed in ``KNOWN``
(operation and cause), and counted."""

from __future__ import annotations

import os

import httpx
import pytest
from fastapi import FastAPI

from app.auth.scopes import Scope
from tests.conftest import MakeKey, bearer
from tests.support.checks import open_desk
from tests.support.fuzz import KNOWN, run, summary

# Per operation and generation mode: ~330 requests per dialect in CI; scripts/fuzz.sh sets more.
EXAMPLES = int(os.environ.get("MAYHOLD_FUZZ_EXAMPLES", "6"))


async def test_every_operation_survives_schemathesis(
    app: FastAPI, client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    await open_desk(client, make_key)
    # A name no generated request guesses: revoking it would end the run early.
    admin = await make_key(Scope.admin, name="fuzz-admin-4b1f0c")
    report = await run(client, app.openapi(), bearer(admin), EXAMPLES, KNOWN)
    # What the run did (shown with -s, and by scripts/fuzz.sh): requests, statuses, known.
    print(f"\nfuzz: {report.requests} requests; statuses {sorted(report.statuses.items())}")
    for (item, operation), count in sorted(report.known.items()):
        print(f"fuzz: known ({item}): {operation}: {count}")
    assert report.requests > 200
    if report.failures:
        pytest.fail(summary(report), pytrace=False)
    assert 500 not in report.statuses or report.known, report.statuses
