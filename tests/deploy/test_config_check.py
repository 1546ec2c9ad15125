"""Host settings checked at start; configuration problems logged and reported by /api/health."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_api
from shared.config_check import configuration_problems, startup_problems
from shared.settings import HOST_SETTINGS, Settings

HOSTED = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "REFRESH_SCHEDULE": "0 0 2 * * *",
    "SCHEDULE_TICK": "0 * * * * *",
    "RUN_QUEUE_NAME": "segment-export-runs",
    "IMPORT_QUEUE_NAME": "segment-export-imports",
    "AUTH_MODE": "easyauth",
}


def test_a_complete_hosted_configuration_has_no_problem() -> None:
    assert configuration_problems(HOSTED) == ()


@pytest.mark.parametrize("name", HOST_SETTINGS)
def test_under_the_host_a_missing_trigger_setting_is_a_problem_naming_it(name: str) -> None:
    env = {k: v for k, v in HOSTED.items() if k != name}
    (problem,) = configuration_problems(env)
    assert problem.setting == name
    assert f"%{name}%" in problem.message and "app settings only" in problem.message


def test_without_the_host_the_python_defaults_serve() -> None:
    env = {k: v for k, v in HOSTED.items() if k not in (*HOST_SETTINGS, "FUNCTIONS_WORKER_RUNTIME")}
    assert configuration_problems(env) == ()


def test_missing_storage_is_one_problem_naming_it() -> None:
    env = {k: v for k, v in HOSTED.items() if k != "AzureWebJobsStorage"}
    (problem,) = configuration_problems(env)
    assert problem.setting == "AzureWebJobsStorage"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"AUTH_MODE": "local-dev", "WEBSITE_INSTANCE_ID": "abc"}, "AUTH_MODE"),
        ({"SALES_PAGE_SIZE": "x"}, "SALES_PAGE_SIZE"),
        (
            {
                "AzureWebJobsStorage": "",
                "AzureWebJobsStorage__accountName": "a",
                "AzureWebJobsStorage__credential": "x",
            },
            "AzureWebJobsStorage__credential",
        ),
    ],
)
def test_settings_refusals_are_problems_naming_the_setting(
    extra: dict[str, str], named: str
) -> None:
    (problem,) = configuration_problems({**HOSTED, **extra})
    assert problem.setting == named


def test_startup_problems_are_computed_once_and_logged_as_errors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in list(HOSTED):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FUNCTIONS_WORKER_RUNTIME", "python")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("AUTH_MODE", "easyauth")
    startup_problems.cache_clear()
    try:
        with caplog.at_level(logging.ERROR, logger="shared.config"):
            first = startup_problems()
            again = startup_problems()
    finally:
        startup_problems.cache_clear()
    assert first is again
    assert sorted(p.setting for p in first) == sorted(HOST_SETTINGS)
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == len(HOST_SETTINGS)  # once, not per call
    assert {name for name in HOST_SETTINGS if any(name in r.getMessage() for r in logged)} == set(
        HOST_SETTINGS
    )


def test_health_reports_configuration_problems_naming_settings_only() -> None:
    env = {k: v for k, v in HOSTED.items() if k != "RUN_QUEUE_NAME"}
    api = create_api(
        lambda: Settings.from_env(env), problems_provider=lambda: configuration_problems(env)
    )
    with TestClient(api, raise_server_exceptions=False) as client:
        response = client.get("/api/health")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["errors"] == [{"field": "RUN_QUEUE_NAME", "message": "missing or invalid"}]
    assert "UseDevelopmentStorage" not in response.text


def test_health_is_ok_when_configured() -> None:
    api = create_api(
        lambda: Settings.from_env(HOSTED), problems_provider=lambda: configuration_problems(HOSTED)
    )
    with TestClient(api) as client:
        response = client.get("/api/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_health_without_a_provider_reports_unbuildable_settings() -> None:
    with TestClient(create_api(lambda: Settings.from_env({})), raise_server_exceptions=False) as c:
        response = c.get("/api/health")
    assert response.status_code == 503
    assert response.json()["errors"] == [{"field": "settings", "message": "missing or invalid"}]
