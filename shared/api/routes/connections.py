"""/api/connections: Admin manages connections; contributors and viewers see a summary (id,
displayName, type) of the connections usable by contributors."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Response

from shared.api.addresses import AddressError, normalise_server_address
from shared.api.common import (
    ETAG_HEADER,
    IfMatch,
    check_if_match,
    merge_patch,
    save_patched,
    utc_now_iso,
    validate_document,
)
from shared.api.deps import admin, any_role, get_settings, get_store
from shared.api.identity import Caller
from shared.api.problems import ApiProblem, field_error
from shared.api.schemas import (
    RESOURCE_ID_PATTERN,
    ConnectionIn,
    ConnectionList,
    ConnectionOut,
    ConnectionPatch,
    ConnectionTestOut,
    ProbeCheckOut,
    SignInCompleteIn,
    SignInStartIn,
    SignInStartOut,
    connection_input_dict,
    connection_out,
    connection_summary,
    credential_from_input,
)
from shared.loopback import is_loopback
from shared.models import Audit, Connection, ContactIdSource, CredentialKind, SignIn, UsableBy
from shared.secrets_rule import secret_setting_problem
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
router = APIRouter(prefix="/api/connections", tags=["connections"])

ConnectionId = Annotated[str, Path(pattern=RESOURCE_ID_PATTERN, description="connection id")]


def usable_by_contributors(connection: Connection) -> bool:
    return connection.usable_by is UsableBy.ADMINISTRATORS_AND_CONTRIBUTORS


def check_address(raw: str, settings: Settings) -> str:
    try:
        return normalise_server_address(
            raw, settings.allowed_sales_hosts, allow_loopback=settings.allow_loopback_sales
        )
    except AddressError as exc:
        raise field_error(422, "serverAddress", str(exc)) from None


def _build(body: ConnectionIn, settings: Settings, *, id: str, audit: Audit) -> Connection:
    return Connection(
        id=id,
        display_name=body.display_name,
        server_address=check_address(body.server_address, settings),
        credential=credential_from_input(body.credential),
        contact_id_field=body.contact_id_field,
        contact_id_source=body.contact_id_source,
        usable_by=body.usable_by,
        type=body.type,
        audit=audit,
    )


def _signin(store: StoreApi, connection: Connection) -> SignIn | None:
    if connection.credential.kind is not CredentialKind.DELEGATED:
        return None
    return store.signins.get(connection.id)


def _with_etag(
    response: Response, connection: Connection, store: StoreApi | None = None
) -> ConnectionOut:
    if connection.etag:
        response.headers["ETag"] = connection.etag
    return connection_out(connection, _signin(store, connection) if store else None)


@router.get("", response_model=ConnectionList, summary="List connections (shape depends on role)")
def list_connections(
    caller: Annotated[Caller, Depends(any_role)], store: Annotated[StoreApi, Depends(get_store)]
) -> ConnectionList:
    connections = sorted(store.connections.list(), key=lambda c: c.display_name.lower())
    if caller.is_admin:
        return ConnectionList(items=[connection_out(c, _signin(store, c)) for c in connections])
    return ConnectionList(
        items=[connection_summary(c) for c in connections if usable_by_contributors(c)]
    )


@router.post(
    "",
    status_code=201,
    response_model=ConnectionOut,
    summary="Create a connection (Admin)",
    responses={201: {"headers": {**ETAG_HEADER, "Location": {"schema": {"type": "string"}}}}},
)
def create_connection(
    body: ConnectionIn,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> ConnectionOut:
    now = utc_now_iso()
    connection = _build(
        body, settings, id=uuid.uuid4().hex, audit=Audit(caller.name, now, caller.name, now)
    )
    created = store.connections.create(connection)
    log.info("connection %s created by %s", created.id, caller.name)
    response.headers["Location"] = f"/api/connections/{created.id}"
    return _with_etag(response, created)


@router.get(
    "/{connection_id}",
    response_model=ConnectionOut,
    summary="Read a connection (Admin)",
    responses={200: {"headers": ETAG_HEADER}},
)
def get_connection(
    connection_id: ConnectionId,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> ConnectionOut:
    return _with_etag(response, store.connections.get(connection_id), store)


@router.patch(
    "/{connection_id}",
    response_model=ConnectionOut,
    summary="Change a connection (Admin; JSON merge patch; If-Match optional)",
    responses={200: {"headers": ETAG_HEADER}},
)
def patch_connection(
    connection_id: ConnectionId,
    patch: ConnectionPatch,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    if_match: IfMatch = None,
) -> ConnectionOut:
    changes = patch.model_dump(by_alias=True, exclude_unset=True)

    def save(current: Connection) -> Connection:
        document = connection_input_dict(current)
        new_kind = (changes.get("credential") or {}).get("kind")
        if new_kind and new_kind != current.credential.kind.value:
            document.pop("credential")  # another kind of credential replaces the old one
        merged = merge_patch(document, changes)
        body = validate_document(ConnectionIn, merged)
        audit = Audit(
            current.audit.created_by, current.audit.created_at, caller.name, utc_now_iso()
        )
        updated = _build(body, settings, id=current.id, audit=audit)
        _check_ci_mapping(store, settings, current, updated)
        return store.connections.update(updated, if_match=current.etag)

    saved = save_patched(lambda: store.connections.get(connection_id), save, if_match, "connection")
    log.info("connection %s changed by %s", connection_id, caller.name)
    return _with_etag(response, saved, store)


@router.delete(
    "/{connection_id}",
    status_code=204,
    summary="Delete a connection (Admin); 409 while exports use it unless ?detach=true",
)
def delete_connection(
    connection_id: ConnectionId,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    detach: Annotated[bool, Query(description="detach the exports that use it")] = False,
    if_match: IfMatch = None,
) -> Response:
    current: Connection = store.connections.get(connection_id)
    check_if_match(if_match, current.etag)
    users = store.exports.list(connection_id=connection_id)
    if users and not detach:
        names = ", ".join(f"{e.display_name} ({e.id})" for e in users)
        raise ApiProblem(
            409,
            f"The connection is used by {len(users)} export(s): {names}. Remove them, or "
            "delete with ?detach=true to detach them (they keep their settings and do not run).",
            kind="connection-in-use",
            extra={"exports": [{"id": e.id, "displayName": e.display_name} for e in users]},
        )
    if users:
        store.exports.detach_connection(connection_id)
    store.connections.delete(connection_id, if_match=current.etag)
    # An export saved on this connection meanwhile would point nowhere: detach it too.
    store.exports.detach_connection(connection_id)
    store.signins.delete(connection_id)  # the token cache goes with its connection
    log.info("connection %s deleted by %s (detached %d)", connection_id, caller.name, len(users))
    return Response(status_code=204)


@router.post(
    "/{connection_id}/test",
    response_model=ConnectionTestOut,
    summary="Test a connection (Admin): token, WhoAmI, read contacts, list privileges",
)
def test_connection(
    connection_id: ConnectionId,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> ConnectionTestOut:
    from shared.sales import probe_connection  # lazy: msal/httpx only when testing

    connection: Connection = store.connections.get(connection_id)
    try:
        checks = [
            ProbeCheckOut(name=c.name, ok=bool(c.ok), detail=str(c.detail))
            for c in probe_connection(connection, settings)
        ]
    except Exception as exc:
        log.warning("connection test of %s failed: %s", connection_id, type(exc).__name__)
        checks = [
            ProbeCheckOut(
                name="probe", ok=False, detail=f"the test could not run ({type(exc).__name__})"
            )
        ]
    from shared.api.sources import ci_readers, mapping_check

    if connection.contact_id_source is ContactIdSource.ALTERNATE_KEY or ci_readers(
        store, connection.id
    ):
        ok, detail = mapping_check(store, settings, connection)
        checks.append(ProbeCheckOut(name="customer-insights", ok=ok, detail=detail))
    secret = _secret_value(connection, settings)
    if secret:  # defence in depth: no detail may carry the secret, whatever a lower layer said
        checks = [
            c.model_copy(update={"detail": c.detail.replace(secret, "[redacted]")}) for c in checks
        ]
    return ConnectionTestOut(ok=bool(checks) and all(c.ok for c in checks), checks=checks)


def _check_ci_mapping(
    store: StoreApi, settings: Settings, current: Connection, updated: Connection
) -> None:
    """A changed contact-ID mapping of a connection that Customer Insights exports read through
    must work on CI-D (the profile column exists / the key table is readable): else 422."""
    from shared.api.sources import ci_readers, mapping_check

    if (current.contact_id_field, current.contact_id_source) == (
        updated.contact_id_field,
        updated.contact_id_source,
    ) or not ci_readers(store, current.id):
        return
    ok, detail = mapping_check(store, settings, updated)
    if not ok:
        raise field_error(422, "contactIdField", detail)


def _secret_value(connection: Connection, settings: Settings) -> str | None:
    cred = connection.credential
    if (
        cred.kind is CredentialKind.CLIENT_SECRET
        and cred.secret_setting
        and secret_setting_problem(cred.secret_setting) is None
    ):
        return settings.environ.get(cred.secret_setting) or None
    return None


# --- delegated sign-in (credential kind "delegated") --------------------------------------------


def _delegated(store: StoreApi, connection_id: str) -> Connection:
    connection: Connection = store.connections.get(connection_id)
    if connection.credential.kind is not CredentialKind.DELEGATED:
        raise field_error(
            409, "credential.kind", "only connections with the delegated credential sign in"
        )
    return connection


def _check_redirect(uri: str) -> str:
    parts = urlsplit(uri)
    loopback = is_loopback(parts.hostname)
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise field_error(422, "redirectUri", "must be https (http only for localhost)")
    if not parts.hostname or parts.fragment or parts.username or parts.password:
        raise field_error(422, "redirectUri", "must be an absolute URL without a fragment")
    return uri


@router.post(
    "/{connection_id}/sign-in",
    response_model=SignInStartOut,
    summary="Start signing a Sales user in (Admin; delegated connections)",
    description="Returns the authority's sign-in address (authorization code flow with PKCE) "
    "and an encrypted flow to send back to /sign-in/complete with the authority's answer.",
)
def start_sign_in(
    connection_id: ConnectionId,
    body: SignInStartIn,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> SignInStartOut:
    from shared.sales import delegated  # lazy: msal

    connection = _delegated(store, connection_id)
    url, flow = delegated.start_sign_in(connection, settings, _check_redirect(body.redirect_uri))
    return SignInStartOut(authorize_url=url, flow=flow)


@router.post(
    "/{connection_id}/sign-in/complete",
    response_model=ConnectionOut,
    summary="Finish the sign-in with the authority's answer (Admin; delegated connections)",
)
def complete_sign_in(
    connection_id: ConnectionId,
    body: SignInCompleteIn,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> ConnectionOut:
    from shared.sales import delegated  # lazy: msal

    connection = _delegated(store, connection_id)
    if "error" in body.query:
        raise ApiProblem(
            400,
            f"The sign-in was not completed ({body.query['error'][:100]}).",
            kind="sign-in-failed",
        )
    try:
        signin = delegated.complete_sign_in(connection, settings, body.flow, dict(body.query))
    except delegated.SignInError as exc:
        raise ApiProblem(400, f"The sign-in failed: {exc}.", kind="sign-in-failed") from None
    store.signins.put(signin, "*")  # a new sign-in replaces the previous one
    log.info("connection %s signed in by %s as %s", connection_id, caller.name, signin.account)
    return _with_etag(response, connection, store)
