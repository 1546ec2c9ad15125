"""/api/docs: Swagger UI served by the app itself (issue 11 #12), never from a CDN.

The files under static/swagger-ui are swagger-ui-dist 5.35.0 from npm, unchanged (LICENSE and
NOTICE beside them), plus our docs-init.js. Each is pinned here by its SHA-384: the page names
it with Subresource Integrity, a test compares the files with the pins, and only these files are
served. The page sends a Content-Security-Policy that allows scripts and styles from this origin
only (no inline scripts). The page needs no identity; the schema it loads does.

To upgrade: ``npm pack swagger-ui-dist@<version>``, copy the same files, update
SWAGGER_UI_VERSION and the pins (``openssl dgst -sha384 -binary FILE | base64``).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from shared.api.problems import ApiProblem

SWAGGER_UI_VERSION = "5.35.0"
ASSET_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
DOCS_URL = "/api/docs"
# file name -> (media type, SRI pin)
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": (
        "text/javascript",
        "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9",
    ),
    "swagger-ui.css": (
        "text/css",
        "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I",
    ),
    "docs-init.js": (
        "text/javascript",
        "sha384-rLMZfFNrGjYZWQxjrZmQ6PXKkPG4mPdmLaO1Z7WC/EWeAzoBhcnEKpFUXlJd1IdS",
    ),
    "favicon-32x32.png": (
        "image/png",
        "sha384-vCPruBEcPmxk2uv19KNJCkWttTDv8oQxBAzSuTndOepjsIyiKHSoLNlWOcQMpXdL",
    ),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def page(openapi_url: str, title: str) -> str:
    def pinned(name: str) -> str:
        return f'src="{DOCS_URL}/{name}" integrity="{ASSETS[name][1]}" crossorigin="anonymous"'

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{DOCS_URL}/swagger-ui.css" integrity="{ASSETS["swagger-ui.css"][1]}" crossorigin="anonymous">
<link rel="icon" type="image/png" href="{DOCS_URL}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi="{escape(openapi_url)}"></div>
<script {pinned("swagger-ui-bundle.js")}></script>
<script {pinned("docs-init.js")}></script>
</body>
</html>
"""  # noqa: E501


def docs_router(openapi_url: str, title: str) -> APIRouter:
    """The page and its assets (anonymous: they hold nothing but Swagger UI)."""
    html = page(openapi_url, title)
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_URL)
    def docs() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    @router.get(DOCS_URL + "/{name}")
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise ApiProblem(404, "No such resource.", kind="not-found")
        media_type, _ = ASSETS[name]
        return Response(
            (ASSET_DIR / name).read_bytes(),
            media_type=media_type,
            headers={
                "Cache-Control": "public, max-age=86400",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return router
