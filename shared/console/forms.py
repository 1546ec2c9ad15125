"""Pure conversions between the console's forms and the API's JSON documents (no I/O).

Form fields are named with the API's field paths (``credential.tenantId``), so the API's
problem+json ``errors`` land beside the field they name. Validation is the API's; the console
adds only its own consent step (the "I agree" box of the product's Add connection page).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CREDENTIAL_FIELDS = {
    "client-secret": ("tenantId", "clientId", "secretSetting"),
    "delegated": ("tenantId", "clientId", "secretSetting"),
    "managed-identity": ("clientId",),
}
AGREE_MESSAGE = "agree that data leaves your Customer Insights compliance boundary"


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()


def connection_form_values(connection: Mapping[str, Any] | None) -> dict[str, Any]:
    if connection is None:
        return {"usableBy": "administrators", "credential.kind": "delegated"}
    credential = connection.get("credential") or {}
    values: dict[str, Any] = {
        "displayName": connection.get("displayName", ""),
        "usableBy": connection.get("usableBy", "administrators"),
        "serverAddress": connection.get("serverAddress", ""),
        "contactIdField": connection.get("contactIdField", ""),
        "credential.kind": credential.get("kind", ""),
        "agree": "yes",  # agreed when it was created
    }
    for name in ("tenantId", "clientId", "secretSetting"):
        values[f"credential.{name}"] = credential.get(name) or ""
    return values


def connection_document(
    form: Mapping[str, Any], *, creating: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """-> (the API document, the console's own errors). Empty optional fields are left out so
    the API applies its defaults and names what is missing."""
    kind = _text(form, "credential.kind")
    credential: dict[str, Any] = {"kind": kind} if kind else {}
    for name in CREDENTIAL_FIELDS.get(kind, ("tenantId", "clientId", "secretSetting")):
        value = _text(form, f"credential.{name}")
        if value:
            credential[name] = value
    document: dict[str, Any] = {"credential": credential}
    for name in ("displayName", "usableBy", "serverAddress", "contactIdField"):
        value = _text(form, name)
        if value or creating:
            document[name] = value
    errors: dict[str, str] = {}
    if _text(form, "agree") != "yes":
        errors["agree"] = AGREE_MESSAGE
    return document, errors


def export_form_values(export: Mapping[str, Any] | None) -> dict[str, Any]:
    if export is None:
        return {"mode": "mirror", "listName": "{segment}", "segments": [], "enabled": "true"}
    return {
        "displayName": export.get("displayName", ""),
        "connectionId": export.get("connectionId") or "",
        "segments": list(export.get("segments") or []),
        "mode": export.get("mode", "mirror"),
        "listName": export.get("listName", "{segment}"),
        "enabled": "true" if export.get("enabled", True) else "false",
    }


def export_document(form: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The export's JSON from the form. ``extra`` holds fields the console renders from the API's
    schema (``schedule.kind`` ...), folded into nested objects by their dotted names."""
    segments = form.get("segments", [])
    if isinstance(segments, str):
        segments = [segments]
    document: dict[str, Any] = {
        "displayName": _text(form, "displayName"),
        "connectionId": _text(form, "connectionId"),
        "segments": [s for s in segments if s],
        "mode": _text(form, "mode") or "mirror",
        "listName": _text(form, "listName"),
        "enabled": _text(form, "enabled") != "false",
    }
    for name, value in extra.items():
        if value in ("", None):
            continue
        target = document
        *parents, last = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    return document
