"""/api/notifications/targets (Admin): where outcome changes are sent.

A target names the app setting that holds its webhook URL (and, for json, the one holding its
signing key), like a connection names its secret setting: the API stores and shows the NAMES,
never the values. Saving checks that the URL setting exists and holds an acceptable address
(https on 443 to a public host; loopback only with ALLOW_LOOPBACK_WEBHOOKS), without echoing it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from shared.api.common import (
    ETAG_HEADER,
    IfMatch,
    check_if_match,
    merge_patch,
    save_patched,
    utc_now_iso,
    validate_document,
)
from shared.api.deps import admin, get_settings, get_store
from shared.api.identity import Caller
from shared.api.problems import ApiProblem
from shared.api.schemas import (
    RESOURCE_ID_PATTERN,
    NotificationTargetIn,
    NotificationTargetList,
    NotificationTargetOut,
    NotificationTargetPatch,
    notification_target_input_dict,
    notification_target_out,
)
from shared.models import Audit, NotificationFormat, NotificationTarget
from shared.notify.address import WebhookAddressError, check_url
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
router = APIRouter(prefix="/api/notifications/targets", tags=["notifications"])

TargetId = Annotated[str, Path(pattern=RESOURCE_ID_PATTERN, description="target id")]


def check_target(body: NotificationTargetIn, settings: Settings, store: StoreApi) -> None:
    """Settings named exist and hold acceptable values; exports exist. 422 naming the field."""
    errors: list[dict[str, str]] = []
    url = settings.environ.get(body.url_setting) or ""
    if not url.strip():
        errors.append({"field": "urlSetting", "message": "no such app setting (or it is empty)"})
    else:
        try:
            check_url(url, allow_loopback=settings.allow_loopback_webhooks)
        except WebhookAddressError as exc:
            errors.append({"field": "urlSetting", "message": f"the webhook URL {exc}"})
    if body.format is NotificationFormat.JSON:
        if not body.secret_setting:
            errors.append({"field": "secretSetting", "message": "required for the json format"})
        elif not settings.environ.get(body.secret_setting):
            errors.append(
                {"field": "secretSetting", "message": "no such app setting (or it is empty)"}
            )
    elif body.secret_setting:
        errors.append({"field": "secretSetting", "message": "only the json format is signed"})
    if body.exports is not None:
        known = {e.id for e in store.exports.list()}
        for index, export_id in enumerate(body.exports):
            if export_id not in known:
                errors.append({"field": f"exports[{index}]", "message": "no such export"})
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise ApiProblem(
            422,
            f"The notification target is not valid: {summary}",
            kind="validation",
            title="Invalid request",
            errors=errors,
        )


def _build(body: NotificationTargetIn, *, id: str, audit: Audit) -> NotificationTarget:
    return NotificationTarget(
        id=id,
        display_name=body.display_name,
        format=body.format,
        url_setting=body.url_setting,
        secret_setting=body.secret_setting,
        export_ids=None if body.exports is None else list(dict.fromkeys(body.exports)),
        enabled=body.enabled,
        audit=audit,
    )


def _answer(response: Response, target: NotificationTarget) -> NotificationTargetOut:
    if target.etag:
        response.headers["ETag"] = target.etag
    return notification_target_out(target)


@router.get("", response_model=NotificationTargetList, summary="List notification targets")
def list_targets(
    caller: Annotated[Caller, Depends(admin)], store: Annotated[StoreApi, Depends(get_store)]
) -> NotificationTargetList:
    targets = sorted(store.notify_targets.list(), key=lambda t: t.display_name.lower())
    return NotificationTargetList(items=[notification_target_out(t) for t in targets])


@router.post(
    "",
    status_code=201,
    response_model=NotificationTargetOut,
    summary="Create a notification target (Admin)",
    responses={201: {"headers": {**ETAG_HEADER, "Location": {"schema": {"type": "string"}}}}},
)
def create_target(
    body: NotificationTargetIn,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> NotificationTargetOut:
    check_target(body, settings, store)
    now = utc_now_iso()
    target = _build(body, id=uuid.uuid4().hex, audit=Audit(caller.name, now, caller.name, now))
    created = store.notify_targets.create(target)
    log.info("notification target %s created by %s", created.id, caller.name)
    response.headers["Location"] = f"/api/notifications/targets/{created.id}"
    return _answer(response, created)


@router.get(
    "/{target_id}",
    response_model=NotificationTargetOut,
    summary="Read a notification target (Admin)",
    responses={200: {"headers": ETAG_HEADER}},
)
def get_target(
    target_id: TargetId,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> NotificationTargetOut:
    return _answer(response, store.notify_targets.get(target_id))


@router.patch(
    "/{target_id}",
    response_model=NotificationTargetOut,
    summary="Change a notification target (JSON merge patch; If-Match optional)",
    responses={200: {"headers": ETAG_HEADER}},
)
def patch_target(
    target_id: TargetId,
    patch: NotificationTargetPatch,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    if_match: IfMatch = None,
) -> NotificationTargetOut:
    changes = patch.model_dump(by_alias=True, exclude_unset=True)

    def save(current: NotificationTarget) -> NotificationTarget:
        merged = merge_patch(notification_target_input_dict(current), changes)
        if isinstance(changes.get("exports"), list):
            merged["exports"] = changes["exports"]  # a list is replaced, never merged
        body = validate_document(NotificationTargetIn, merged)
        check_target(body, settings, store)
        audit = Audit(
            current.audit.created_by, current.audit.created_at, caller.name, utc_now_iso()
        )
        return store.notify_targets.update(
            _build(body, id=current.id, audit=audit), if_match=current.etag
        )

    saved = save_patched(
        lambda: store.notify_targets.get(target_id), save, if_match, "notification target"
    )
    log.info("notification target %s changed by %s", target_id, caller.name)
    return _answer(response, saved)


@router.delete("/{target_id}", status_code=204, summary="Delete a notification target")
def delete_target(
    target_id: TargetId,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    if_match: IfMatch = None,
) -> Response:
    current = store.notify_targets.get(target_id)
    check_if_match(if_match, current.etag)
    store.notify_targets.delete(target_id, if_match=current.etag)
    log.info("notification target %s deleted by %s", target_id, caller.name)
    return Response(status_code=204)
