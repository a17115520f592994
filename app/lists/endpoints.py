from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from app.auth.dependencies import Authorize
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.kit.db import DbSession, read_only_transaction
from app.kit.inputs import Identifier, PolicyKey, Rfc3339, Token
from app.kit.limits import BODY_MAX_DEFAULT
from app.kit.middleware import is_head
from app.kit.openapi import problem_responses
from app.lists import formats, service
from app.lists.schemas import ListDocument
from app.screening.index import VerdictIndex

router = APIRouter(max_body_size=BODY_MAX_DEFAULT, prefix="/v1", tags=["lists"])

LIST_TOKEN_HEADER = "X-List-Token"  # noqa: S105 - a header name, not a secret

DESCRIPTION = """\
Every issuer (`level=issuer`) or instrument (`level=instrument`, the default) whose verdict
under the policy is `excluded` or `watch`, streamed, in CSV (the default; RFC 4180 with a
header row), NDJSON (one row object per line) or JSON (one document, rows last).

**Verdicts** are those of `GET /v1/check` at the same time: the policy version(s) in force
and the data loaded by then. At issuer level the issuer itself is judged: every rule counts
whatever asset classes it is restricted to (the issuer is listed when some of its instruments
would be), and nothing travels from an underlying. `rule_ids` are the rules and list entries
that carry the row's verdict.

**since (column)**: the date the verdict rests on. Each reason carrying the verdict is
established by its newest evidence (a provider's as-of date, a list entry's `decided_on`);
the row's `since` is the earliest of those reasons' dates.

**Token**: the `ETag` (and the `X-List-Token` header) names the policy version(s), the data
version and the day the list was computed for, so it can be computed again later, identically.
`If-None-Match` with it answers 304 while nothing changed. `HEAD` answers the token (and
every other header) without computing the rows: the cheap way to poll for a change.

**Deltas**: `since=TOKEN` returns only the rows added, removed (shown as they were) or changed
since that list, with a leading `change` column; across data loads and policy versions.

Rows are ordered by ISIN (instrument level) or issuer_id (issuer level).
"""

ListsPrincipal = Annotated[Principal, Depends(Authorize(Scope.lists_read))]

_ROWS_EXAMPLE = (
    "issuer_id,name,country,lei,verdict,rule_ids,since,isin,asset_class\r\n"
    "PMI,Philip Morris International Inc.,US,,excluded,tobacco,2025-06-30,US7181721090,equity\r\n"
)


def _index(request: Request) -> VerdictIndex | None:
    index = getattr(request.app.state, "verdict_index", None)
    return index if isinstance(index, VerdictIndex) else None


def _matches(if_none_match: str | None, token: str) -> bool:
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")]
    return "*" in tags or token in tags


@router.get(
    "/lists/{policy}",
    operation_id="downloadList",
    summary="The exclusion and watch list of a policy, for custodians (streamed, cacheable)",
    description=DESCRIPTION,
    response_class=StreamingResponse,
    responses={
        200: {
            "model": ListDocument,
            "description": "The list; `ETag` and `X-List-Token` carry its token.",
            "content": {
                "text/csv": {"schema": {"type": "string"}, "example": _ROWS_EXAMPLE},
                "application/x-ndjson": {
                    "schema": {"$ref": "#/components/schemas/ListRowOut"},
                },
            },
        },
        304: {"description": "`If-None-Match` named this list's token: nothing changed."},
        **problem_responses(401, 403, 404),
    },
    dependencies=[Depends(read_only_transaction)],
)
async def get_list(
    request: Request,
    session: DbSession,
    _: ListsPrincipal,
    policy: PolicyKey,
    format_: Annotated[
        formats.ListFormat, Query(alias="format", description="csv, ndjson or json.")
    ] = "csv",
    level: Annotated[service.Level, Query(description="issuer or instrument.")] = "instrument",
    as_of: Annotated[
        Rfc3339 | None,
        Query(description="RFC 3339 with an offset: the list as it was then (policy and data)."),
    ] = None,
    since: Annotated[
        Token | None, Query(description="A list token (ETag): only what changed since that list.")
    ] = None,
    portfolio: Annotated[
        Identifier | None,
        Query(
            description="A portfolio held under this policy: the list as it applies to it (its "
            "account, own or client, decides which exceptions apply)."
        ),
    ] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    plan = await service.plan_list(session, policy, level, as_of, since, portfolio)
    headers = {
        "ETag": f'"{plan.token}"',
        LIST_TOKEN_HEADER: plan.token,
        "Cache-Control": "no-cache",  # may be stored, but revalidated (cheap: a 304)
    }
    if _matches(if_none_match, plan.token):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{policy}-{level}s.{format_}"'
    media_type = formats.MEDIA_TYPES[format_]
    if is_head(request.scope):
        # A poller reading the token: the GET's headers (a streamed body has no length), and
        # no rows computed; the token is the plan's.
        return StreamingResponse(iter(()), media_type=media_type, headers=headers)
    export = await service.load_list(session, plan, _index(request))
    return StreamingResponse(
        formats.render(format_, export), media_type=media_type, headers=headers
    )
