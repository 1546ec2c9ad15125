"""One storage connection for the store and the triggers; identity-based connections against
Azurite with OAuth on (a token this test mints) and connection strings side by side."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.errors import ConfigurationError, StoreAccessDeniedError
from shared.models import RunMessage
from shared.settings import Settings
from shared.storage import HOST_STORAGE_SETTING, StorageConnection, read_connection
from shared.store import open_store
from shared.store.clients import queue_client, storage_credential
from tests.deploy.oauth_azurite import MintedTokenCredential, OAuthAzurite
from tests.support import Azurite

LOCAL = {"AUTH_MODE": "local-dev"}


def names(prefix: str) -> dict[str, str]:
    return {"TABLE_PREFIX": prefix, "RUN_QUEUE_NAME": f"{prefix}-runs"}


def test_queue_trigger_and_store_use_the_same_connection_setting(
    function_app_functions: dict[str, Any],
) -> None:
    for name in ("run_worker", "run_poison"):
        (binding,) = json.loads(function_app_functions[name].get_function_json())["bindings"]
        assert binding["connection"] == HOST_STORAGE_SETTING
    settings = Settings.from_env(
        {HOST_STORAGE_SETTING: "UseDevelopmentStorage=true", "STORAGE_CONNECTION": "x", **LOCAL}
    )
    assert settings.storage.setting == HOST_STORAGE_SETTING  # the run queue's connection
    assert settings.table_storage.setting == "STORAGE_CONNECTION"  # tables only


def test_with_a_separate_data_account_runs_are_queued_where_the_trigger_listens(
    azurite: Azurite, oauth_azurite: OAuthAzurite, table_prefix: str
) -> None:
    """STORAGE_CONNECTION moves the tables only: the run message lands on AzureWebJobsStorage,
    the account the queue trigger reads."""
    env = {
        HOST_STORAGE_SETTING: azurite.connection_string,
        **oauth_azurite.identity_env("STORAGE_CONNECTION"),
        **names(table_prefix),
        **LOCAL,
    }
    settings = Settings.from_env(env)
    verify = {"connection_verify": str(oauth_azurite.ca_file)}
    store = open_store(settings, credential=MintedTokenCredential(), client_options=verify)
    try:
        store.ensure()
        store.queue.send(RunMessage("e1", "r1"))
        trigger_queue = queue_client(settings.storage, settings.run_queue)
        (message,) = trigger_queue.receive_messages(max_messages=1, visibility_timeout=5)
        assert json.loads(message.content) == {"exportId": "e1", "runId": "r1", "slice": 0}
        trigger_queue.delete_message(message)
        # ...and the tables are on the data account (reached with a token).
        assert store.tables.connection.setting == "STORAGE_CONNECTION"
        assert store.connections.list() == []
    finally:
        store.close()


def test_identity_based_store_round_trip_with_oauth_azurite(
    oauth_azurite: OAuthAzurite, table_prefix: str
) -> None:
    client_id = str(uuid.uuid4())
    env = {**oauth_azurite.identity_env(HOST_STORAGE_SETTING, client_id), **names(table_prefix)}
    settings = Settings.from_env({**env, **LOCAL})
    assert settings.storage.identity_based and settings.storage.client_id == client_id
    assert settings.storage.credential == "managedidentity"
    credential = MintedTokenCredential()
    store = open_store(
        settings,
        credential=credential,
        client_options={"connection_verify": str(oauth_azurite.ca_file)},
    )
    try:
        store.ensure()
        store.queue.send(RunMessage("e2", "r2", 3))
        (received,) = store.queue.receive(max_messages=1, visibility_timeout=5)
        assert received.message == RunMessage("e2", "r2", 3)
        store.queue.delete(received)
        assert store.segments is not None and store.connections.list() == []
        assert credential.scopes_seen  # every call above carried a bearer token
        assert all(s == ("https://storage.azure.com/.default",) for s in credential.scopes_seen)
    finally:
        store.close()


@pytest.mark.parametrize(
    "bad",
    [
        MintedTokenCredential(issuer="https://issuer.example.test/"),  # not an Entra STS
        MintedTokenCredential(audience="https://vault.azure.net"),  # token for another resource
        MintedTokenCredential(lifetime=-120),  # expired
    ],
    ids=["issuer", "audience", "expired"],
)
def test_a_refused_token_is_a_clear_startup_error_naming_the_setting(
    oauth_azurite: OAuthAzurite, table_prefix: str, bad: MintedTokenCredential
) -> None:
    env = {**oauth_azurite.identity_env(HOST_STORAGE_SETTING), **names(table_prefix), **LOCAL}
    store = open_store(
        Settings.from_env(env),
        credential=bad,
        client_options={"connection_verify": str(oauth_azurite.ca_file), "retry_total": 0},
    )
    try:
        with pytest.raises(StoreAccessDeniedError) as caught:
            store.ensure()
    finally:
        store.close()
    message = str(caught.value)
    assert message.startswith(f"{HOST_STORAGE_SETTING}: ")
    assert "refused the credential (HTTP 403 AuthenticationFailed)" in message
    assert "__credential" in message


def test_identity_settings_forms() -> None:
    by_account = read_connection(
        {"S__accountName": "contoso", "S__credential": "ManagedIdentity", "S__clientId": "c"}, "S"
    )
    assert by_account is not None
    assert by_account.table_endpoint == "https://contoso.table.core.windows.net"
    assert by_account.queue_endpoint == "https://contoso.queue.core.windows.net"
    assert by_account.blob_endpoint == "https://contoso.blob.core.windows.net"
    assert (by_account.credential, by_account.client_id) == ("managedidentity", "c")
    # Sovereign clouds: explicit service URIs win over the account name.
    uris = read_connection(
        {
            "S__accountName": "contoso",
            "S__queueServiceUri": "https://contoso.queue.core.usgovcloudapi.net/",
            "S__tableServiceUri": "https://contoso.table.core.usgovcloudapi.net",
        },
        "S",
    )
    assert uris is not None and uris.credential is None
    assert uris.queue_endpoint == "https://contoso.queue.core.usgovcloudapi.net"
    assert uris.table_endpoint == "https://contoso.table.core.usgovcloudapi.net"
    # A connection string takes precedence, as in the host.
    both = read_connection({"S": "UseDevelopmentStorage=true", "S__accountName": "x"}, "S")
    assert both == StorageConnection.from_string("UseDevelopmentStorage=true", "S")
    assert read_connection({}, "S") is None
    assert "UseDevelopment" not in repr(both)  # a connection string may hold a key


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AzureWebJobsStorage__queueServiceUri": "http://a.queue.core.windows.net"}, "https"),
        ({"AzureWebJobsStorage__credential": "managedidentity"}, "__accountName"),
        (
            {"AzureWebJobsStorage__accountName": "a", "AzureWebJobsStorage__credential": "cli"},
            "AzureWebJobsStorage__credential",
        ),
        (
            {"AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net"},
            "AzureWebJobsStorage__queueServiceUri",
        ),
        (
            {
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                "STORAGE_CONNECTION__queueServiceUri": "https://a.queue.core.windows.net",
            },
            "STORAGE_CONNECTION__tableServiceUri",
        ),
    ],
)
def test_incomplete_identity_settings_name_what_is_missing(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env({**env, **LOCAL})


def test_credential_choice() -> None:
    managed = storage_credential(
        StorageConnection("S", queue_endpoint="https://a", credential="managedidentity")
    )
    assert isinstance(managed, ManagedIdentityCredential)
    developer = storage_credential(StorageConnection("S", queue_endpoint="https://a"))
    assert isinstance(developer, DefaultAzureCredential)
