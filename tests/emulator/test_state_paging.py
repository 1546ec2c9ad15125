"""Member pages stay in contactid order while members are added and removed between pages."""

import random

from emulator import data
from emulator.state import State


def all_pages(state: State, list_id: str, size: int) -> list[str]:
    out: list[str] = []
    after = None
    while True:
        page, more = state.members_page(list_id, after, size)
        out.extend(page)
        if not more:
            return out
        after = page[-1]


def test_pages_match_the_set_after_interleaved_changes() -> None:
    rng = random.Random(5)
    state = State(contacts=3000, inactive_fraction=0.0, seed=2, owner_id=data.contact_id(0, 9))
    list_id = state.create_list({"listname": "p", "createdfromcode": 2, "type": False})
    model: set[str] = set()
    for _ in range(40):
        ids = [data.contact_id(rng.randrange(3000), 2) for _ in range(rng.choice([3, 100, 500]))]
        if rng.random() < 0.6:
            state.add_members(list_id, ids)
            model.update(ids)
        else:
            state.remove_members(list_id, ids)
            model.difference_update(ids)
        state.members_page(list_id, None, 7)  # builds the sorted cache between changes
        assert all_pages(state, list_id, 250) == sorted(model)
