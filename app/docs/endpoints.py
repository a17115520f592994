"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from files this package carries.

FastAPI's own pages load their scripts from a CDN, which a bank's network or an air-gapped
deployment does not reach: the pages would be blank. Here the same pages point at copies under
``static/`` (vendored at pinned versions with their licences by ``scripts/vendor_docs_assets.sh``;
they ship in the wheel with the package), served under ``ASSETS_PATH``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/docs-assets"

router = APIRouter(include_in_schema=False)

# Swagger UI would otherwise send the document to validator.swagger.io for a badge.
_SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def _assets(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{ASSETS_PATH}"


def _openapi_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    assets = _assets(request)
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title}: Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{assets}/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    assets = _assets(request)
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title}: ReDoc",
        redoc_js_url=f"{assets}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )


# Starlette's file serving (content types, ETag and Last-Modified, no path outside the
# directory), called from a route rather than mounted: a route is matched like any other, so the
# access log and metrics label it by its template and a missing file is a problem+json 404.
_STATIC = StaticFiles(directory=STATIC_DIRECTORY)


@router.get(ASSETS_PATH + "/{path:path}")
async def asset(path: str, request: Request) -> Response:
    return await _STATIC.get_response(path, request.scope)
