"""Delegated sign-in for the emulator: the authorize endpoint (login page + consent), the
authorization-code grant with PKCE (S256), the refresh-token grant with rotation, and test hooks
that revoke a user's sessions or demand a Conditional Access claims challenge.

Modelled on the Microsoft identity platform's documented behaviour:
- the code is single use, short lived and bound to client, redirect URI and PKCE challenge;
- a refresh token is replaced by a new one on each use and the old one stops working;
- revoke-all (or a password reset) invalidates every refresh token of the user;
- Conditional Access answers the refresh grant with ``interaction_required`` and ``claims``.
Access tokens are registered with the emulator's TokenService, so Dataverse calls made with them
run as the signed-in user (WhoAmI answers that user's id).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

from emulator import data
from emulator.auth import TokenError, TokenService

CODE_LIFETIME = 600.0  # seconds; Entra's codes live about ten minutes
# Seeded test users (username -> password). Passwords are test fixtures of a local emulator.
DEFAULT_USERS = {"admin@contoso.test": "emulator-admin", "seller@contoso.test": "emulator-seller"}


@dataclass
class _Code:
    client_id: str
    user: str
    redirect_uri: str
    scope: str
    nonce: str
    challenge: str
    method: str
    expires_at: float


@dataclass
class _User:
    name: str
    password: str
    user_id: str
    consented: set[str] = field(default_factory=set)  # client ids
    refresh_tokens: set[str] = field(default_factory=set)
    claims_challenge: str | None = None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pkce_s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


class AuthorizeService:
    def __init__(self, tokens: TokenService, seed: int, users: dict[str, str] | None = None):
        self.tokens = tokens
        self.users = {
            name.lower(): _User(name, pw, data.derived_guid(seed, f"person:{name.lower()}"))
            for name, pw in (users or DEFAULT_USERS).items()
        }
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, tuple[str, str, str]] = {}  # token -> (user, client, scope)
        self._lock = threading.Lock()
        self.refresh_grants = 0  # counters tests can wait on
        self.code_grants = 0

    # -- the authorize endpoint (GET shows the login page, POST submits it) ---------------------
    def authorize(self, tenant: str, method: str, query: str, body: bytes) -> tuple[int, str, str]:
        """-> (status, html or '', redirect location or '')."""
        self.tokens._check_tenant(tenant)
        params = {k: v[0] for k, v in parse_qs(query).items()}
        if method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            params = {k[2:]: v for k, v in form.items() if k.startswith("p_")}
        else:
            form = {}
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if client_id not in self.tokens.clients:
            return (
                400,
                _page("Sign in", f"<p>Unknown application '{html.escape(client_id)}'.</p>"),
                "",
            )
        if urlsplit(redirect_uri).scheme not in ("https", "http") or not redirect_uri:
            return 400, _page("Sign in", "<p>The redirect URI is not valid.</p>"), ""
        if urlsplit(redirect_uri).scheme == "http" and urlsplit(redirect_uri).hostname not in (
            "localhost",
            "127.0.0.1",
        ):
            return 400, _page("Sign in", "<p>http redirect URIs are for localhost only.</p>"), ""

        def back(**extra: str) -> tuple[int, str, str]:
            sep = "&" if "?" in redirect_uri else "?"
            values = {**extra, "state": params.get("state", "")}
            return 302, "", redirect_uri + sep + urlencode(values)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type", error_description="Use code.")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE S256 is required.")
        scope = params.get("scope", "")
        resource = f"{self.tokens.base_url}/user_impersonation"
        if resource not in scope.split():
            return back(error="invalid_scope", error_description=f"Ask for {resource}.")
        error = ""
        if method == "POST":
            with self._lock:
                user = self.users.get(form.get("username", "").strip().lower())
            if form.get("action") == "cancel":
                return back(error="access_denied", error_description="The user canceled.")
            if user is None or not secrets.compare_digest(form.get("password", ""), user.password):
                error = "Your account or password is incorrect."
            elif client_id not in user.consented and form.get("consent") != "yes":
                return 200, self._consent_page(params, form, user), ""
            else:
                user.consented.add(client_id)
                code = secrets.token_urlsafe(32)
                with self._lock:
                    self._codes[code] = _Code(
                        client_id,
                        user.name.lower(),
                        redirect_uri,
                        scope,
                        params.get("nonce", ""),
                        params["code_challenge"],
                        "S256",
                        time.time() + CODE_LIFETIME,
                    )
                return back(code=code)
        return 200, self._login_page(params, error), ""

    @staticmethod
    def _hidden(params: dict[str, str]) -> str:
        return "".join(
            f'<input type="hidden" name="p_{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )

    def _login_page(self, params: dict[str, str], error: str) -> str:
        alert = f'<p role="alert" id="error">{html.escape(error)}</p>' if error else ""
        return _page(
            "Sign in",
            f"""<form method="post">{self._hidden(params)}{alert}
