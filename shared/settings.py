"""Settings: the only reader of os.environ. Validates every value and names what is wrong.

Every setting has a documented default (README "Settings"), except the storage connection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared import ncrontab
from shared.errors import ConfigurationError
from shared.secrets_rule import secret_setting_problem
from shared.storage import (
    DATA_STORAGE_SETTING,
    HOST_STORAGE_SETTING,
    StorageConnection,
    read_connection,
)


class AuthMode(StrEnum):
    ENTRA = "entra"  # validate Entra ID bearer tokens (JWKS), roles from the `roles` claim
    EASYAUTH = (
        "easyauth"  # trust App Service Authentication headers (only when WEBSITE_AUTH_ENABLED)
    )
    LOCAL_DEV = "local-dev"  # demo only: every caller is LOCAL_DEV_USER with LOCAL_DEV_ROLES


DEFAULT_ALLOWED_SALES_HOSTS = (
    "*.dynamics.com",  # commercial cloud (crm, crm2 … crm21, api.crm…)
    "*.dynamics.us",  # GCC High / DoD
    "*.dynamics.cn",  # China (21Vianet)
    "*.crm.microsoftdynamics.de",  # legacy Germany cloud
    "*.crm.appsplatform.us",  # US sovereign
)


# Variables the platform itself sets in Azure (App Service / Functions, Container Apps), never a
# local machine. Any one of them refuses AUTH_MODE=local-dev (an anonymous Admin).
AZURE_HOST_MARKERS = (
    "WEBSITE_INSTANCE_ID",
    "WEBSITE_SITE_NAME",
    "WEBSITE_HOSTNAME",
    "WEBSITE_RESOURCE_GROUP",
    "WEBSITE_OWNER_NAME",
    "WEBSITE_DEPLOYMENT_ID",
    "CONTAINER_APP_NAME",
    "CONTAINER_APP_REVISION",
    "CONTAINER_APP_HOSTNAME",
    "CONTAINER_APP_ENV_DNS_SUFFIX",
)


def refuse_local_dev_in_azure(env: Mapping[str, str]) -> None:
    """Raise when AUTH_MODE is local-dev and any Azure host marker is set. Cheap (reads two or
    three variables), so the app runs it at start as well as in from_env."""
    if (env.get("AUTH_MODE") or "").strip().lower() != AuthMode.LOCAL_DEV.value:
        return
    found = [name for name in AZURE_HOST_MARKERS if (env.get(name) or "").strip()]
    if found:
        raise ConfigurationError(
            "AUTH_MODE=local-dev is refused when running in Azure "
            f"({', '.join(found)} set by the platform)"
        )


def check_start(environ: Mapping[str, str] | None = None) -> None:
    """The checks the app runs when it starts (function_app import), before serving anything."""
    refuse_local_dev_in_azure(os.environ if environ is None else environ)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"setting {name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"setting {name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"setting {name} must be between {low} and {high}, got {value}")
    return value


SALES_MAX_MEMBERS_PER_CALL = 1000  # members per AddListMembersList / RemoveListMembersList


def _chunk_size(env: Mapping[str, str], default: int) -> int:
    """SALES_CHUNK_SIZE, bounded by what the list actions accept. Dataverse documents no
    maximum; a service checked against refuses more than 1,000 members a call, and Microsoft's
    bulk-operation guidance starts at about 1,000 a request: the stricter reading."""
    cap = SALES_MAX_MEMBERS_PER_CALL
    value = _int(env, "SALES_CHUNK_SIZE", default, low=1, high=10**9)
    if value > cap:
        raise ConfigurationError(
            f"setting SALES_CHUNK_SIZE must be between 1 and {cap}, got {value}: Sales refuses "
            f"AddListMembersList / RemoveListMembersList calls with more than {cap} members"
        )
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"setting {name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"setting {name} must be between {low} and {high}, got {value}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def _ncrontab(name: str, value: str) -> str:
    """A timer schedule: the host reads it as %NAME%, the app evaluates it (shared.ncrontab)."""
    try:
        return ncrontab.parse(value).expression
    except ncrontab.CrontabError as exc:
        raise ConfigurationError(
            f"setting {name} must be an NCRONTAB expression of 6 fields "
            f"(second minute hour day month day-of-week): {exc}"
        ) from None


def _list(
    env: Mapping[str, str], name: str, default: tuple[str, ...], *, lower: bool = True
) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    parts = (part.strip() for part in raw.split(",") if part.strip())
    return tuple(part.lower() if lower else part for part in parts)


# Every plain app setting Settings reads (the storage connections are CONNECTION_SETTINGS).
# Written once: the deploy template, local.settings.example.json and the README are tested
# against this list, and a test checks from_env reads no setting missing from it.
SETTING_NAMES: tuple[str, ...] = (
    "TABLE_PREFIX",
    "RUN_QUEUE_NAME",
    "IMPORT_QUEUE_NAME",
    "REFRESH_SCHEDULE",
    "SCHEDULE_TICK",
    "ALLOWED_SALES_HOSTS",
    "ALLOW_LOOPBACK_SALES",
    "ENTRA_AUTHORITY_HOST",
    "SALES_CA_BUNDLE",
    "SALES_MAX_PARALLEL",
    "SALES_CHUNK_SIZE",
    "SALES_PAGE_SIZE",
    "SALES_MAX_RETRIES",
    "SALES_TIMEOUT_SECONDS",
    "RUN_SLICE_SECONDS",
    "LEASE_SECONDS",
    "MAX_DEQUEUE_COUNT",
    "AUTH_MODE",
    "ENTRA_TENANT_ID",
    "API_AUDIENCE",
    "JWKS_URL",
    "TOKEN_ISSUER",
    "LOCAL_DEV_USER",
    "LOCAL_DEV_ROLES",
    "MAX_UPLOAD_BYTES",
    "TOKEN_CACHE_KEY",
    "ALLOW_LOOPBACK_WEBHOOKS",
    "NOTIFY_TIMEOUT_SECONDS",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
)
# Storage connections: `<name>` (connection string) or `<name>__...` (identity-based).
# AzureWebJobsStorage is required (host, timers, the run queue and its trigger); the other is
# an optional separate account for the tables only.
CONNECTION_SETTINGS: tuple[str, ...] = (HOST_STORAGE_SETTING, DATA_STORAGE_SETTING)
# Settings the Functions host itself resolves (%NAME% in a trigger): Python defaults never
# reach it, so under the host they must be app settings.
HOST_SETTINGS: tuple[str, ...] = (
    "REFRESH_SCHEDULE",
    "SCHEDULE_TICK",
    "RUN_QUEUE_NAME",
    "IMPORT_QUEUE_NAME",
)


@dataclass(frozen=True, slots=True)
class Settings:
    # AzureWebJobsStorage: the run queue (the queue trigger's connection) and, by default,
    # the tables.
    storage: StorageConnection
    # STORAGE_CONNECTION: a different account for the tables only (None: `storage`).
    data_storage: StorageConnection | None = None
    table_prefix: str = "segexp"
    run_queue: str = "segment-export-runs"
    import_queue: str = "segment-export-imports"  # background customer imports (shared/imports)
    refresh_schedule: str = "0 0 2 * * *"
    schedule_tick: str = "0 * * * * *"  # the timer that starts exports with their own schedule
    # Notifications (shared/notify)
    allow_loopback_webhooks: bool = False  # http(s)://127.0.0.1 webhooks (local development only)
    notify_timeout_seconds: float = 20.0  # all deliveries after one run, retries included
    # Telemetry (shared/telemetry.py): on only when set
    appinsights_connection_string: str | None = None
    # Sales connections
    allowed_sales_hosts: tuple[str, ...] = DEFAULT_ALLOWED_SALES_HOSTS
    allow_loopback_sales: bool = False
    entra_authority_host: str = "https://login.microsoftonline.com"
    sales_ca_bundle: str | None = None  # extra CA file to trust (local emulator only)
    sales_max_parallel: int = 8  # upper bound; x-ms-dop-hint may lower it
    sales_chunk_size: int = 1000  # members per AddListMembersList / RemoveListMembersList
    sales_page_size: int = 5000  # members read per page (Dataverse maximum)
    sales_max_retries: int = 8
    sales_timeout_seconds: float = 120.0
    # Runs
    run_slice_seconds: float = 480.0  # work per queue message before a continuation
    lease_seconds: float = 120.0  # export lease; renewed while a slice runs
    max_dequeue_count: int = 5  # must match host.json extensions.queues.maxDequeueCount
    # API identity
    auth_mode: AuthMode = AuthMode.ENTRA
    entra_tenant_id: str | None = None
    api_audience: str | None = None
    jwks_url: str | None = None  # defaults to the tenant's discovery keys
    token_issuer: str | None = None  # default: the tenant's v1 + v2 issuers (api/identity.py)
    local_dev_user: str = "local-dev@localhost"
    local_dev_roles: tuple[str, ...] = ("Admin",)
    max_upload_bytes: int = 64 * 1024 * 1024
    # Key (base64, 32 bytes) that encrypts delegated connections' token caches at rest; in Azure
    # a Key Vault reference. Never logged (repr=False).
    token_cache_key: str | None = field(default=None, repr=False)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env: Mapping[str, str] = dict(os.environ) if environ is None else environ
        storage = read_connection(env, HOST_STORAGE_SETTING)
        if storage is None:
            raise ConfigurationError(
                f"setting {HOST_STORAGE_SETTING} is required: a Storage connection string "
                f"(UseDevelopmentStorage=true for Azurite), or {HOST_STORAGE_SETTING}__accountName"
                f" / __queueServiceUri + __tableServiceUri with __credential=managedidentity"
            )
        if storage.identity_based:
            storage.endpoint("queue")  # the run queue lives here: name the missing URI now
        data_storage = read_connection(env, DATA_STORAGE_SETTING)
        if (data_storage or storage).identity_based:
            (data_storage or storage).endpoint("table")
        d = cls(storage=storage)  # every default, written once: the fields
        try:
            auth_mode = AuthMode(_str(env, "AUTH_MODE", d.auth_mode.value).lower())
        except ValueError:
            raise ConfigurationError(
                "setting AUTH_MODE must be one of entra, easyauth, local-dev"
            ) from None
        refuse_local_dev_in_azure(env)
        settings = cls(
            storage=storage,
            data_storage=data_storage,
            table_prefix=_str(env, "TABLE_PREFIX", d.table_prefix),
            run_queue=_str(env, "RUN_QUEUE_NAME", d.run_queue),
            import_queue=_str(env, "IMPORT_QUEUE_NAME", d.import_queue),
            refresh_schedule=_ncrontab(
                "REFRESH_SCHEDULE", _str(env, "REFRESH_SCHEDULE", d.refresh_schedule)
            ),
            schedule_tick=_ncrontab("SCHEDULE_TICK", _str(env, "SCHEDULE_TICK", d.schedule_tick)),
            allow_loopback_webhooks=_bool(
                env, "ALLOW_LOOPBACK_WEBHOOKS", d.allow_loopback_webhooks
            ),
            appinsights_connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
            or d.appinsights_connection_string,
            notify_timeout_seconds=_float(
                env, "NOTIFY_TIMEOUT_SECONDS", d.notify_timeout_seconds, low=1, high=120
            ),
            allowed_sales_hosts=_list(env, "ALLOWED_SALES_HOSTS", d.allowed_sales_hosts),
            allow_loopback_sales=_bool(env, "ALLOW_LOOPBACK_SALES", d.allow_loopback_sales),
            entra_authority_host=_str(env, "ENTRA_AUTHORITY_HOST", d.entra_authority_host).rstrip(
                "/"
            ),
            sales_ca_bundle=env.get("SALES_CA_BUNDLE") or d.sales_ca_bundle,
            sales_max_parallel=_int(
                env, "SALES_MAX_PARALLEL", d.sales_max_parallel, low=1, high=52
            ),
            sales_chunk_size=_chunk_size(env, d.sales_chunk_size),
            sales_page_size=_int(env, "SALES_PAGE_SIZE", d.sales_page_size, low=1, high=5000),
            sales_max_retries=_int(env, "SALES_MAX_RETRIES", d.sales_max_retries, low=0, high=50),
            sales_timeout_seconds=_float(
                env, "SALES_TIMEOUT_SECONDS", d.sales_timeout_seconds, low=1, high=600
            ),
            run_slice_seconds=_float(
                env, "RUN_SLICE_SECONDS", d.run_slice_seconds, low=1, high=3600
            ),
            lease_seconds=_float(env, "LEASE_SECONDS", d.lease_seconds, low=5, high=3600),
            max_dequeue_count=_int(env, "MAX_DEQUEUE_COUNT", d.max_dequeue_count, low=1, high=100),
            auth_mode=auth_mode,
            entra_tenant_id=env.get("ENTRA_TENANT_ID") or d.entra_tenant_id,
            api_audience=env.get("API_AUDIENCE") or d.api_audience,
            jwks_url=env.get("JWKS_URL") or d.jwks_url,
            token_issuer=env.get("TOKEN_ISSUER") or d.token_issuer,
            local_dev_user=_str(env, "LOCAL_DEV_USER", d.local_dev_user),
            local_dev_roles=_list(env, "LOCAL_DEV_ROLES", d.local_dev_roles, lower=False),
            max_upload_bytes=_int(
                env, "MAX_UPLOAD_BYTES", d.max_upload_bytes, low=1024, high=1024 * 1024 * 1024
            ),
            token_cache_key=env.get("TOKEN_CACHE_KEY") or None,
            environ=env,
        )
        if settings.auth_mode is AuthMode.ENTRA and not (
            settings.api_audience and (settings.entra_tenant_id or settings.jwks_url)
        ):
            raise ConfigurationError(
                "AUTH_MODE=entra needs API_AUDIENCE and ENTRA_TENANT_ID "
                "(or JWKS_URL and TOKEN_ISSUER)"
            )
        return settings

    @property
    def table_storage(self) -> StorageConnection:
        """Where the tables live: STORAGE_CONNECTION if set, else AzureWebJobsStorage."""
        return self.data_storage or self.storage

    def secret(self, setting_name: str) -> str:
        """Read a connection's client secret at run time from the named app setting, which
        must pass shared.secrets_rule (checked before any lookup: a refusal says the same
        whether or not the setting exists)."""
        problem = secret_setting_problem(setting_name)
        if problem:
            raise ConfigurationError(f"the secretSetting {setting_name} {problem}")
        value = self.environ.get(setting_name)
        if not value:
            raise ConfigurationError(
                f"the app setting {setting_name} that should hold the connection's client secret "
                "is missing or empty"
            )
        return value
