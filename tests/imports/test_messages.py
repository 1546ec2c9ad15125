"""The import queue's message format, strictly parsed; a message the worker cannot use is
dropped (retrying cannot make it valid) and changes nothing."""

from __future__ import annotations

import base64

import pytest

from shared.imports.messages import decode_import_message, encode_import_message
from shared.imports.worker import ImportOutcome, process_import
from shared.store.customer_imports import new_import_id
from tests.imports.conftest import Rig


def test_round_trip_as_json_and_as_base64() -> None:
    import_id = new_import_id()
    text = encode_import_message(import_id)
    assert decode_import_message(text) == import_id
    assert decode_import_message(base64.b64encode(text.encode())) == import_id


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"importId": 7}',
        b'{"importId": "../etc"}',
        b'{"importId": "0000000000000-00000000", "more": 1}',
        b"[1, 2]",
        b"\xff\xfe",
    ],
)
def test_bad_messages_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_import_message(body)


def test_the_worker_drops_bad_and_unknown_messages(rig: Rig) -> None:
    for body in (b"not json", encode_import_message(new_import_id())):
        assert process_import(rig.store, rig.settings, body) is ImportOutcome.SKIPPED
    assert rig.store.customer_imports.list() == []