<label for="username">Email</label><input id="username" name="username" type="email" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button type="submit" name="action" value="signin">Sign in</button>
<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button></form>""",
        )

    def _consent_page(self, params: dict[str, str], form: dict[str, str], user: _User) -> str:
        keep = {"username": user.name, "password": form.get("password", "")}
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in keep.items()
        )
        return _page(
            "Permissions requested",
            f"""<p>Segment Export wants to access Dynamics 365 as {html.escape(user.name)}
(scope {html.escape(params.get("scope", ""))}).</p>
<form method="post">{self._hidden(params)}{hidden}
<button type="submit" name="consent" value="yes">Accept</button>
<button type="submit" name="action" value="cancel">Cancel</button></form>""",
        )

    # -- the token endpoint's delegated grants ----------------------------------------------
    def token(self, form: dict[str, str], client_id: str, secret: str) -> dict[str, Any]:
        expected = self.tokens.clients.get(client_id)
        if expected is None or not secret or not secrets.compare_digest(secret, expected):
            raise TokenError(401, "invalid_client", 7000215, "Invalid client secret provided.")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._by_code(form, client_id)
        return self._by_refresh(form, client_id)

    def _by_code(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)  # single use
        if code is None or code.expires_at < time.time() or code.client_id != client_id:
            raise TokenError(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code is invalid or has expired.",
            )
        if form.get("redirect_uri") != code.redirect_uri:
            raise TokenError(
                400,
                "invalid_grant",
                50011,
                "The redirect URI does not match the one used for the code.",
            )
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(pkce_s256(verifier), code.challenge):
            raise TokenError(
                400,
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the "
                "authorization request.",
            )
        self.code_grants += 1
        return self._tokens_for(code.user, client_id, code.scope, code.nonce)

    def _by_refresh(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        with self._lock:
            entry = self._refresh.get(token)
            user = self.users.get(entry[0]) if entry else None
            if entry is None or user is None or entry[1] != client_id:
                raise TokenError(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is "
                    "needed. The user might have changed or reset their password.",
                )
            if user.claims_challenge is not None:
                err = TokenError(
                    400,
                    "interaction_required",
                    50076,
                    "Due to a configuration change made by your administrator, you must use "
                    "multi-factor authentication.",
                )
                err.claims = user.claims_challenge
                raise err
            del self._refresh[token]  # rotation: the old refresh token stops working
            user.refresh_tokens.discard(token)
            self.refresh_grants += 1
        return self._tokens_for(entry[0], client_id, entry[2], None)

    def _tokens_for(
        self, username: str, client_id: str, scope: str, nonce: str | None
    ) -> dict[str, Any]:
        user = self.users[username]
        now = time.time()
        lifetime = self.tokens.lifetime
        access = self.tokens.mint_user_token(client_id, user.user_id, "user_impersonation")
        refresh = secrets.token_urlsafe(48)
        with self._lock:
            self._refresh[refresh] = (username, client_id, scope)
            user.refresh_tokens.add(refresh)
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": f"{self.tokens.authority_host}/{self.tokens.tenant_id}/v2.0",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "sub": user.user_id,
            "oid": user.user_id,
            "tid": self.tokens.tenant_id,
            "preferred_username": user.name,
            "name": user.name,
        }
        if nonce:
            claims["nonce"] = nonce
        id_token = jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
        client_info = _b64url(
            json.dumps({"uid": user.user_id, "utid": self.tokens.tenant_id}).encode()
        )
        return {
            "token_type": "Bearer",
            "scope": f"{self.tokens.base_url}/user_impersonation",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": client_info,
        }

    # -- test hooks -------------------------------------------------------------------------------
    def revoke_sessions(self, username: str) -> int:
        """Revoke-all: every refresh token of the user stops working, and (like a continuous
        access evaluation event) so do the user's access tokens. Returns the tokens revoked."""
        with self._lock:
            user = self.users[username.lower()]
            revoked = len(user.refresh_tokens)
            for token in user.refresh_tokens:
                self._refresh.pop(token, None)
            user.refresh_tokens.clear()
        return revoked + self.tokens.expire_user_tokens(user.user_id)

    def demand_claims(self, username: str, on: bool = True) -> None:
        claims = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})
        with self._lock:
            self.users[username.lower()].claims_challenge = claims if on else None
        if on:
            self.tokens.expire_user_tokens(self.users[username.lower()].user_id)

    def user_id(self, username: str) -> str:
        return self.users[username.lower()].user_id


def _page(title: str, body: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - Emulated Microsoft identity platform</title>
<style>body{{font-family:sans-serif;max-width:24rem;margin:2rem auto;padding:0 1rem}}
label,input,button{{display:block;margin:.5rem 0;font-size:1rem}}input{{width:100%}}
[role=alert]{{color:#a00}}:focus{{outline:3px solid #05f}}</style></head>
<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"""
