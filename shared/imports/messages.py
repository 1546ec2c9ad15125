"""The import queue's message: JSON ``{"importId": "<id>"}`` (base64 on the queue, as the
Functions trigger expects; the queue client applies it)."""

from __future__ import annotations

import base64
import binascii
import json

from shared.store.customer_imports import is_import_id


def encode_import_message(import_id: str) -> str:
    return json.dumps({"importId": import_id}, separators=(",", ":"))


def decode_import_message(body: str | bytes) -> str:
    """The import id of a message: its JSON (what the trigger hands over) or the base64 of it
    (what the queue stores). ValueError on anything else."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
        text = text.strip()
        if not text.startswith("{"):
            text = base64.b64decode(text, validate=True).decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, binascii.Error, json.JSONDecodeError) as error:
        raise ValueError("import message is not JSON (or base64 JSON)") from error
    if not isinstance(data, dict) or set(data) != {"importId"}:
        raise ValueError('import message must be {"importId": "<id>"}')
    import_id = data["importId"]
    if not isinstance(import_id, str) or not is_import_id(import_id):
        raise ValueError("import message importId is not an import id")
    return import_id
