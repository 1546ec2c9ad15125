"""The FastAPI app factory. Cheap to call: settings, store and identity are resolved on the first
request (see ``deps.ApiContext``), so importing ``function_app`` stays fast."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from shared.api.deps import (
    ApiContext,
    ProblemsProvider,
    SettingsProvider,
    StoreFactory,
    any_role,
    context,
)
from shared.api.docs import docs_router
from shared.api.identity import Caller, IdentityResolver
from shared.api.middleware import GuardMiddleware, RequestGate, RouteRule, route_rules
from shared.api.problems import CONFIGURATION_DETAIL, PROBLEM_JSON, ApiProblem, install_handlers
from shared.api.schemas import HealthOut
from shared.settings import Settings

log = logging.getLogger("shared.api")

OPENAPI_URL = "/api/openapi.json"

_PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status", "detail", "instance"],
}


def _settings_from_env() -> Settings:
    settings = Settings.from_env()
    from shared import telemetry  # light: imports OpenTelemetry only when it is configured

    telemetry.configure(settings.environ)
    return settings


def create_api(
    settings_provider: SettingsProvider = _settings_from_env,
    *,
    store_factory: StoreFactory | None = None,
    resolver_factory: Callable[[Settings], IdentityResolver] | None = None,
    problems_provider: ProblemsProvider | None = None,
) -> FastAPI:
    """`problems_provider` defaults to the process's startup checks when settings come from
    the environment (shared/config_check.py)."""
    from shared.api.routes import (
        connections,
        customer_imports,
        customers,
        exports,
        me,
        notifications,
        runs,
        segments,
        sources,
    )
    from shared.console import mount_console

    api = FastAPI(
        title="Segment Export for Dynamics 365 Sales",
        version="1.0",
        description=(
            "Keeps one static marketing list of existing contacts in Dynamics 365 Sales equal to "
            "each exported customer segment. Errors are RFC 9457 problem+json. Roles: Admin, "
            "Contributor, Viewer."
        ),
        openapi_url=None,  # served below, behind the caller check
        docs_url=None,
        redoc_url=None,
        responses={
            "4XX": {
                "description": "problem",
                "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
            },
        },
    )
    if problems_provider is None and settings_provider is _settings_from_env:
        from shared.config_check import startup_problems

        problems_provider = startup_problems
    ctx = ApiContext(settings_provider, store_factory, resolver_factory, problems_provider)
    api.state.context = ctx
    install_handlers(api)

    @api.get(
        "/api/health",
        response_model=HealthOut,
        tags=["health"],
        summary="Liveness and configuration",
        responses={503: {"description": "configuration problems: each names its setting"}},
    )
    def health(request: Request) -> HealthOut:
        """Fails (503) while the configuration has problems (shared/config_check.py), so a
        probe sees a broken deployment. Anonymous: it names the settings to fix, never their
        values or the full messages (those are in the log, written once at start)."""
        problems = context(request).problems()
        if problems:
            for problem in problems:
                log.error(
                    "health: configuration problem (%s): %s", problem.setting, problem.message
                )
            raise ApiProblem(
                503,
                CONFIGURATION_DETAIL,
                kind="configuration",
                errors=[{"field": p.setting, "message": "missing or invalid"} for p in problems],
            )
        return HealthOut(status="ok")

    routers = [
        m.router
        for m in (
            connections,
            exports,
            runs,
            segments,
            customers,
            customer_imports,
            sources,
            notifications,
            me,
        )
    ]
    for router in routers:
        api.include_router(router)
    routers += mount_console(api)  # the pages at /, a client of the routes above

    def document() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = FastAPI.openapi(api)
            # Entra ID bearer tokens (App Service Authentication sends its own header instead).
            schema.setdefault("components", {})["securitySchemes"] = {
                "entra": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
            schema["security"] = [{"entra": []}]
            schema["paths"]["/api/health"]["get"]["security"] = []
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = document  # type: ignore[method-assign]

    @api.get(OPENAPI_URL, include_in_schema=False)
    def openapi(caller: Annotated[Caller, Depends(any_role)]) -> JSONResponse:
        return JSONResponse(api.openapi())

    api.include_router(docs_router(OPENAPI_URL, "Segment Export API"))

    rules: list[RouteRule] = []

    def gate_rules() -> list[RouteRule]:  # built on first request, once every route exists
        if not rules:
            included = [r for router in routers for r in router.routes]
            routes = [r for r in (*api.router.routes, *included) if isinstance(r, APIRoute)]
            rules.extend(route_rules(routes))
        return rules

    api.add_middleware(RequestGate, rules=gate_rules, context=lambda: api.state.context)
    api.add_middleware(GuardMiddleware)
    return api
