"""Issue 11 #9: local-dev mode (an anonymous Admin) is refused at start on any Azure marker, and
/api/health fails while the settings are refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_api
from shared.settings import Settings
from tests.support import REPO

LOCAL_DEV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AUTH_MODE": "local-dev"}


@pytest.mark.parametrize("marker", ["WEBSITE_SITE_NAME", "WEBSITE_HOSTNAME", "CONTAINER_APP_NAME"])
def test_the_app_refuses_to_start(marker: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBSITE_", "CONTAINER_APP_"))}
    env.update(LOCAL_DEV)
    env[marker] = "segexp-prod"
    started = subprocess.run(
        [sys.executable, "-c", "import function_app"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert "local-dev" in started.stderr and marker in started.stderr
    del env[marker]
    assert (
        subprocess.run(
            [sys.executable, "-c", "import function_app"], cwd=REPO, env=env, timeout=120
        ).check_returncode()
        is None
    )  # without the marker it starts


def test_health_fails_and_no_anonymous_admin_is_served() -> None:
    api = create_api(lambda: Settings.from_env({**LOCAL_DEV, "WEBSITE_HOSTNAME": "x.net"}))
    with TestClient(api, raise_server_exceptions=False) as client:
        health = client.get("/api/health")
        assert health.status_code == 503
        assert health.headers["content-type"] == "application/problem+json"
        assert "WEBSITE_HOSTNAME" not in health.text  # says nothing about the configuration
        listed = client.get("/api/connections")
        assert listed.status_code == 500
        assert listed.json()["type"].endswith(":configuration")


def test_health_is_ok_with_valid_settings() -> None:
    with TestClient(create_api(lambda: Settings.from_env(LOCAL_DEV))) as client:
        assert client.get("/api/health").json() == {"status": "ok"}
