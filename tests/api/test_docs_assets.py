"""Issue 11 #12: /api/docs loads Swagger UI from the app itself (vendored, pinned files with
Subresource Integrity), never from a CDN."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.testclient import TestClient

from shared.api.docs import ASSET_DIR, ASSETS, SWAGGER_UI_VERSION


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def test_the_page_loads_only_same_origin_assets_with_integrity(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.text
    assert "cdn" not in html.lower() and "//" not in re.sub(r"<!--.*?-->", "", html)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/api/docs/") for s in sources), sources
    for tag in re.findall(r"<(?:script|link)\b[^>]*>", html):
        if "src=" in tag or 'rel="stylesheet"' in tag:
            assert 'integrity="sha384-' in tag and 'crossorigin="anonymous"' in tag, tag
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy


def test_every_asset_is_served_and_matches_its_pin(client: TestClient) -> None:
    for name, (media_type, pin) in ASSETS.items():
        data = (ASSET_DIR / name).read_bytes()
        assert _sri(data) == pin, f"{name} differs from the pinned swagger-ui {SWAGGER_UI_VERSION}"
        served = client.get(f"/api/docs/{name}")
        assert served.status_code == 200
        assert served.content == data
        assert served.headers["content-type"].startswith(media_type)
        assert f'integrity="{pin}"' in client.get("/api/docs").text or name.endswith(".png")


def test_nothing_else_is_served_from_the_asset_folder(client: TestClient) -> None:
    for name in ("LICENSE", "../app.py", "%2e%2e/app.py", "swagger-ui.js", "index.html"):
        assert client.get(f"/api/docs/{name}").status_code == 404
