from __future__ import annotations

import threading

import pytest

from shared.sales.auth import CachedTokenProvider, instance_discovery_for
from tests.sales.conftest import FakeTime


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://login.microsoftonline.com", None),
        ("https://login.microsoftonline.us", None),
        ("https://login.chinacloudapi.cn", None),
        ("https://127.0.0.1:8443", False),
        ("https://login.contoso.test", False),
    ],
)
def test_instance_discovery_only_for_hosts_microsoft_knows(
    host: str, expected: bool | None
) -> None:
    assert instance_discovery_for(host + "/tenant") is expected


def test_token_is_cached_until_near_expiry(fake_time: FakeTime) -> None:
    fetched: list[int] = []

    def fetch() -> tuple[str, float]:
        fetched.append(1)
        return f"t{len(fetched)}", 3600.0

    provider = CachedTokenProvider(fetch, clock=fake_time.clock)
    assert provider.token() == "t1"
    fake_time.sleep(3000)  # 5 minutes before expiry: still good
    assert provider.token() == "t1"
    fake_time.sleep(301)
    assert provider.token() == "t2"


def test_short_lived_tokens_refresh_a_tenth_early(fake_time: FakeTime) -> None:
    provider = CachedTokenProvider(lambda: ("t", 60.0), clock=fake_time.clock)
    provider.token()
    fake_time.sleep(53)
    calls = []
    provider._fetch = lambda: (calls.append(1), ("u", 60.0))[1]  # type: ignore[method-assign]
    assert provider.token() == "t"
    fake_time.sleep(1.5)
    assert provider.token() == "u" and calls == [1]


def test_invalidate_refreshes_once_for_many_threads(fake_time: FakeTime) -> None:
    count = [0]
    lock = threading.Lock()

    def fetch() -> tuple[str, float]:
        with lock:
            count[0] += 1
            return f"t{count[0]}", 3600.0

    provider = CachedTokenProvider(fetch, clock=fake_time.clock)
    stale = provider.token()

    def refuse_and_retry() -> None:
        provider.invalidate(stale)
        provider.token()

    threads = [threading.Thread(target=refuse_and_retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # every thread invalidated the same stale token; only the first invalidation counts,
    # later ones see no token or a newer one and leave it alone: one refresh in total
    assert provider.token() != stale
    assert count[0] == 2
    before = count[0]
    provider.invalidate(stale)  # an old token no longer matters
    provider.token()
    assert count[0] == before


class _FakeCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, scope: str) -> object:
        from azure.core.credentials import AccessToken

        self.scopes.append(scope)
        return AccessToken(f"mi-{len(self.scopes)}", 1_000 + 3600)


def test_managed_identity_tokens_are_cached_with_their_expiry(fake_time: FakeTime) -> None:
    from shared.sales.auth import ManagedIdentityProvider

    provider = ManagedIdentityProvider(
        scope="https://org.crm.dynamics.com/.default",
        clock=fake_time.clock,
        wall_clock=lambda: 1_000,
    )
    credential = _FakeCredential()
    provider._credential = credential  # the real one needs an Azure host's identity endpoint
    assert provider.token() == "mi-1" and provider.token() == "mi-1"
    provider.invalidate("mi-1")
    assert provider.token() == "mi-2"
    assert credential.scopes == ["https://org.crm.dynamics.com/.default"] * 2


def test_factory_builds_the_provider_the_credential_asks_for() -> None:
    from shared.errors import ConfigurationError
    from shared.models import Connection, Credential, CredentialKind
    from shared.sales.auth import ManagedIdentityProvider, MsalClientSecretProvider
    from shared.sales.factory import build_token_provider
    from shared.settings import Settings

    settings = Settings.from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AUTH_MODE": "local-dev", "S": "x"}
    )

    def connection(credential: Credential) -> Connection:
        return Connection("c", "C", "https://org.crm.dynamics.com", credential, "ContactId")

    mi = build_token_provider(connection(Credential(CredentialKind.MANAGED_IDENTITY)), settings)
    assert isinstance(mi, ManagedIdentityProvider)
    secret = build_token_provider(
        connection(Credential(CredentialKind.CLIENT_SECRET, "t", "c", "S")), settings
    )
    assert isinstance(secret, MsalClientSecretProvider)
    assert secret._authority == "https://login.microsoftonline.com/t"
    with pytest.raises(ConfigurationError, match="tenantId"):
        build_token_provider(
            connection(Credential(CredentialKind.CLIENT_SECRET, None, "c", "S")), settings
        )
