"""One benchmark case in a fresh process, so its peak RSS is its own.

    python -m bench.case --emulator '<json>' --size N --phase initial|refresh|churn|naive
                         [--list-id ID]

prints one JSON line: wall seconds, peak RSS, the sync result counts and the list id.

The segment for size N is customers C0..C(N-1), customer Ci holding contact i of the emulator
(emulator.data.contact_id). "churn" drops the first 2.5 % of members and adds as many new ones
(5 % of the list changes). The customer table is an in-memory dict: this measures the Sales side,
not Table Storage (bench/store_import.py measures that).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Mapping, Sequence

from emulator import data
from shared.models import Connection, Credential, CredentialKind, ExportMode
from shared.sales import SegmentSyncRequest, open_sales_client, sync_segment
from shared.settings import Settings

CONTACT_FIELD = "ContactId"
SECRET_SETTING = "SEGEXP_SECRET_BENCH"


def segment_range(size: int, phase: str) -> range:
    shift = int(size * 0.025) if phase == "churn" else 0
    return range(shift, size + shift)


def _settings(info: Mapping[str, str], max_parallel: int) -> Settings:
    return Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",  # unused here
            "AUTH_MODE": "local-dev",
            "ALLOW_LOOPBACK_SALES": "true",
            "ENTRA_AUTHORITY_HOST": info["authority_host"],
            "SALES_CA_BUNDLE": info["ca_file"],
            "SALES_MAX_PARALLEL": str(max_parallel),
            SECRET_SETTING: info["client_secret"],
        }
    )


def _connection(info: Mapping[str, str]) -> Connection:
    return Connection(
        id="bench",
        display_name="bench",
        server_address=info["base_url"],
        credential=Credential(
            kind=CredentialKind.CLIENT_SECRET,
            tenant_id=info["tenant_id"],
            client_id=info["client_id"],
            secret_setting=SECRET_SETTING,
        ),
        contact_id_field=CONTACT_FIELD,
    )


class IndexLookup:
    """Customer rows computed from the customer number: no per-customer dict for 1M members."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, ids: Sequence[str]) -> dict[str, Mapping[str, object]]:
        return {cid: {CONTACT_FIELD: data.contact_id(int(cid[1:]), self.seed)} for cid in ids}


def run_sync(
    info: Mapping[str, str],
    size: int,
    phase: str,
    list_id: str | None,
    seed: int,
    max_parallel: int,
) -> dict[str, object]:
    settings = _settings(info, max_parallel)
    members = [f"C{i}" for i in segment_range(size, phase)]
    request = SegmentSyncRequest(
        segment=f"bench-{size}",
        customer_ids=members,
        lookup_customers=IndexLookup(seed),
        contact_id_field=CONTACT_FIELD,
        list_name=f"Benchmark {size}",
        mode=ExportMode.MIRROR,
        owner=f"bench-{size}",
        list_id=list_id,
        chunk_size=settings.sales_chunk_size,
    )
    started = time.perf_counter()
    with open_sales_client(_connection(info), settings) as client:
        outcome = sync_segment(client, request)
        sent = client.requests_sent
    wall = time.perf_counter() - started
    r = outcome.result
    return {
        "wall_seconds": wall,
        "client_requests": sent,
        "list_id": r.list_id,
        "members": r.members,
        "matched": r.matched,
        "added": r.added,
        "removed": r.removed,
        "failed": r.failed,
        "left_out": r.left_out,
        "complete": r.complete,
        "error": r.error,
    }


def run_naive(info: Mapping[str, str], size: int, seed: int) -> dict[str, object]:
    """What a per-record flow does: one bound AddMemberList call per member, one at a time."""
    settings = _settings(info, 1)
    started = time.perf_counter()
    with open_sales_client(_connection(info), settings) as client:
        created = client.send(
            "POST",
            "lists",
            json_body={"listname": f"Naive {size}", "createdfromcode": 2, "type": False},
            headers={"Prefer": "return=representation"},
        ).json()
        list_id = created["listid"]
        added = failed = 0
        for i in range(size):
            if data.is_inactive(i, seed, float(info.get("inactive_fraction", 0.05))):
                continue  # a per-record flow would still look each contact up; we skip that cost
            try:
                client.send(
                    "POST",
                    f"lists({list_id})/Microsoft.Dynamics.CRM.AddMemberList",
                    json_body={"EntityId": data.contact_id(i, seed)},
                )
                added += 1
            except Exception:  # the baseline only counts failures
                failed += 1
        sent = client.requests_sent
    return {
        "wall_seconds": time.perf_counter() - started,
        "client_requests": sent,
        "list_id": list_id,
        "members": size,
        "added": added,
        "failed": failed,
        "complete": True,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.case")
    p.add_argument("--emulator", required=True, help="the emulator's JSON connection line")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--phase", choices=["initial", "refresh", "churn", "naive"], required=True)
    p.add_argument("--list-id", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-parallel", type=int, default=8)
    args = p.parse_args(argv)
    info = json.loads(args.emulator)
    if args.phase == "naive":
        out = run_naive(info, args.size, args.seed)
    else:
        out = run_sync(info, args.size, args.phase, args.list_id, args.seed, args.max_parallel)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
