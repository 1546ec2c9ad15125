"""RFC 9457 problem details: one exception type for our own errors and the handlers that turn
every error (ours, FastAPI's validation errors, Starlette's 404/405, store errors) into
``application/problem+json``.

Nothing here ever echoes request input: validation messages name the field, never the value
(a value could be a secret someone pasted into the wrong field).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    StoreLimitError,
    StoreUnavailableError,
)
from shared.models import CredentialKind

PROBLEM_JSON = "application/problem+json"
CONFIGURATION_DETAIL = (
    "The service is not configured correctly; an administrator must check its settings."
)
TYPE_PREFIX = "urn:segment-export:problem:"
log = logging.getLogger("shared.api")

# Body fields that would carry a secret value: refused outright, never stored nor echoed.
SECRET_FIELDS = frozenset({"secret", "clientsecret", "client_secret", "password", "secretvalue"})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiProblem(Exception):
    """An error the API answers on purpose with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.title = title or _phrase(status)
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def field_error(status: int, field: str, message: str, detail: str | None = None) -> ApiProblem:
    """A validation problem naming one field."""
    return ApiProblem(
        status,
        detail or f"{field}: {message}",
        kind="validation",
        title="Invalid request",
        errors=[{"field": field, "message": message}],
    )


def problem_response(
    request: Request | None,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + kind if kind else "about:blank",
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        "instance": instance if instance is not None else (request.url.path if request else ""),
    }
    if errors is not None:
        body["errors"] = [dict(e) for e in errors]
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def render(request: Request, problem: ApiProblem) -> JSONResponse:
    return problem_response(
        request,
        problem.status,
        problem.detail,
        kind=problem.kind,
        title=problem.title,
        errors=problem.errors,
        headers=problem.headers,
        extra=problem.extra,
    )


# --- validation errors -------------------------------------------------------------------------

# discriminator tags pydantic puts in an error's location (credential kinds, schedule kinds)
_TAGS = frozenset({*CredentialKind, "refresh", "cron", "off"})


def field_path(loc: Sequence[Any]) -> str:
    """('body', 'credential', 'client-secret', 'tenantId') -> 'credential.tenantId'."""
    parts: list[str] = []
    items = list(loc)
    if items and items[0] in ("body", "query", "path", "header"):
        items = items[1:]
    for part in items:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in _TAGS or str(part).startswith(("function-", "union[", "json-or-python")):
            continue  # pydantic's internal markers, not field names
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "body"


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    msg = str(error.get("msg", "invalid"))
    # pydantic prefixes messages raised by our validators; keep ours plain.
    return msg.removeprefix("Value error, ")


def validation_problem(
    errors: Sequence[Mapping[str, Any]], *, creating: bool = False
) -> ApiProblem:
    """Turn pydantic/FastAPI error dicts into one problem (never with the offending input)."""
    for error in errors:
        loc = error.get("loc", ())
        if loc and str(loc[-1]).lower() in SECRET_FIELDS:
            return ApiProblem(
                400,
                "Secret values are not accepted. Store the secret in an app setting (or a Key "
                "Vault reference) and name that setting in credential.secretSetting.",
                kind="secret-not-accepted",
                title="Secret values are not accepted",
                errors=[{"field": field_path(loc), "message": "secret values are not accepted"}],
            )
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiProblem(
            400,
            "The request body is not valid JSON.",
            kind="malformed-body",
            title="Malformed request body",
            errors=[{"field": "body", "message": "not valid JSON"}],
        )
    if not creating and any(e.get("loc", ("",))[0] == "path" for e in errors):
        # An id that could never exist names no resource (PUT creates: there it is a 422).
        return ApiProblem(404, "No such resource.", kind="not-found")
    listed = [{"field": field_path(e.get("loc", ())), "message": _message(e)} for e in errors]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in listed[:5])
    return ApiProblem(
        422,
        f"The request is not valid: {summary}",
        kind="validation",
        title="Invalid request",
        errors=listed,
    )


# --- handlers ----------------------------------------------------------------------------------


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return render(request, exc)


def _is_json(content_type: str | None) -> bool:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    body_not_json = any(
        tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors
    )
    if body_not_json and not _is_json(request.headers.get("content-type")):
        return problem_response(
            request,
            415,
            "Send the body as application/json.",
            kind="unsupported-media-type",
        )
    return render(request, validation_problem(list(exc.errors()), creating=request.method == "PUT"))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = _phrase(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    if detail is None:
        detail = {
            404: "No such resource.",
            405: f"Method {request.method} is not allowed here.",
        }.get(exc.status_code, phrase)
    kind = "body-too-large" if exc.status_code == 413 else None
    return problem_response(request, exc.status_code, detail, kind=kind, headers=exc.headers)


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, 404, "No such resource.", kind="not-found")


async def _on_conflict(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        request, 409, "The resource changed or already exists.", kind="conflict"
    )


async def _on_precondition(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        request,
        412,
        "The resource changed since you read it (If-Match does not match its ETag). "
        "Read it again and retry.",
        kind="precondition-failed",
    )


async def _on_limit(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        request, 422, f"A storage limit would be exceeded: {exc}", kind="storage-limit"
    )


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("storage unavailable: %s", type(exc).__name__)
    return problem_response(
        request,
        503,
        "Storage is not available right now; retry shortly.",
        kind="storage-unavailable",
        headers={"Retry-After": "5"},
    )


async def _on_configuration(request: Request, exc: Exception) -> JSONResponse:
    log.error("configuration error: %s", exc)
    return problem_response(
        request,
        500,
        CONFIGURATION_DETAIL,
        kind="configuration",
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(NotFoundError, _on_not_found)
    app.add_exception_handler(ConflictError, _on_conflict)
    app.add_exception_handler(PreconditionFailedError, _on_precondition)
    app.add_exception_handler(StoreLimitError, _on_limit)
    app.add_exception_handler(StoreUnavailableError, _on_unavailable)
    app.add_exception_handler(ConfigurationError, _on_configuration)
