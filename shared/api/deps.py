"""FastAPI dependencies: settings, store and caller, all resolved lazily on first use.

Nothing here runs at import time; the first request builds the settings, the store (and its
tables) and the identity resolver, and later requests reuse them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated

from fastapi import Depends, Request

from shared.api.identity import Caller, IdentityResolver, IdentityUnavailable, NotAuthenticated
from shared.api.problems import ApiProblem
from shared.config_check import ConfigProblem
from shared.errors import ConfigurationError
from shared.models import Role
from shared.settings import Settings
from shared.store.protocols import StoreApi

SettingsProvider = Callable[[], Settings]
StoreFactory = Callable[[Settings], StoreApi]
ProblemsProvider = Callable[[], Sequence[ConfigProblem]]


def _default_store_factory(settings: Settings) -> StoreApi:
    from shared.store import open_store  # lazy: azure-data-tables is heavy

    store = open_store(settings)
    store.ensure()
    return store


class ApiContext:
    """Per-app lazily built collaborators (one per worker process)."""

    def __init__(
        self,
        settings_provider: SettingsProvider,
        store_factory: StoreFactory | None = None,
        resolver_factory: Callable[[Settings], IdentityResolver] | None = None,
        problems_provider: ProblemsProvider | None = None,
    ) -> None:
        self._settings_provider = settings_provider
        self._problems_provider = problems_provider
        self._store_factory = store_factory or _default_store_factory
        self._resolver_factory = resolver_factory or IdentityResolver
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._store: StoreApi | None = None
        self._resolver: IdentityResolver | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    self._settings = self._settings_provider()
        return self._settings

    def problems(self) -> Sequence[ConfigProblem]:
        """Configuration problems (shared/config_check.py); without a provider, whether the
        settings can be built at all."""
        if self._problems_provider is not None:
            return self._problems_provider()
        try:
            self.settings()
        except ConfigurationError as error:
            return (ConfigProblem("settings", str(error)),)
        return ()

    def store(self) -> StoreApi:
        if self._store is None:
            settings = self.settings()
            with self._lock:
                if self._store is None:
                    self._store = self._store_factory(settings)
        return self._store

    def resolver(self) -> IdentityResolver:
        if self._resolver is None:
            settings = self.settings()
            with self._lock:
                if self._resolver is None:
                    self._resolver = self._resolver_factory(settings)
        return self._resolver


def context(request: Request) -> ApiContext:
    return request.app.state.context  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return context(request).settings()


def get_store(request: Request) -> StoreApi:
    return context(request).store()


UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="segment-export"'}


CALLER_KEY = "segexp.caller"  # scope["state"] entry: the caller RequestGate resolved


def resolve_caller(resolver: IdentityResolver, headers: Mapping[str, str]) -> Caller:
    """The caller named by the request headers, or the problem to answer (401, 503, 403)."""
    try:
        caller = resolver.resolve(headers)
    except NotAuthenticated as exc:
        challenge = dict(UNAUTHORIZED)
        if headers.get("authorization"):
            challenge["WWW-Authenticate"] += ', error="invalid_token"'
        raise ApiProblem(
            401, f"Authentication required: {exc}.", kind="unauthenticated", headers=challenge
        ) from None
    except IdentityUnavailable:
        raise ApiProblem(
            503,
            "The caller's token could not be checked right now; retry shortly.",
            kind="identity-unavailable",
            headers={"Retry-After": "10"},
        ) from None
    if caller.role is None:
        raise ApiProblem(
            403,
            "You have no role in this application (Admin, Contributor or Viewer).",
            kind="forbidden",
        )
    return caller


def get_caller(request: Request) -> Caller:
    """The caller RequestGate resolved from the headers before the body was read (or, when the
    app runs without the gate, resolved here)."""
    resolved = request.scope.get("state", {}).get(CALLER_KEY)
    if isinstance(resolved, Caller):
        return resolved
    return resolve_caller(context(request).resolver(), request.headers)


def require(minimum: Role) -> Callable[..., Caller]:
    """A dependency that admits callers holding at least ``minimum``."""

    def check(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if not caller.at_least(minimum):
            raise ApiProblem(
                403, f"This needs the {minimum.value} role or higher.", kind="forbidden"
            )
        return caller

    return check


any_role = require(Role.VIEWER)
contributor = require(Role.CONTRIBUTOR)
admin = require(Role.ADMIN)
