"""Browser tests of the console: the app served by uvicorn on loopback (EasyAuth mode: the
browser context sends App Service's principal header, as the platform would), a run-queue worker
thread, the Dataverse emulator over HTTPS, Azurite, and Debian's headless Chromium through
Playwright. axe-core (npm) is injected into every page."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, RunningEmulator, start_emulator
from shared.settings import Settings
from tests.api.conftest import make_client  # noqa: F401  (the API tests' client fixture)
from tests.api.helpers import principal_header
from tests.support import REPO, free_port, wait_for_port

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
SECRET_SETTING = "SEGEXP_SECRET_CONSOLE_TEST"


SESSION_COOKIE = "AppServiceAuthSession"


class AppServiceAuthStandIn:
    """What App Service Authentication does in front of the app, reduced to what the tests
    need: drop any client-sent principal header, and turn the browser's session cookie into
    ``X-MS-CLIENT-PRINCIPAL`` (here the cookie simply holds the encoded principal)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"x-ms-client-principal"]
            for key, value in scope["headers"]:
                for pair in value.decode("latin-1").split(";") if key == b"cookie" else []:
                    name, _, text = pair.strip().partition("=")
                    if name == SESSION_COOKIE:
                        headers.append((b"x-ms-client-principal", text.strip('"').encode()))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


@dataclass
class Site:
    url: str
    emulator: RunningEmulator
    settings: Settings


@pytest.fixture(scope="module")
def site(azurite: Any) -> Iterator[Site]:
    import uuid

    import uvicorn

    from shared.api.app import create_api
    from shared.runs.worker_main import IMPORTS, serve
    from shared.store import open_store

    saved = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    emu = start_emulator(EmulatorConfig(contacts=200, inactive_fraction=0.05, seed=3))
    prefix = "c" + uuid.uuid4().hex[:10]
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "TABLE_PREFIX": prefix,
            "RUN_QUEUE_NAME": f"{prefix}-runs",
            "IMPORT_QUEUE_NAME": f"{prefix}-imports",
            "AUTH_MODE": "easyauth",
            "WEBSITE_AUTH_ENABLED": "true",
            "ALLOW_LOOPBACK_SALES": "true",
            "ENTRA_AUTHORITY_HOST": emu.authority_host,
            "SALES_CA_BUNDLE": emu.ca_file,
            SECRET_SETTING: emu.client_secret,
            "TOKEN_CACHE_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
    )
    store = open_store(settings)
    store.ensure()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            AppServiceAuthStandIn(create_api(lambda: settings)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    web = threading.Thread(target=server.run, daemon=True, name="console-uvicorn")
    web.start()
    stop = threading.Event()
    worker = threading.Thread(
        target=serve,
        args=(settings, store),
        kwargs={"should_stop": stop.is_set, "visibility": 120, "retry_delay": 2},
        daemon=True,
        name="console-worker",
    )
    worker.start()
    importer = threading.Thread(
        target=serve,
        args=(settings, store),
        kwargs={
            "should_stop": stop.is_set,
            "visibility": 120,
            "retry_delay": 2,
            "listener": IMPORTS,
        },
        daemon=True,
        name="console-importer",
    )
    importer.start()
    try:
        wait_for_port(port, None, timeout=30)
        yield Site(f"http://127.0.0.1:{port}", emu, settings)
    finally:
        stop.set()
        server.should_exit = True
        web.join(timeout=10)
        worker.join(timeout=10)
        importer.join(timeout=10)
        store.close()
        emu.stop()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is needed for the browser tests: install Debian's chromium ({CHROMIUM})"
        )
    if not AXE.exists():
        # `make test` installs it (npm ci when package.json changes); CI must never skip it.
        message = "axe-core is needed for the browser tests: run `npm ci` (package.json)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def open_context(browser: Any, site: Site, name: str, role: str, width: int = 1280) -> Any:
    """A browser profile signed in (App Service style: a session cookie) as ``name``."""
    context = browser.new_context(
        ignore_https_errors=True,  # the emulator's self-signed certificate (login page)
        viewport={"width": width, "height": 900},
        accept_downloads=True,
    )
    context.add_init_script(path=str(AXE))  # CDP injection: not subject to the page's CSP
    context.set_default_timeout(30_000)
    principal = principal_header(name, role)["X-MS-CLIENT-PRINCIPAL"]
    context.add_cookies([{"name": SESSION_COOKIE, "value": principal, "url": site.url}])
    return context
