"""Storage connections the way the Functions host reads them (pure parsing, no SDK import).

A connection is named by an app setting, exactly like a trigger's ``connection=`` property:
- ``<SETTING>`` holds a connection string (``UseDevelopmentStorage=true`` for Azurite), or
- identity-based: ``<SETTING>__accountName`` (public cloud endpoints), or the service URIs
  ``<SETTING>__tableServiceUri`` / ``__queueServiceUri`` / ``__blobServiceUri`` (any cloud),
  with ``<SETTING>__credential=managedidentity`` and, for a user-assigned identity,
  ``<SETTING>__clientId``.
The host gives a connection string precedence when both forms are present; so do we.

Credential choice (documented in the README): ``__credential=managedidentity`` uses the app's
managed identity (``ManagedIdentityCredential``, ``__clientId`` selecting a user-assigned one),
as the host does in Azure. Without ``__credential`` the host uses the developer's identity
locally; we do the same with ``DefaultAzureCredential`` (``__clientId`` passed as its managed
identity client id). Any other ``__credential`` value is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from shared.errors import ConfigurationError

# The connection the queue trigger names (function_app.py) and the store's run queue uses:
# one setting, so the trigger always listens on the queue the store writes to.
HOST_STORAGE_SETTING = "AzureWebJobsStorage"
# Optional: a different account for the app's tables (never for the run queue).
DATA_STORAGE_SETTING = "STORAGE_CONNECTION"

Service = Literal["table", "queue", "blob"]
SERVICES: tuple[Service, ...] = ("table", "queue", "blob")
# The suffixes the host understands for an identity-based storage connection.
IDENTITY_SUFFIXES = (
    "accountName",
    "tableServiceUri",
    "queueServiceUri",
    "blobServiceUri",
    "serviceUri",  # blob-only alias the host accepts
    "credential",
    "clientId",
)
MANAGED_IDENTITY = "managedidentity"


@dataclass(frozen=True, slots=True)
class StorageConnection:
    """One storage connection: a connection string, or service endpoints reached with a token."""

    setting: str  # the app setting (or prefix) it was read from; named in every error
    connection_string: str | None = None
    table_endpoint: str | None = None
    queue_endpoint: str | None = None
    blob_endpoint: str | None = None
    credential: Literal["managedidentity"] | None = None  # None: developer identity chain
    client_id: str | None = None

    def __repr__(self) -> str:  # never show a connection string (it may hold a key)
        kind = "connection-string" if self.connection_string else "identity"
        return f"StorageConnection({self.setting!r}, {kind})"

    @classmethod
    def from_string(
        cls, connection_string: str, setting: str = HOST_STORAGE_SETTING
    ) -> StorageConnection:
        return cls(setting=setting, connection_string=connection_string)

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None

    def endpoint(self, service: Service) -> str:
        """The service URI of an identity-based connection; names the setting that is missing."""
        value = {
            "table": self.table_endpoint,
            "queue": self.queue_endpoint,
            "blob": self.blob_endpoint,
        }[service]
        if not value:
            raise ConfigurationError(
                f"storage connection {self.setting} has no {service} endpoint: set "
                f"{self.setting}__{service}ServiceUri (or {self.setting}__accountName)"
            )
        return value


def _uri(setting: str, value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.netloc:
        # Storage refuses bearer tokens over http, and the SDKs refuse to send them.
        raise ConfigurationError(f"setting {setting} must be an https:// URI")
    return value.strip().rstrip("/")


def read_connection(env: Mapping[str, str], setting: str) -> StorageConnection | None:
    """The connection named `setting`, or None when neither form is configured."""
    raw = env.get(setting)
    if raw is not None and raw.strip():
        return StorageConnection(setting=setting, connection_string=raw.strip())

    def part(suffix: str) -> str | None:
        value = env.get(f"{setting}__{suffix}")
        return value.strip() if value is not None and value.strip() else None

    if not any(part(suffix) for suffix in IDENTITY_SUFFIXES):
        return None
    endpoints: dict[str, str | None] = {}
    account = part("accountName")
    for service in SERVICES:
        explicit = part(f"{service}ServiceUri")
        if explicit is None and service == "blob":
            explicit = part("serviceUri")
        if explicit:
            name = f"{setting}__{service}ServiceUri"
            endpoints[service] = _uri(name, explicit)
        elif account:
            # accountName implies the public cloud's endpoints (as the host assumes); sovereign
            # clouds set the service URIs instead.
            endpoints[service] = f"https://{account}.{service}.core.windows.net"
        else:
            endpoints[service] = None
    credential = part("credential")
    if credential is not None and credential.lower() != MANAGED_IDENTITY:
        raise ConfigurationError(
            f"setting {setting}__credential must be {MANAGED_IDENTITY} (or unset for the "
            "developer's identity)"
        )
    connection = StorageConnection(
        setting=setting,
        table_endpoint=endpoints["table"],
        queue_endpoint=endpoints["queue"],
        blob_endpoint=endpoints["blob"],
        credential="managedidentity" if credential else None,
        client_id=part("clientId"),
    )
    if not (connection.table_endpoint or connection.queue_endpoint):
        raise ConfigurationError(
            f"storage connection {setting} is identity-based but names no table or queue "
            f"endpoint: set {setting}__accountName, or {setting}__tableServiceUri and "
            f"{setting}__queueServiceUri"
        )
    return connection
