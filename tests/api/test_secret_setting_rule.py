"""Issue 11 #10: ``secretSetting`` names only settings with the documented prefix, never a
platform or app setting, and what a refusal says does not depend on whether the setting exists.
One rule (shared.secrets_rule) at the API and at run time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from shared.errors import ConfigurationError
from shared.secrets_rule import SECRET_SETTING_PREFIX, secret_setting_problem
from shared.settings import Settings
from tests.api.helpers import ADMIN, connection_body

REFUSED = [
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "STORAGE_CONNECTION",
    "IDENTITY_HEADER",
    "IDENTITY_ENDPOINT",
    "MSI_SECRET",
    "WEBSITE_AUTH_ENCRYPTION_KEY",
    "FUNCTIONS_WORKER_RUNTIME",
    "APPSETTING_SEGEXP_SECRET_X",
    "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "TOKEN_CACHE_KEY",  # the app's own secret (delegated token cache key)
    "CONTOSO_SALES_SECRET",  # no prefix
    "segexp_secret_lower",  # the prefix is exact
    SECRET_SETTING_PREFIX,  # nothing after it
]


@pytest.mark.parametrize("name", REFUSED)
def test_the_rule_refuses_platform_app_and_unprefixed_names(name: str) -> None:
    assert secret_setting_problem(name) is not None


def test_the_rule_accepts_the_documented_prefix() -> None:
    assert secret_setting_problem("SEGEXP_SECRET_CONTOSO") is None
    assert secret_setting_problem("SEGEXP_SECRET_contoso_2") is None


@pytest.mark.parametrize("name", ["AzureWebJobsStorage", "IDENTITY_HEADER", "NO_SUCH_SETTING_X"])
def test_the_api_refuses_them_without_saying_whether_they_exist(
    make_client: Callable[..., TestClient], name: str
) -> None:
    client = make_client(IDENTITY_HEADER="present")  # AzureWebJobsStorage is set as well
    cred = {**connection_body()["credential"], "secretSetting": name}
    response = client.post("/api/connections", json=connection_body(credential=cred), headers=ADMIN)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["credential.secretSetting"]
    assert errors[0]["message"] == (
        f"must be the name of an app setting that starts with {SECRET_SETTING_PREFIX} "
        "(see the README)"
    )


@pytest.mark.parametrize("name", ["AzureWebJobsStorage", "IDENTITY_HEADER", "NO_SUCH_SETTING_X"])
def test_run_time_refuses_them_the_same_way(name: str) -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AUTH_MODE": "local-dev",
            "IDENTITY_HEADER": "present",
        }
    )
    with pytest.raises(ConfigurationError) as refused:
        settings.secret(name)
    assert str(refused.value) == (
        f"the secretSetting {name} must be the name of an app setting that starts with "
        f"{SECRET_SETTING_PREFIX} (see the README)"
    )
