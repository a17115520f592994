from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.auth.dependencies import AuthorizeAny, CurrentPrincipal, require_scope
from app.auth.schemas import Principal
from app.auth.scopes import Scope
from app.decisions.log import DecisionLog
from app.kit.db import DbSession, read_only_sessions_of
from app.kit.errors import FieldError, InvalidInput
from app.kit.inputs import Identifier, PolicyKey, Rfc3339, RowNumber
from app.kit.limits import BODY_MAX_CHECKS, BODY_MAX_DEFAULT
from app.kit.memory import collection_paused
from app.kit.openapi import problem_responses
from app.screening import service
from app.screening.index import VerdictIndex
from app.screening.schemas import CheckBatch, CheckBatchResult, ComplianceRun, Decision

router = APIRouter(max_body_size=BODY_MAX_DEFAULT, prefix="/v1", tags=["checks"])


@dataclass(frozen=True, slots=True)
class Checker:
    """What a check needs, resolved as ONE dependency: the hot path of the service, where
    each FastAPI dependency costs as much as the check's own work. Checks only read (a
    read-only session, opened only when the compiled index cannot answer); their one write
    is the decision log's own transaction."""

    principal: Principal
    log: DecisionLog
    index: VerdictIndex | None
    sessions: async_sessionmaker[AsyncSession]
    request_id: str | None


def checker_of(app: Any, request_id: Any, principal: Principal) -> Checker:
    """The ``Checker`` of a request to ``app`` (its state: the decision log, the compiled
    index, the database) by a principal already known to hold the scope ``check``; the
    dependency below and the fast path (``app.screening.fast_path``) both build it here."""
    state = app.state
    index = getattr(state, "verdict_index", None)
    return Checker(
        principal=principal,
        log=state.decision_log,
        index=index if isinstance(index, VerdictIndex) else None,
        sessions=read_only_sessions_of(state.database),
        request_id=request_id if isinstance(request_id, str) else None,
    )


async def checker(request: Request, principal: CurrentPrincipal) -> Checker:
    require_scope(principal, Scope.check)
    return checker_of(request.app, getattr(request.state, "request_id", None), principal)


CheckerDep = Annotated[Checker, Depends(checker)]


def _json(content: Any) -> Response:
    # Decisions are already JSON-ready dicts (stored and hashed as such): serialize once, fast.
    return Response(orjson.dumps(content), media_type="application/json")


@router.get(
    "/check",
    operation_id="checkInstrument",
    response_model=Decision,
    summary="May we hold this instrument (or deal with this issuer) under this policy?",
    description=(
        "The verdict with the rules, data and policy version behind it. The decision is stored "
        "durably before it is returned. `as_of` in the past answers with the policy version in "
        "force then and only the data loaded by then. With `portfolio` the policy is the "
        "portfolio's and its account decides which exceptions apply (seed 001); `policy` may "
        "then be left out, and must be the portfolio's when given (else 422).\n\n"
        "Give exactly one of `instrument` and `issuer`. `instrument` is an ISIN, CUSIP, SEDOL "
        "or FIGI (recognised with python-stdnum's validators; a CUSIP, SEDOL or FIGI is "
        "resolved to the ISIN of the current instrument record carrying it at the data "
        "version; none, or two different instruments: `unknown`, naming them; valid under no "
        "scheme: 422 naming the schemes tried). `issuer` is an issuer id or an LEI: the issuer "
        "itself is judged as the issuer-level list judges it (`GET /v1/lists/{policy}?level="
        "issuer`): a tenant, a counterparty, a new issue without an ISIN yet. An unknown "
        "issuer is `unknown`; a string shaped like an LEI that fails its check digits is 422."
    ),
    responses=problem_responses(401, 403, 404, 503),
)
async def check_one(
    checker: CheckerDep,
    instrument: Annotated[
        Identifier | None, Query(description="ISIN, CUSIP, SEDOL or FIGI (or give issuer).")
    ] = None,
    issuer: Annotated[
        Identifier | None,
        Query(description="Issuer id or LEI: judge the issuer itself (or give instrument)."),
    ] = None,
    policy: Annotated[
        PolicyKey | None, Query(description="Policy key, e.g. rpf (required without portfolio).")
    ] = None,
    portfolio: Annotated[
        Identifier | None, Query(description="Portfolio id: its policy and account apply.")
    ] = None,
    as_of: Annotated[
        Rfc3339 | None, Query(description="RFC 3339 with an offset; default now.")
    ] = None,
) -> Response:
    # GET /v1/check is usually answered by app.screening.fast_path, which validates these
    # parameters with this route's own fields and then calls answer_check too; this route is
    # its definition (OpenAPI, validation, errors) and answers whatever the fast path leaves.
    return await answer_check(checker, instrument, issuer, policy, portfolio, as_of)


