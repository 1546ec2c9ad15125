"""`python -m emulator --port P --contacts N --inactive-fraction F [--time-scale S] [--seed K]`
[--cid-customers N --cid-segments Name:size,... --cid-no-contact-fraction F]

Prints ONE JSON line with the connection details when ready, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from emulator.cid import DEFAULT_CONTACT_COLUMN, CidConfig, parse_segments
from emulator.config import Costs, EmulatorConfig, Faults, Limits
from emulator.server import start_emulator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    p.add_argument("--port", type=int, default=0, help="loopback port (0 = any free port)")
    p.add_argument("--contacts", type=int, default=1000)
    p.add_argument("--inactive-fraction", type=float, default=0.05)
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dop-hint", type=int, default=8)
    p.add_argument("--client-secret", default=None, help="default: random per start")
    p.add_argument("--token-lifetime", type=int, default=3599, help="seconds")
    p.add_argument("--throttle", type=float, default=0.0, help="fault: fraction answered 429")
    p.add_argument("--unavailable", type=float, default=0.0, help="fault: fraction answered 503")
    p.add_argument("--drop", type=float, default=0.0, help="fault: fraction of dropped connections")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--cid-customers", type=int, default=0, help="CI-D unified profiles (0: none)")
    p.add_argument(
        "--cid-segments", default="", help="CI-D segments as Name:size,Name2:size (output names)"
    )
    p.add_argument(
        "--cid-no-contact-fraction", type=float, default=0.0, help="profiles without contact id"
    )
    p.add_argument("--cid-contact-column", default=DEFAULT_CONTACT_COLUMN)
    d_limits, d_costs = Limits(), Costs()
    p.add_argument("--requests-per-window", type=int, default=d_limits.requests_per_window)
    p.add_argument(
        "--execution-seconds-per-window", type=float, default=d_limits.execution_seconds_per_window
    )
    p.add_argument("--window-seconds", type=float, default=d_limits.window_seconds)
    p.add_argument("--concurrent-requests", type=int, default=d_limits.concurrent_requests)
    p.add_argument(
        "--violation-penalty-seconds", type=float, default=d_limits.violation_penalty_seconds
    )
    p.add_argument("--cost-base-ms", type=float, default=d_costs.base_ms)
    p.add_argument("--cost-per-member-ms", type=float, default=d_costs.per_member_ms)
    p.add_argument("--cost-per-row-read-ms", type=float, default=d_costs.per_row_read_ms)
    args = p.parse_args(argv)
    cfg = EmulatorConfig(
        contacts=args.contacts,
        inactive_fraction=args.inactive_fraction,
        seed=args.seed,
        time_scale=args.time_scale,
        client_secret=args.client_secret,
        token_lifetime_seconds=args.token_lifetime,
        dop_hint=args.dop_hint,
        faults=Faults(args.throttle, args.unavailable, args.drop, args.fault_seed),
        limits=Limits(
            requests_per_window=args.requests_per_window,
            execution_seconds_per_window=args.execution_seconds_per_window,
            window_seconds=args.window_seconds,
            concurrent_requests=args.concurrent_requests,
            violation_penalty_seconds=args.violation_penalty_seconds,
        ),
        costs=Costs(args.cost_base_ms, args.cost_per_member_ms, args.cost_per_row_read_ms),
        cid=CidConfig(
            customers=args.cid_customers,
            segments=parse_segments(args.cid_segments),
            no_contact_fraction=args.cid_no_contact_fraction,
            contact_column=args.cid_contact_column,
        ),
    )
    emu = start_emulator(cfg, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps(emu.connection_info()), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
