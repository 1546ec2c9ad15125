"""Entra access tokens: v1.0 (https://sts.windows.net/<tenant>/) and v2.0 issuers are both
accepted, following ENTRA_AUTHORITY_HOST for sovereign clouds; anything else is refused."""

from __future__ import annotations

from typing import Any

import pytest

from shared.api.identity import IdentityResolver, NotAuthenticated, accepted_issuers
from shared.models import Role
from shared.settings import Settings
from tests.api.helpers import AUDIENCE, TokenIssuer

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def settings_for(authority: str | None = None, **extra: str) -> Settings:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AUTH_MODE": "entra",
        "API_AUDIENCE": AUDIENCE,
        "ENTRA_TENANT_ID": TENANT,
        **extra,
    }
    if authority:
        env["ENTRA_AUTHORITY_HOST"] = authority
    return Settings.from_env(env)


@pytest.mark.parametrize(
    ("authority", "issuers"),
    [
        (
            None,
            (
                f"https://login.microsoftonline.com/{TENANT}/v2.0",
                f"https://sts.windows.net/{TENANT}/",
            ),
        ),
        (
            "https://login.microsoftonline.us",
            (
                f"https://login.microsoftonline.us/{TENANT}/v2.0",
                f"https://sts.windows.net/{TENANT}/",
            ),
        ),
        (
            "https://login.chinacloudapi.cn/",
            (
                f"https://login.chinacloudapi.cn/{TENANT}/v2.0",
                f"https://login.partner.microsoftonline.cn/{TENANT}/v2.0",
                f"https://sts.chinacloudapi.cn/{TENANT}/",
            ),
        ),
        ("https://127.0.0.1:8443", (f"https://127.0.0.1:8443/{TENANT}/v2.0",)),
    ],
)
def test_accepted_issuers_follow_the_authority_host(
    authority: str | None, issuers: tuple[str, ...]
) -> None:
    assert accepted_issuers(settings_for(authority)) == issuers


def test_token_issuer_setting_is_the_only_issuer_when_set() -> None:
    settings = settings_for(TOKEN_ISSUER="https://issuer.example.test/t/v2.0")
    assert accepted_issuers(settings) == ("https://issuer.example.test/t/v2.0",)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}  # as Starlette's (lower-cased) headers


def resolver(settings: Settings, issuer: TokenIssuer) -> IdentityResolver:
    def fetch(url: str) -> dict[str, Any]:
        assert url.startswith(settings.entra_authority_host)  # keys follow the authority too
        return issuer.jwks()

    return IdentityResolver(settings, fetch=fetch)


@pytest.mark.parametrize(
    ("authority", "token_issuer"),
    [
        (None, f"https://sts.windows.net/{TENANT}/"),
        (None, f"https://login.microsoftonline.com/{TENANT}/v2.0"),
        ("https://login.microsoftonline.us", f"https://sts.windows.net/{TENANT}/"),
        ("https://login.microsoftonline.us", f"https://login.microsoftonline.us/{TENANT}/v2.0"),
        ("https://login.chinacloudapi.cn", f"https://sts.chinacloudapi.cn/{TENANT}/"),
    ],
)
def test_v1_and_v2_tokens_are_accepted(authority: str | None, token_issuer: str) -> None:
    issuer = TokenIssuer()
    issuer.add_key("k1")
    settings = settings_for(authority)
    caller = resolver(settings, issuer).resolve(
        bearer(issuer.token("Contributor", issuer=token_issuer, ver="1.0"))
    )
    assert caller.role is Role.CONTRIBUTOR and caller.source == "entra"


@pytest.mark.parametrize(
    "token_issuer",
    [
        "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",  # another tenant
        f"https://sts.windows.net/{TENANT}",  # v1 issuers end with a slash
        f"https://login.microsoftonline.us/{TENANT}/v2.0",  # another cloud
        f"https://sts.chinacloudapi.cn/{TENANT}/",
        f"https://login.microsoftonline.com/{TENANT}/",
    ],
)
def test_other_issuers_are_refused(token_issuer: str) -> None:
    issuer = TokenIssuer()
    issuer.add_key("k1")
    with pytest.raises(NotAuthenticated, match="wrong issuer"):
        resolver(settings_for(), issuer).resolve(bearer(issuer.token("Admin", issuer=token_issuer)))
