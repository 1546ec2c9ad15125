"""Storage SDK clients for a StorageConnection: connection string, or endpoint + token credential.

The one place that turns a connection setting into Table and Queue clients, so the store, the
local queue runner and the tests reach storage exactly as the Functions host does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.storage import StorageConnection

if TYPE_CHECKING:  # the SDKs are imported lazily (the queue SDK costs ~170 ms)
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueClient


def storage_credential(connection: StorageConnection) -> TokenCredential:
    """The token credential an identity-based connection uses (see shared/storage.py)."""
    if connection.credential == "managedidentity":
        from azure.identity import ManagedIdentityCredential

        if connection.client_id:
            return ManagedIdentityCredential(client_id=connection.client_id)
        return ManagedIdentityCredential()
    from azure.identity import DefaultAzureCredential

    # No __credential: the developer's identity locally, as the host does.
    return DefaultAzureCredential(managed_identity_client_id=connection.client_id)


def table_service(
    connection: StorageConnection,
    credential: TokenCredential | None = None,
    **options: Any,
) -> TableServiceClient:
    from azure.data.tables import TableServiceClient

    if connection.connection_string is not None:
        return TableServiceClient.from_connection_string(connection.connection_string, **options)
    return TableServiceClient(
        endpoint=connection.endpoint("table"),
        credential=credential or storage_credential(connection),
        **options,
    )


def queue_client(
    connection: StorageConnection,
    name: str,
    credential: TokenCredential | None = None,
    **options: Any,
) -> QueueClient:
    """A client of queue `name` sending and reading base64 text, as the Functions trigger does."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    if connection.connection_string is not None:
        return QueueClient.from_connection_string(
            connection.connection_string,
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
            **options,
        )
    return QueueClient(
        account_url=connection.endpoint("queue"),
        queue_name=name,
        credential=credential or storage_credential(connection),
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
        **options,
    )
