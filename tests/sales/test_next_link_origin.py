"""An absolute URL from Sales (an @odata.nextLink) gets our bearer token only when its scheme,
host and port are the connection's own, compared parsed and case-insensitively (issue 11 #8)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from shared.errors import FatalSalesError
from shared.sales.client import SalesClient
from tests.sales.fakes import API, FakeDataverse

MakeClient = Callable[..., SalesClient]


def _recording(fake: FakeDataverse, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handle(request)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    "link",
    [
        "HTTPS://evil.example.com/api/data/v9.2/contacts",
        "Https://evil.example.com/api/data/v9.2/contacts",
        "https://evil.example.com/api/data/v9.2/contacts",
        "http://org.crm.dynamics.com/api/data/v9.2/contacts",  # our host, but plain http
        "HTTP://org.crm.dynamics.com/api/data/v9.2/contacts",
        "https://org.crm.dynamics.com:8443/api/data/v9.2/contacts",  # our host, other port
        "https://org.crm.dynamics.com.evil.example.com/api/data/v9.2/contacts",
        "https://org.crm.dynamics.com@evil.example.com/api/data/v9.2/contacts",
        "//evil.example.com/api/data/v9.2/contacts",  # scheme-relative
        " HTTPS://evil.example.com/api/data/v9.2/contacts",
        "ftp://org.crm.dynamics.com/api/data/v9.2/contacts",
    ],
)
def test_a_link_elsewhere_is_refused_before_any_request(make_client: MakeClient, link: str) -> None:
    seen: list[httpx.Request] = []
    client = make_client(FakeDataverse(), transport=_recording(FakeDataverse(), seen))
    with pytest.raises(FatalSalesError, match="another host"):
        client.get_json(link)
    assert seen == []  # the token went nowhere


@pytest.mark.parametrize(
    "link",
    [
        "https://org.crm.dynamics.com/api/data/v9.2/WhoAmI",
        "HTTPS://ORG.CRM.DYNAMICS.COM/api/data/v9.2/WhoAmI",
        "https://org.crm.dynamics.com:443/api/data/v9.2/WhoAmI",
        "https://org.crm.dynamics.com./api/data/v9.2/WhoAmI",
    ],
)
def test_a_link_to_the_same_origin_is_followed(make_client: MakeClient, link: str) -> None:
    seen: list[httpx.Request] = []
    fake = FakeDataverse()
    client = make_client(fake, transport=_recording(fake, seen))
    assert "UserId" in client.get_json(link)
    assert [r.url.host.rstrip(".") for r in seen] == ["org.crm.dynamics.com"]
    assert seen[0].url.path == API + "WhoAmI"
