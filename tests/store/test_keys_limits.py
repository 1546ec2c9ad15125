"""Key encoding and Table Storage limits, checked before anything is written."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import NotFoundError, StoreLimitError
from shared.models import Run, SegmentResult, Trigger
from shared.store import Store
from shared.store.keys import decode_key, encode_key
from shared.store.limits import check_entity, entity_size
from tests.store.test_records import connection, export

NASTY = ["a/b#c?d\\e", "100% ~done~", "Ünïcødé ✓ 🎯", "'quoted' \"double\"", "~7E", "  spaces  "]


@pytest.mark.parametrize("name", NASTY)
def test_key_encoding_round_trips_and_avoids_forbidden_characters(name: str) -> None:
    key = encode_key(name)
    assert not set(key) & set("/\\#?%")
    assert decode_key(key) == name


def test_distinct_names_get_distinct_keys() -> None:
    keys = {encode_key(n) for n in [*NASTY, "~2F", "/", "a~2Fb", "a/b"]}
    assert len(keys) == len(NASTY) + 4


@pytest.mark.parametrize("bad", ["", "tab\there", "nul\x00", "del\x7f", "c1\x85", "\ud800"])
def test_control_characters_and_empty_names_are_rejected(bad: str) -> None:
    with pytest.raises(StoreLimitError):
        encode_key(bad, "segment name")


def test_overlong_key_is_rejected() -> None:
    encode_key("x" * 512)
    with pytest.raises(StoreLimitError, match="too long"):
        encode_key("x" * 513)
    with pytest.raises(StoreLimitError, match="too long"):
        encode_key("/" * 200)  # 600 characters once escaped


@pytest.mark.parametrize("name", NASTY)
def test_nasty_ids_round_trip_through_azurite(store: Store, name: str) -> None:
    store.connections.create(connection(name))
    store.exports.create(export(name, connection_id=name))
    assert store.connections.get(name).id == name
    assert [e.id for e in store.exports.list(name)] == [name]
    store.connections.delete(name)
    with pytest.raises(NotFoundError):
        store.connections.get(name)


def test_lookups_of_unstorable_ids_are_simply_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.connections.get("bad\x00id")
    store.connections.delete("bad\x00id")
    with pytest.raises(StoreLimitError, match="connection id"):
        store.connections.create(connection("bad\x00id"))


def test_entity_size_follows_azures_formula() -> None:
    entity = {
        "PartitionKey": "pk",
        "RowKey": "rk",
        "S": "abc",  # 8 + 2 + (4 + 6)
        "I": 7,  # 8 + 2 + 4
        "L": 2**40,  # 8 + 2 + 8
        "B": True,  # 8 + 2 + 1
        "F": 1.5,  # 8 + 2 + 8
        "X": b"1234",  # 8 + 2 + (4 + 4)
        "N": None,  # not stored
    }
    assert entity_size(entity) == 4 + 2 * 4 + 20 + 14 + 18 + 11 + 18 + 18
    # a non-BMP character is two UTF-16 units
    assert entity_size({"PartitionKey": "", "RowKey": "", "S": "🎯"}) == 4 + 8 + 2 + 4 + 4


def test_property_and_entity_limits_name_the_field() -> None:
    base = {"PartitionKey": "p", "RowKey": "r"}
    check_entity({**base, "Big": "x" * 32_768}, "thing")
    with pytest.raises(StoreLimitError, match="'Big'"):
        check_entity({**base, "Big": "x" * 32_769}, "thing")
    with pytest.raises(StoreLimitError, match="'Wide'"):
        check_entity({**base, "Wide": "é" * 32_769}, "thing")
    with pytest.raises(StoreLimitError, match="1048576"):
        check_entity({**base, **{f"P{i}": "x" * 32_000 for i in range(17)}}, "thing")
    with pytest.raises(StoreLimitError, match="252"):
        check_entity({**base, **{f"P{i}": 1 for i in range(253)}}, "thing")


def test_oversized_run_is_refused_before_any_write(store: Store) -> None:
    huge = Run(
        export_id="e1",
        id="r1",
        trigger=Trigger.SCHEDULE,
        segments=[SegmentResult(segment=f"segment {n} " + "s" * 200) for n in range(3000)],
    )
    with pytest.raises(StoreLimitError, match="run 'r1'"):
        store.runs.create(huge)
    with pytest.raises(NotFoundError):
        store.runs.get("e1", "r1")
    # results over one property's 64 KiB but under 1 MiB are split over several properties
    big = dataclasses.replace(huge, segments=huge.segments[:600])
    created = store.runs.create(big)
    assert store.runs.get("e1", "r1").segments == big.segments
    assert created.segments == big.segments


def test_oversized_export_field_is_refused(store: Store) -> None:
    with pytest.raises(StoreLimitError, match="DisplayName"):
        store.exports.create(export("e1", display_name="d" * 40_000))
    assert store.exports.list() == []
