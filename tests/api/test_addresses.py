"""Server address validation (pure)."""

from __future__ import annotations

import pytest

from shared.api.addresses import AddressError, normalise_server_address
from shared.settings import DEFAULT_ALLOWED_SALES_HOSTS

HOSTS = DEFAULT_ALLOWED_SALES_HOSTS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("https://Contoso.CRM4.Dynamics.com/", "https://contoso.crm4.dynamics.com"),
        ("  https://contoso.crm.dynamics.com:443/ ", "https://contoso.crm.dynamics.com"),
        ("https://gov.crm.dynamics.us", "https://gov.crm.dynamics.us"),
        ("https://contoso.crm.dynamics.com.", "https://contoso.crm.dynamics.com"),
    ],
)
def test_accepts_and_normalises(raw: str, expected: str) -> None:
    assert normalise_server_address(raw, HOSTS) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("http://contoso.crm.dynamics.com", "https"),
        ("ftp://contoso.crm.dynamics.com", "https"),
        ("contoso.crm.dynamics.com", "https"),
        ("https://evil.example.com", "Dynamics 365 host"),
        ("https://dynamics.com", "Dynamics 365 host"),  # the bare domain is not a tenant host
        ("https://contoso.crm.dynamics.com.evil.com", "Dynamics 365 host"),
        ("https://evildynamics.com", "Dynamics 365 host"),
        ("https://user:pw@contoso.crm.dynamics.com", "user information"),
        ("https://a@contoso.crm.dynamics.com", "user information"),
        ("https://contoso.crm.dynamics.com/api/data", "path"),
        ("https://contoso.crm.dynamics.com/?x=1", "query"),
        ("https://contoso.crm.dynamics.com/#frag", "fragment"),
        ("https://127.0.0.1", "loopback"),
        ("https://localhost:8443", "loopback"),
        ("https://[::1]:8443", "loopback"),
        ("https://contoso.crm.dynamics.com:99999", "valid URL"),
        ("https://con toso.crm.dynamics.com", "spaces"),
        ("", "https URL"),
        ("https://", "host"),
    ],
)
def test_refuses(raw: str, reason: str) -> None:
    with pytest.raises(AddressError) as caught:
        normalise_server_address(raw, HOSTS)
    assert reason in str(caught.value)


def test_loopback_only_when_allowed() -> None:
    for raw, expected in [
        ("https://127.0.0.1:8443/", "https://127.0.0.1:8443"),
        ("https://LOCALHOST:8443", "https://localhost:8443"),
        ("https://[::1]:9000", "https://[::1]:9000"),
    ]:
        assert normalise_server_address(raw, HOSTS, allow_loopback=True) == expected
    with pytest.raises(AddressError):
        normalise_server_address("http://127.0.0.1:8443", HOSTS, allow_loopback=True)


def test_exact_host_pattern() -> None:
    assert normalise_server_address("https://sales.example.org", ["sales.example.org"])
    with pytest.raises(AddressError):
        normalise_server_address("https://x.sales.example.org", ["sales.example.org"])


@pytest.mark.parametrize(
    "raw",
    [
        "https://contoso.crm.dynamics.com:22",
        "https://contoso.crm.dynamics.com:8443/",
        "https://contoso.crm.dynamics.com:80",
        "https://contoso.crm.dynamics.com:65535",
    ],
)
def test_only_port_443_on_sales_hosts(raw: str) -> None:
    """Issue 11 #11: an allowed Sales host on any port but 443 is refused."""
    with pytest.raises(AddressError, match="443"):
        normalise_server_address(raw, HOSTS)


def test_loopback_keeps_its_port_only_when_allowed() -> None:
    assert (
        normalise_server_address("https://127.0.0.1:22", HOSTS, allow_loopback=True)
        == "https://127.0.0.1:22"
    )
    with pytest.raises(AddressError, match="loopback"):
        normalise_server_address("https://127.0.0.1:22", HOSTS)