async def answer_check(
    checker: Checker,
    instrument: str | None,
    issuer: str | None,
    policy: str | None,
    portfolio: str | None,
    as_of: dt.datetime | None,
) -> Response:
    """``GET /v1/check``'s answer from its validated parameters (the decision, logged).

    Errors (AppError): 422 both or neither of instrument and issuer, neither policy nor
    portfolio, a malformed identifier or a future ``as_of``; 404 unknown policy or portfolio;
    503 no data (see ``service.check``)."""
    if (instrument is None) == (issuer is None):
        raise InvalidInput(
            "Give exactly one of instrument (ISIN, CUSIP, SEDOL or FIGI) and issuer (issuer id "
            "or LEI).",
            errors=[
                FieldError(
                    loc=("query", "instrument" if instrument is None else "issuer"),
                    msg="exactly one of instrument and issuer",
                )
            ],
        )
    if policy is None and portfolio is None:
        raise InvalidInput(
            "Name a policy (policy=rpf) or a portfolio (portfolio=ID).",
            errors=[FieldError(loc=("query", "policy"), msg="required without portfolio")],
        )
    if issuer is not None:
        decision = await service.check_issuer(
            checker.sessions,
            checker.log,
            checker.principal.actor,
            checker.request_id,
            service.IssuerAsked(policy, issuer, as_of, portfolio),
            index=checker.index,
        )
        return _json(decision)
    assert instrument is not None
    asked = service.CheckAsked(policy, [instrument], as_of, portfolio)
    (decision,) = await _check(checker, asked, strict_isins=True)
    return _json(decision)


async def _check(
    checker: Checker, asked: service.CheckAsked, *, strict_isins: bool
) -> list[dict[str, Any]]:
    return await service.check(
        checker.sessions,
        checker.log,
        checker.principal.actor,
        checker.request_id,
        asked,
        strict_isins=strict_isins,
        index=checker.index,
    )


@router.post(
    "/checks",
    operation_id="checkBatch",
    response_model=CheckBatchResult,
    summary="Check up to 10,000 instruments or pre-trade orders at once, answered in order",
    description=(
        "Each instrument is an ISIN, CUSIP, SEDOL or FIGI (as in `GET /v1/check`). "
        "A malformed identifier does not fail the batch: its decision is `unknown` (fail "
        "closed) with a reason naming the problem, and it is logged like every other "
        "decision. The body is "
        f"at most {BODY_MAX_CHECKS:,} bytes (413), each identifier at most 64 characters (422). "
        "`orders` (with `portfolio`): each order is judged as if executed on the portfolio's "
        "current holdings, not on the other orders; an order that would take a position limit's "
        "share above its limit, or raise it while above, is `excluded` with a reason giving the "
        "share after the order (`metric` portfolio_pct) and the limit; exactly at the limit is "
        "allowed. A limit that cannot be computed (a holding without market value, an unknown "
        "instrument that could matter, no position report) is `unknown`, naming why."
    ),
    responses=problem_responses(401, 403, 404, 413, 503),
    max_body_size=BODY_MAX_CHECKS,
)
async def check_many(body: CheckBatch, checker: CheckerDep) -> Response:
    orders = None
    if body.orders is not None:
        orders = [
            service.OrderAsked(o.instrument, o.side, o.market_value, o.quantity)
            for o in body.orders
        ]
    instruments = body.instruments if orders is None else [o.instrument for o in orders]
    asked = service.CheckAsked(body.policy, instruments or [], body.as_of, body.portfolio, orders)
    # Up to 10,000 decisions: some 100,000 short-lived acyclic objects, alive together until
    # the response is rendered; collections would walk them again and again (app.kit.memory).
    with collection_paused():
        return _json({"decisions": await _check(checker, asked, strict_isins=False)})


@router.get(
    "/portfolios/{portfolio_id}/compliance",
    operation_id="checkPortfolioCompliance",
    tags=["portfolios"],
    response_model=ComplianceRun,
    summary="The post-trade run: every holding's verdict, each limit's use, every breach",
    description=(
        "Judges the portfolio's position report (the newest dated on or before the time asked, "
        "as loaded by then) under its policy and account: each holding's verdict and weight, "
        "each position limit's share of the portfolio (a breach is above the limit; exactly at "
        "it is not), and the breaches. Logged like a check (its `decision_id` replays it)."
    ),
    responses=problem_responses(401, 403, 404, 503),
)
async def portfolio_compliance(
    portfolio_id: Identifier,
    checker: CheckerDep,
    as_of: Annotated[
        Rfc3339 | None, Query(description="RFC 3339 with an offset; default now.")
    ] = None,
) -> Response:
    run = await service.compliance(
        checker.sessions,
        checker.log,
        checker.principal.actor,
        checker.request_id,
        portfolio_id,
        as_of,
        checker.index,
    )
    return _json(run)


@router.post(
    "/policies/{key}/versions/{number}/impact",
    operation_id="previewPolicyImpact",
    tags=["policies"],
    summary="Before approving: which instruments and issuers would change verdict, and why",
    description=(
        "Evaluates the whole universe under this version and under the version in force now "
        "(same data), and lists every instrument whose verdict or firing rules differ."
    ),
    responses=problem_responses(401, 403, 404),
)
async def policy_impact(
    key: PolicyKey,
    number: RowNumber,
    session: DbSession,
    _: Annotated[Principal, Depends(AuthorizeAny(Scope.policies_write, Scope.policies_approve))],
) -> Response:
    return _json(await service.impact(session, key, number))
