"""Open a slice's Sales client on the identity's shared throttling budget (see shared_budget.py).

This is where the runs wire the store-backed gate into the client: ``shared.sales`` never imports
the store, it only sees a ``Gate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.models import Connection
from shared.settings import Settings
from shared.store.protocols import StoreApi


@contextmanager
def open_budgeted_client(
    store: StoreApi,
    settings: Settings,
    connection: Connection,
    *,
    label: str,
    deadline: float | None,
) -> Iterator[Any]:
    """A SalesClient whose requests spend the (environment, identity) budget shared by every
    worker, and whose waits never pass ``deadline`` (time.monotonic). Raises
    shared.runs.shared_budget.TurnNotYet when the identity is fully used by other slices."""
    from shared.runs.shared_budget import shared_gate
    from shared.sales.factory import expected_dop, identity_key, open_sales_client, process_gate

    with (
        shared_gate(
            store.budgets,
            identity_key(connection),
            process_gate(connection),
            label=label,
            capacity=expected_dop(connection, settings),
        ) as gate,
        open_sales_client(connection, settings, gate=gate, deadline=deadline) as client,
    ):
        yield client
