"""The auditor's console: server-rendered pages under ``/console`` (not part of the API schema).

Sign in with an API key (``/console/sign-in``); the key's scopes decide what each page shows.
Errors are pages here, not problem+json: ``ConsoleRoute`` renders them (401: back to the
sign-in page). Every page is served with a Content-Security-Policy allowing this service's own
stylesheet and nothing else (no script, no external asset: it works offline).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.console import service, sessions
from app.console.sessions import ConsoleUser
from app.datasets import service as datasets
from app.decisions import service as decisions
from app.kit.db import DbSession, get_database, read_only_sessions, read_only_transaction
from app.kit.errors import AppError, Forbidden, InvalidInput, NotAuthenticated, NotFound
from app.kit.inputs import PolicyKey
from app.kit.limits import BODY_MAX_DEFAULT
from app.lists import formats
from app.lists import service as lists
from app.models import VERDICTS
from app.policies import service as policies
from app.screening import service as screening
from app.screening.index import VerdictIndex

HERE = Path(__file__).parent
STATIC = {"console.css": "text/css; charset=utf-8"}

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals["VERDICTS"] = VERDICTS
_templates.globals["Scope"] = Scope
_templates.filters["pretty"] = service.pretty

# No script at all, styles from this service only, forms post here only, never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# Pages hold what a key may read: never stored by the browser or a proxy.
NO_STORE = {"Cache-Control": "no-store", **SECURITY_HEADERS}


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page (then back to ``next``)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class FormTokenRefused(Forbidden):
    slug = "form-token-refused"
    title = "Form expired or not ours"


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    html = _templates.get_template(name).render(request=request, user=user, **context)
    return HTMLResponse(html, status_code=status_code, headers=NO_STORE)


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "error.html", status, title=title, detail=detail)


class ConsoleRoute(APIRoute):
    """A console route: errors become pages, a missing session a redirect to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                target = "/console/sign-in"
                if exc.next_path not in ("/console", "/console/"):
                    target += "?" + urlencode({"next": exc.next_path})
                return RedirectResponse(target, status_code=303, headers=NO_STORE)
            except AppError as exc:
                return error_page(request, exc.status, exc.title, exc.detail)
            except RequestValidationError:
                # A path or query value of the wrong form (an id that is not one): nothing here.
                return error_page(
                    request, 404, "Not found", "There is no such page: check the address."
                )

        return console_handler


router = APIRouter(
    prefix="/console",
    include_in_schema=False,
    route_class=ConsoleRoute,
    max_body_size=BODY_MAX_DEFAULT,
)

# Pages that only read: on SQLite their transaction never takes the write lock.
READS = [Depends(read_only_transaction)]

VersionNumber = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


# -- sessions ------------------------------------------------------------------------------------


async def console_user(request: Request) -> ConsoleUser:
    token = request.cookies.get(sessions.SESSION_COOKIE)
    user = None
    if token:
        user = await sessions.current(
            read_only_sessions(request), get_database(request).sessionmaker, token
        )
    if user is None:
        raise SignInRequired(request.url.path)
    request.state.console_user = user
    request.state.principal = user.principal
    return user


User = Annotated[ConsoleUser, Depends(console_user)]


async def form_checked(request: Request, user: User) -> ConsoleUser:
    """A POST's form token must be this session's (CSRF): else 403, and nothing is done."""
    form = await request.form()
    given = form.get("csrf_token")
    if not isinstance(given, str) or not sessions.same_token(given, user.csrf_token):
        raise FormTokenRefused(
            "This form was not sent from a page of your current session (it may be from an "
            "earlier session, or from another site). Go back, reload the page and try again."
        )
    return user


Poster = Annotated[ConsoleUser, Depends(form_checked)]


def need(user: ConsoleUser, scope: Scope) -> None:
    if not user.can(scope):
        raise Forbidden(
            f"Your key {user.principal.name!r} lacks the scope '{scope.value}' this page needs. "
            "Ask an administrator for a key with that scope."
        )


def _safe_next(next_path: str | None) -> str:
    """Only a console page of this site is a place to go back to after signing in."""
    if (
        next_path
        and next_path.startswith("/console")
        and "//" not in next_path
        and "\\" not in next_path
        and all(0x20 < ord(c) < 0x7F for c in next_path)
    ):
        return next_path
    return "/console"


