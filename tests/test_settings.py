import pytest

from shared.errors import ConfigurationError
from shared.settings import AuthMode, Settings

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AUTH_MODE": "local-dev"}


def test_defaults_are_documented_values() -> None:
    s = Settings.from_env(BASE)
    assert s.run_queue == "segment-export-runs"
    assert s.refresh_schedule == "0 0 2 * * *"
    assert s.sales_chunk_size == 1000
    assert s.sales_page_size == 5000
    assert s.auth_mode is AuthMode.LOCAL_DEV
    assert s.allow_loopback_sales is False


def test_missing_storage_is_named() -> None:
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage"):
        Settings.from_env({})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SALES_CHUNK_SIZE", "0"),
        ("SALES_PAGE_SIZE", "5001"),
        ("SALES_MAX_PARALLEL", "x"),
        ("ALLOW_LOOPBACK_SALES", "maybe"),
        ("AUTH_MODE", "open"),
        ("REFRESH_SCHEDULE", "0 0 2 * *"),
        ("SCHEDULE_TICK", "every minute"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({**BASE, name: value})


def test_local_dev_refused_in_azure() -> None:
    with pytest.raises(ConfigurationError, match="WEBSITE_INSTANCE_ID"):
        Settings.from_env({**BASE, "WEBSITE_INSTANCE_ID": "abc"})


@pytest.mark.parametrize(
    "marker",
    [
        "WEBSITE_SITE_NAME",
        "WEBSITE_HOSTNAME",
        "WEBSITE_RESOURCE_GROUP",
        "WEBSITE_OWNER_NAME",
        "CONTAINER_APP_NAME",
        "CONTAINER_APP_REVISION",
    ],
)
def test_local_dev_refused_on_any_azure_marker(marker: str) -> None:
    """Issue 11 #9: any variable the platform sets in Azure refuses local-dev, not only one."""
    with pytest.raises(ConfigurationError, match=marker):
        Settings.from_env({**BASE, marker: "segexp-prod"})
    Settings.from_env({**BASE, "AUTH_MODE": "easyauth", marker: "segexp-prod"})  # other modes run


def test_entra_mode_needs_audience() -> None:
    with pytest.raises(ConfigurationError, match="API_AUDIENCE"):
        Settings.from_env({"AzureWebJobsStorage": "x"})


def test_secret_is_read_from_named_setting_at_run_time() -> None:
    s = Settings.from_env({**BASE, "SEGEXP_SECRET_CONTOSO": "s3cr3t"})
    assert s.secret("SEGEXP_SECRET_CONTOSO") == "s3cr3t"
    with pytest.raises(ConfigurationError, match="SEGEXP_SECRET_MISSING"):
        s.secret("SEGEXP_SECRET_MISSING")


def test_from_env_takes_its_defaults_from_the_fields() -> None:
    """A default is written once (the field); from_env must not carry its own copy."""
    from dataclasses import dataclass, fields

    @dataclass(frozen=True, slots=True)
    class Tweaked(Settings):
        table_prefix: str = "other"
        sales_chunk_size: int = 250
        refresh_schedule: str = "0 30 1 * * *"

    tweaked = Tweaked.from_env(BASE)
    assert (tweaked.table_prefix, tweaked.sales_chunk_size) == ("other", 250)
    assert tweaked.refresh_schedule == "0 30 1 * * *"
    plain = Settings.from_env(BASE)
    direct = Settings(storage=plain.storage)
    for f in fields(Settings):
        if f.name not in ("storage", "auth_mode", "environ"):
            assert getattr(plain, f.name) == getattr(direct, f.name), f.name


def test_chunk_size_is_bounded_by_what_the_list_actions_accept() -> None:
    assert Settings.from_env({**BASE, "SALES_CHUNK_SIZE": "1000"}).sales_chunk_size == 1000
    with pytest.raises(ConfigurationError, match="SALES_CHUNK_SIZE") as raised:
        Settings.from_env({**BASE, "SALES_CHUNK_SIZE": "1001"})
    message = str(raised.value)
    assert "1000" in message and "AddListMembersList" in message
