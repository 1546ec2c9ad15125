"""Run error messages: short, actionable, never a secret; and which failures are retried."""

from __future__ import annotations

import httpx

from shared.errors import (
    AuthenticationError,
    ConfigurationError,
    FatalSalesError,
    NotFoundError,
    StoreUnavailableError,
    TransientSalesError,
)
from shared.models import Connection, Credential, CredentialKind
from shared.runs.failures import RunFatalError, describe, is_retryable

CONNECTION = Connection(
    id="c1",
    display_name="Contoso",
    server_address="https://contoso.crm.dynamics.com",
    credential=Credential(
        kind=CredentialKind.CLIENT_SECRET,
        tenant_id="t",
        client_id="c",
        secret_setting="CONTOSO_SECRET",
    ),
    contact_id_field="ContactId",
)


def test_refused_credential_names_the_secret_setting_not_the_secret() -> None:
    text = describe(AuthenticationError("invalid_client", status=401), CONNECTION)
    assert "refused by Entra ID" in text and "CONTOSO_SECRET" in text


def test_managed_identity_refusal_points_at_the_identity() -> None:
    mi = Connection(
        id="c2",
        display_name="x",
        server_address="https://x.crm.dynamics.com",
        credential=Credential(kind=CredentialKind.MANAGED_IDENTITY),
        contact_id_field="ContactId",
    )
    assert "managed identity" in describe(AuthenticationError("no"), mi)


def test_no_http_answer_means_the_server_could_not_be_reached() -> None:
    try:
        try:
            raise httpx.ConnectError("All connection attempts failed")
        except httpx.ConnectError as cause:
            raise TransientSalesError("request failed") from cause
    except TransientSalesError as exc:
        text = describe(exc, CONNECTION)
    assert text == "could not reach contoso.crm.dynamics.com: check the connection's server address"


def test_throttling_with_a_status_is_not_called_unreachable() -> None:
    text = describe(TransientSalesError("throttled", status=429), CONNECTION)
    assert text.startswith("Sales kept throttling or failing") and "429" in text


def test_messages_are_short() -> None:
    assert len(describe(FatalSalesError("x" * 5000, status=400), CONNECTION)) <= 240


def test_unexpected_errors_do_not_leak_their_text() -> None:
    text = describe(RuntimeError("password=hunter2"), CONNECTION)
    assert "hunter2" not in text and "RuntimeError" in text


def test_retry_classification() -> None:
    assert is_retryable(TransientSalesError("x"))
    assert is_retryable(StoreUnavailableError("x"))
    assert is_retryable(RuntimeError("x"))
    assert not is_retryable(AuthenticationError("x"))
    assert not is_retryable(FatalSalesError("x"))
    assert not is_retryable(ConfigurationError("x"))
    assert not is_retryable(RunFatalError("x"))
    assert not is_retryable(NotFoundError("x"))


def test_a_refused_scope_points_at_the_server_address() -> None:
    exc = AuthenticationError(
        "Entra ID refused the app identity (client id c): invalid_scope AADST"
    )
    assert describe(exc, CONNECTION) == (
        "Entra ID does not know contoso.crm.dynamics.com as a Sales environment (invalid scope): "
        "check the connection's server address"
    )


def test_an_unreachable_token_endpoint_points_at_the_authority_setting() -> None:
    exc = TransientSalesError("could not reach the Entra ID token endpoint: ConnectError")
    assert "ENTRA_AUTHORITY_HOST" in describe(exc, CONNECTION)
