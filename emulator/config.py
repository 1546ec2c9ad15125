"""Configuration of the Dataverse emulator: data size, identity, limits, modeled costs and faults.

All durations are *model* seconds (what the real service would take). ``time_scale`` maps model time
to wall time: a 300 s window with ``time_scale=0.01`` lasts 3 s of wall time. ``Retry-After`` must
be
whole seconds, so it is the true (scaled) wait rounded up and at least 1 (see README).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.cid import CidConfig


@dataclass
class Limits:
    """Dataverse service protection defaults per user per web server [S3]."""

    requests_per_window: int = 6000
    execution_seconds_per_window: float = 1200.0
    window_seconds: float = 300.0
    concurrent_requests: int = 52
    # Sending while throttled lengthens the wait (the service does this; amount not documented).
    violation_penalty_seconds: float = 5.0
    # Requests arriving this soon (WALL seconds, not scaled: it models network/client latency) after
    # a 429 was issued were already on their way: answered 429 but not counted as violations.
    in_flight_grace_wall_seconds: float = 0.5


@dataclass
class Costs:
    """Modeled server time per request, slept (scaled) and charged to the execution-time budget.

    base_ms: a small Dataverse request (auth, routing, one SQL round trip) typically takes
    10-50 ms server side; 20 ms is a middle value. per_member_ms: each list member added/removed
    is a
    row insert/delete in listmember plus plug-in pipeline work, ~2 ms. per_row_read_ms: reading a
    5,000-row page takes ~100 ms server side, so 0.02 ms a row.
    """

    base_ms: float = 20.0
    per_member_ms: float = 2.0
    per_row_read_ms: float = 0.02


@dataclass
class Faults:
    """Seeded fault injection on outer /api/data requests (not on the token endpoint)."""

    throttle: float = 0.0  # fraction answered 429 (0x80072322) with Retry-After
    unavailable: float = 0.0  # fraction answered 503
    drop: float = 0.0  # fraction whose connection is closed without a response
    seed: int = 0
    retry_after_seconds: int = 1  # Retry-After (wall seconds, integer) of injected 429s


@dataclass
class EmulatorConfig:
    contacts: int = 1000
    inactive_fraction: float = 0.05
    seed: int = 1
    time_scale: float = 1.0
    tenant_id: str | None = None  # default derived from seed
    client_id: str | None = None  # default derived from seed
    client_secret: str | None = None  # default: random per start (never hard-coded)
    extra_clients: dict[str, str] = field(default_factory=dict)  # more client_id -> secret pairs
    token_lifetime_seconds: int = 3599  # wall seconds; not scaled (clients compare with real time)
    dop_hint: int = 8
    max_page_size: int = 5000
    max_batch_parts: int = 1000
    max_url_length: int = 32768
    max_batch_inner_url_length: int = 65536
    max_body_bytes: int = 64 * 1024 * 1024
    # Members per AddListMembersList / RemoveListMembersList. Not documented by Microsoft; a
    # stricter stand-in caps a call at 1,000 (Microsoft's bulk guidance starts at ~1,000 too).
    max_members_per_call: int = 1000
    log_size: int = 100_000
    limits: Limits = field(default_factory=Limits)
    costs: Costs = field(default_factory=Costs)
    faults: Faults = field(default_factory=Faults)
    cid: CidConfig = field(default_factory=CidConfig)  # Customer Insights tables (none by default)

    def __post_init__(self) -> None:
        if self.contacts < 0 or self.contacts >= 2**62:
            raise ValueError("contacts must be in [0, 2**62)")
        if not 0.0 <= self.inactive_fraction <= 1.0:
            raise ValueError("inactive_fraction must be within [0, 1]")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
