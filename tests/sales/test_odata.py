from __future__ import annotations

import pytest

from shared.sales.odata import (
    API_PATH,
    CONTACTS_IN_PREFIX,
    MAX_BATCH_GET_URL,
    MAX_GET_URL,
    chunk_ids_by_url,
    contacts_in_url,
    normalize_guid,
    odata_filter,
    relative_url,
)
from tests.sales.fakes import guid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("6F9619FF-8B86-D011-B42D-00C04FC964FF", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        ("{6f9619ff-8b86-d011-b42d-00c04fc964ff}", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        ("  6f9619ff-8b86-d011-b42d-00c04fc964ff ", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        ("6f9619ff8b86d011b42d00c04fc964ff", None),
        ("6f9619ff-8b86-d011-b42d-00c04fc964f", None),
        ("not-a-guid", None),
        ("", None),
        (42, None),
        (None, None),
    ],
)
def test_normalize_guid(raw: object, expected: str | None) -> None:
    assert normalize_guid(raw) == expected


def test_filter_escapes_quotes_and_types() -> None:
    assert odata_filter("listname eq @n", n="O'Brien's") == "listname eq 'O''Brien''s'"
    assert odata_filter("a eq @x and b eq @y", x=3, y=True) == "a eq 3 and b eq true"
    with pytest.raises(KeyError):
        odata_filter("listname eq @missing", n="x")


def test_relative_url_keeps_odata_punctuation_and_encodes_the_rest() -> None:
    url = relative_url("lists", {"$filter": odata_filter("listname eq @n", n="a&b #1")})
    assert url == "lists?$filter=listname%20eq%20'a%26b%20%231'"


@pytest.mark.parametrize(("max_url", "max_ids"), [(MAX_GET_URL, 5000), (MAX_BATCH_GET_URL, 1000)])
def test_id_chunks_keep_every_url_under_the_limit(max_url: int, max_ids: int) -> None:
    ids = [guid(i) for i in range(3000)]
    chunks = list(
        chunk_ids_by_url(
            ids, url_prefix_length=CONTACTS_IN_PREFIX, max_url=max_url, max_ids=max_ids
        )
    )
    assert [i for c in chunks for i in c] == ids
    for chunk in chunks:
        full = API_PATH + contacts_in_url(chunk)
        assert len(full) <= max_url
        assert len(chunk) <= max_ids
    # chunks are as large as the limit allows, so few requests are spent
    assert len(chunks[0]) == min(max_ids, (max_url - CONTACTS_IN_PREFIX) // 39)
