"""/docs and /redoc work offline: every script, style sheet and icon they load is served by
the service itself (vendored under app/docs/static/), none from a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from app.docs.endpoints import STATIC_DIRECTORY

_CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


class _References(HTMLParser):
    """The URLs a page loads: <script src>, <link href>, <img src>, <redoc spec-url>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in {"src", "href", "spec-url"}:
                self.urls.append(value)


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    # Swagger UI is started from an inline script: its `url: '...'` is the document it loads.
    parser.urls.extend(re.findall(r"""url: ?['"]([^'"]+)['"]""", html))
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_nothing_from_another_host(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = _references(html)
    assert "/openapi.json" in urls
    assets = [url for url in urls if url != "/openapi.json"]
    assert any(url.endswith(".js") for url in assets), urls
    # No absolute URL (http://, https://, protocol-relative //) anywhere in the page: the only
    # one it could carry is the spec's, and that one is relative too.
    assert re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE) is None, html
    assert "fonts.googleapis" not in html
    for url in assets:
        assert url.startswith("/docs-assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rfind(".") :]
        assert asset.headers["content-type"].split(";")[0] in _CONTENT_TYPES[suffix], url
        assert asset.content == (STATIC_DIRECTORY / url.removeprefix("/docs-assets/")).read_bytes()
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["info"]["title"] == "mayhold"


async def test_swagger_ui_does_not_call_the_online_validator(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert '"validatorUrl": null' in html


def test_redoc_fetches_no_logo_from_its_cdn() -> None:
    """ReDoc's footer loads Redocly's logo from cdn.redoc.ly when the page opens (seen in
    Chromium): the vendored bundle carries an empty inline image instead
    (scripts/vendor_docs_assets.sh)."""
    bundle = (STATIC_DIRECTORY / "redoc" / "redoc.standalone.js").read_text(encoding="utf-8")
    assert "cdn.redoc.ly" not in bundle
    assert 'alt:"redocly logo",onError:()=>t(!1),src:"data:image/svg+xml,' in bundle


def test_vendored_assets_carry_their_licences() -> None:
    for bundle, licences in {
        "swagger-ui": ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"),
        "redoc": ("LICENSE", "redoc.standalone.js.LICENSE.txt"),
    }.items():
        for licence in licences:
            assert (STATIC_DIRECTORY / bundle / licence).is_file(), (bundle, licence)
    assert "Apache License" in (STATIC_DIRECTORY / "swagger-ui" / "LICENSE").read_text()
    assert "MIT" in (STATIC_DIRECTORY / "redoc" / "LICENSE").read_text()


async def test_a_missing_asset_is_a_problem_not_a_directory_listing(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/docs-assets/no-such-file.js", "/docs-assets/", "/docs-assets/../main.py"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json", path
