"""Segments: packed members, replace without half states, validation, delete."""

from __future__ import annotations

import threading

import pytest

from shared.errors import NotFoundError
from shared.store import Store
from shared.store.segments import pack_members


def ids(count: int, prefix: str) -> list[str]:
    return [f"{prefix}-{n:08d}-0000-4000-8000-000000000000" for n in range(count)]


def test_pack_members_fills_properties_and_chunks() -> None:
    members = ids(40_000, "c")  # 52 chars + newline each
    chunks = pack_members(members)
    assert 1 < len(chunks) < 10
    flat = [m for chunk in chunks for prop in chunk for m in prop.split("\n")]
    assert flat == members
    assert all(len(prop) <= 32_000 for chunk in chunks for prop in chunk)
    assert pack_members([]) == []


def test_put_members_get_list_delete(store: Store) -> None:
    info = store.segments.put("High value", ["a", "b", "a", "c", "b"])
    assert (info.members, info.duplicates) == (3, 2)
    assert sorted(store.segments.members("High value")) == ["a", "b", "c"]
    got = store.segments.get("High value")
    assert (got.name, got.members, got.duplicates, got.version) == (
        "High value",
        3,
        2,
        info.version,
    )
    store.segments.put("Empty", [])
    assert store.segments.members("Empty") == []
    assert sorted(s.name for s in store.segments.list()) == ["Empty", "High value"]

    replaced = store.segments.put("High value", ["z"])
    assert replaced.version != info.version
    assert store.segments.members("High value") == ["z"]
    store.segments.delete("High value")
    store.segments.delete("High value")
    with pytest.raises(NotFoundError):
        store.segments.members("High value")
    with pytest.raises(NotFoundError):
        store.segments.get("High value")
    assert [s.name for s in store.segments.list()] == ["Empty"]


def test_nasty_segment_names_and_member_ids(store: Store) -> None:
    name = "a/b#c?d\\e ✓ 100%"
    members = ["x/y", "ü#1", "🎯?", "with space", "a" * 256]
    store.segments.put(name, members)
    assert sorted(store.segments.members(name)) == sorted(members)
    assert [s.name for s in store.segments.list()] == [name]


@pytest.mark.parametrize("bad", [[""], ["ok", "bad\nline"], ["x" * 257], ["tab\t"], [7]], ids=str)
def test_invalid_member_ids_are_refused_and_nothing_changes(store: Store, bad: list) -> None:
    store.segments.put("S", ["keep"])
    with pytest.raises(ValueError, match="member"):
        store.segments.put("S", bad)
    assert store.segments.members("S") == ["keep"]


def test_invalid_segment_name_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="segment name"):
        store.segments.put("bad\x00", ["a"])
    with pytest.raises(NotFoundError):
        store.segments.members("bad\x00")


def test_large_segment_round_trip(store: Store) -> None:
    members = ids(60_000, "big")
    info = store.segments.put("Big", members)
    assert info.members == 60_000
    assert sorted(store.segments.members("Big")) == members


def test_readers_see_the_old_or_the_new_set_never_a_mix(store: Store) -> None:
    old, new = ids(30_000, "old"), ids(25_000, "new")  # several chunk entities each
    store.segments.put("S", old)
    expected = {frozenset(old), frozenset(new)}
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            got = store.segments.members("S")
            seen.append(len(got))
            if frozenset(got) not in expected or len(got) != len(set(got)):
                problems.append(f"mixed read of {len(got)} members")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for n in range(4):
            store.segments.put("S", new if n % 2 == 0 else old)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []
    assert seen  # the readers did read while the writer replaced the set
    assert sorted(store.segments.members("S")) == old


def test_old_versions_are_cleaned_up(store: Store) -> None:
    store.segments.put("S", ids(5, "a"))
    first = store.segments.get("S").version
    store.segments.put("S", ids(5, "b"))
    chunks = store.tables.client("segmentchunks")
    left = list(
        chunks.query_entities("PartitionKey eq @pk", parameters={"pk": first}, select=["RowKey"])
    )
    assert left == []