def _sign_in_page(
    request: Request, status: int = 200, error: str | None = None, **context: Any
) -> HTMLResponse:
    form_token = request.cookies.get(sessions.SIGN_IN_COOKIE) or sessions.new_token()
    response = render(
        request, "sign_in.html", status, error=error, form_token=form_token, **context
    )
    response.set_cookie(
        sessions.SIGN_IN_COOKIE,
        form_token,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/sign-in")
async def sign_in_form(
    request: Request, next: Annotated[str, Query(max_length=500)] = "", signed_out: str = ""
) -> Response:
    return _sign_in_page(request, next_path=_safe_next(next), signed_out=bool(signed_out))


@router.post("/sign-in")
async def sign_in(request: Request, session: DbSession) -> Response:
    form = await request.form()
    next_path = _safe_next(_text(form.get("next")))
    given = _text(form.get("csrf_token"))
    expected = request.cookies.get(sessions.SIGN_IN_COOKIE)
    if expected is None or not sessions.same_token(given, expected):
        return _sign_in_page(
            request,
            403,
            "The sign-in form expired or was not sent from this site: try again.",
            next_path=next_path,
        )
    key = (_text(form.get("api_key")) or "").strip()
    if not key:
        return _sign_in_page(request, 422, "Enter your API key.", next_path=next_path)
    try:
        # No cache: a key revoked a second ago must not sign in.
        principal = await auth_service.authenticate(read_only_sessions(request), key)
    except NotAuthenticated as exc:
        return _sign_in_page(request, 401, exc.detail, next_path=next_path)
    token, _ = await sessions.start(session, principal)
    response = RedirectResponse(next_path, status_code=303, headers=NO_STORE)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        token,
        max_age=int(sessions.SESSION_LIFETIME.total_seconds()),
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(sessions.SIGN_IN_COOKIE, path=sessions.COOKIE_PATH)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, _: Poster) -> Response:
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if token:
        await sessions.end(get_database(request).sessionmaker, token, "signed-out")
    response = RedirectResponse("/console/sign-in?signed_out=1", status_code=303, headers=NO_STORE)
    response.delete_cookie(
        sessions.SESSION_COOKIE,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- assets and home -----------------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        raise NotFound("There is no such file.")
    return Response(
        (HERE / "static" / name).read_bytes(),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", **SECURITY_HEADERS},
    )


@router.get("", dependencies=READS)
async def home(request: Request, user: User) -> Response:
    return render(request, "home.html")


# -- decisions -----------------------------------------------------------------------------------


@router.get("/decisions", dependencies=READS)
async def search_decisions(
    request: Request,
    session: DbSession,
    user: User,
    instrument: str = "",
    issuer: str = "",
    portfolio: str = "",
    policy: str = "",
    verdict: str = "",
    from_: Annotated[str, Query(alias="from")] = "",
    to: str = "",
    request_id: str = "",
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    need(user, Scope.decisions_read)
    form = service.SearchForm(
        instrument=instrument,
        issuer=issuer,
        portfolio=portfolio,
        policy=policy,
        verdict=verdict,
        from_=from_,
        to=to,
        request_id=request_id,
    )
    try:
        filters = service.filters_of(form)
    except InvalidInput as exc:
        return render(request, "decisions.html", 422, form=form, error=exc.detail, found=None)
    found, next_before = await decisions.newest_decisions(
        session, filters, before, service.SEARCH_PAGE
    )
    next_url = None
    if next_before is not None:
        asked = {
            k: v
            for k, v in {
                "instrument": instrument,
                "issuer": issuer,
                "portfolio": portfolio,
                "policy": policy,
                "verdict": verdict,
                "from": from_,
                "to": to,
                "request_id": request_id,
            }.items()
            if v
        }
        next_url = "/console/decisions?" + urlencode({**asked, "before": next_before})
    return render(
        request,
        "decisions.html",
        form=form,
        error=None,
        found=found,
        next_url=next_url,
        continued=before is not None,
    )


def _decision_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(f"There is no decision {text!r}: a decision id is a UUID.") from None


@router.get("/decisions/{decision_id}", dependencies=READS)
async def decision(request: Request, session: DbSession, user: User, decision_id: str) -> Response:
    need(user, Scope.decisions_read)
    page = await service.decision_page(session, _decision_id(decision_id))
    return render(request, "decision.html", **page, replay=None)


@router.post("/decisions/{decision_id}/replay", dependencies=READS)
async def replay(request: Request, session: DbSession, user: Poster, decision_id: str) -> Response:
    need(user, Scope.decisions_read)
    found = _decision_id(decision_id)
    recompute: decisions.Recompute = request.app.state.recompute
    result = await decisions.replay(session, found, recompute)
    page = await service.decision_page(session, found)
    return render(request, "decision.html", **page, replay=result)


@router.get("/decisions/{decision_id}/audit-pack", dependencies=READS)
async def audit_pack(session: DbSession, user: User, decision_id: str) -> Response:
    need(user, Scope.decisions_read)
    found = _decision_id(decision_id)
    pack = await service.audit_pack(session, found)
    return Response(
        orjson.dumps(pack, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="decision-{found}.audit.json"',
            **NO_STORE,
        },
    )


@router.get("/audit-packs", dependencies=READS)
async def verifying_packs(request: Request, user: User) -> Response:
    return render(request, "audit_packs.html")


@router.get("/verify", dependencies=READS)
async def verify(
    request: Request,
    session: DbSession,
    user: User,
    from_: Annotated[str, Query(alias="from")] = "",
    to: str = "",
    run: str = "",
) -> Response:
    need(user, Scope.decisions_read)
    result = None
    error = None
    if run:
        try:
            start = service.parse_time(from_, "from")
            end = service.parse_time(to, "to")
            if start is not None and end is not None and start >= end:
                raise InvalidInput("from must be before to.")
        except InvalidInput as exc:
            error = exc.detail
        else:
            result = await decisions.verify(session, start, end)
    return render(
        request,
        "verify.html",
        422 if error else 200,
        from_=from_,
        to=to,
        result=result,
        error=error,
    )


# -- policies ------------------------------------------------------------------------------------


@router.get("/policies", dependencies=READS)
async def policy_list(request: Request, session: DbSession, user: User) -> Response:
    return render(request, "policies.html", policies=await policies.list_policies(session))


def _version_number(text: str, name: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 9:
        raise InvalidInput(f"{name}: a version number (1, 2, ...).")
    return int(text)


async def _policy_page(
    request: Request,
    session: DbSession,
    key: str,
    a: str = "",
    b: str = "",
    impact: dict[str, Any] | None = None,
) -> Response:
    overview, versions = await policies.get_policy(session, key)
    diff = None
    error = None
    try:
        before = _version_number(a, "from version")
        after = _version_number(b, "to version")
        if before is not None and after is not None:
            _, _, diff = await policies.diff_versions(session, key, after, before)
    except InvalidInput as exc:
        error = exc.detail
    return render(
        request,
        "policy.html",
        422 if error else 200,
        overview=overview,
        versions=versions,
        a=a,
        b=b,
        diff=diff,
        error=error,
        impact=impact,
    )


@router.get("/policies/{key}", dependencies=READS)
async def policy(
    request: Request, session: DbSession, user: User, key: PolicyKey, a: str = "", b: str = ""
) -> Response:
    return await _policy_page(request, session, key, a, b)


@router.get("/policies/{key}/versions/{number}", dependencies=READS)
async def policy_version(
    request: Request, session: DbSession, user: User, key: PolicyKey, number: VersionNumber
) -> Response:
    found, version = await policies.get_version(session, key, number)
    sha256, canonical = await policies.export_version(session, key, number)
    return render(
        request,
        "policy_version.html",
        policy=found,
        version=version,
        sha256=sha256,
        document=orjson.loads(canonical),
    )


@router.post("/policies/{key}/versions/{number}/impact", dependencies=READS)
async def policy_impact(
    request: Request, session: DbSession, user: Poster, key: PolicyKey, number: VersionNumber
) -> Response:
    if not (user.can(Scope.policies_write) or user.can(Scope.policies_approve)):
        raise Forbidden(
            f"Your key {user.principal.name!r} lacks the scope 'policies:write' or "
            "'policies:approve' an impact preview needs."
        )
    impact = await screening.impact(session, key, number)
    return await _policy_page(request, session, key, impact=impact)


# -- lists ---------------------------------------------------------------------------------------


@router.get("/lists", dependencies=READS)
async def list_page(request: Request, session: DbSession, user: User) -> Response:
    need(user, Scope.lists_read)
    rows = []
    for overview in await policies.list_policies(session):
        token = None
        problem = None
        try:
            token = await lists.plan_list(session, overview.policy.key, "instrument", None, None)
        except AppError as exc:
            problem = exc.detail
        rows.append(
            {
                "overview": overview,
                "token": None if token is None else token.token,
                "problem": problem,
            }
        )
    return render(request, "lists.html", rows=rows)


@router.get("/lists/{policy_key}/download", dependencies=READS)
async def download_list(
    request: Request,
    session: DbSession,
    user: User,
    policy_key: PolicyKey,
    level: lists.Level = "instrument",
) -> Response:
    need(user, Scope.lists_read)
    plan = await lists.plan_list(session, policy_key, level, None, None)
    index = getattr(request.app.state, "verdict_index", None)
    export = await lists.load_list(
        session, plan, index if isinstance(index, VerdictIndex) else None
    )
    today = dt.datetime.now(dt.UTC).date().isoformat()
    filename = quote(f"{policy_key}-{level}s-{today}.csv")
    return StreamingResponse(
        formats.render("csv", export),
        media_type=formats.MEDIA_TYPES["csv"],
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-List-Token": plan.token,
            **NO_STORE,
        },
    )


# -- datasets ------------------------------------------------------------------------------------

DATASETS_PAGE = 100


@router.get("/datasets", dependencies=READS)
async def dataset_list(
    request: Request,
    session: DbSession,
    user: User,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    found = await datasets.list_datasets(
        session, kind=None, provider=None, limit=DATASETS_PAGE + 1, before_id=before
    )
    more = len(found) > DATASETS_PAGE
    found = found[:DATASETS_PAGE]
    next_url = f"/console/datasets?before={found[-1].id}" if more else None
    return render(request, "datasets.html", datasets=found, next_url=next_url)


@router.get("/datasets/{dataset_id}", dependencies=READS)
async def dataset(
    request: Request,
    session: DbSession,
    user: User,
    dataset_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
) -> Response:
    return render(request, "dataset.html", dataset=await datasets.get_dataset(session, dataset_id))
