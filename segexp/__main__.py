"""Operator command line for Segment Export for Dynamics 365 Sales (talks to the HTTP API).

    python -m segexp [--api URL] [--token TOKEN] COMMAND ...

The API address defaults to $SEGEXP_API or http://127.0.0.1:7071 (`func start`); the bearer token
to $SEGEXP_TOKEN (an Entra ID access token for the API; not needed in local-dev mode).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from segexp.client import FINAL_STATUSES, ApiClient, ApiError
from segexp.render import progress_line, run_summary, runs_table


def follow(
    api: ApiClient, export_id: str, run_id: str, *, interval: float = 1.0, out: Any = sys.stdout
) -> dict[str, Any]:
    """Poll a run until it is final, printing a progress line whenever it changes."""
    last = ""
    while True:
        run = api.run(export_id, run_id)
        line = progress_line(run)
        if line != last:
            print(f"  {line}", file=out, flush=True)
            last = line
        if run["status"] in FINAL_STATUSES:
            return run
        time.sleep(interval)


IMPORT_FINAL = {"succeeded", "failed"}


def follow_import(
    api: ApiClient, import_id: str, *, interval: float = 1.0, out: Any = None
) -> dict[str, Any]:
    """Poll a background customer import until it is final, printing its progress."""
    out = out or sys.stdout
    last = ""
    while True:
        record = api.customer_import(import_id)
        line = f"{record['state']}: {record['rowsWritten']:,} of {record['rows']:,} rows written"
        if line != last:
            print(f"  {line}", file=out, flush=True)
            last = line
        if record["state"] in IMPORT_FINAL:
            return record
        time.sleep(interval)


def import_customers(api: ApiClient, file: Path, *, background: bool, merge: bool) -> int:
    """Small files are written inside the request; a file past the synchronous route's row
    limit (413 too-many-rows), or any file with --background, goes through the background
    import, whose progress is followed until it ends."""
    if not background and not merge:
        try:
            print(json.dumps(api.upsert_customers(file), indent=2))
            return 0
        except ApiError as exc:
            if exc.status != 413 or not str(exc.problem.get("type", "")).endswith("too-many-rows"):
                raise
            print(f"{exc.problem.get('rows', 'too many'):,} rows: importing in the background")
    record = api.start_customer_import(file, merge=merge)
    print(f"queued customer import {record['id']}")
    record = follow_import(api, record["id"])
    if record.get("error"):
        print(f"  {record['error']}")
    return 0 if record["state"] == "succeeded" else 1


def _cmd(args: argparse.Namespace, api: ApiClient) -> int:
    if args.command == "import-segment":
        print(json.dumps(api.put_segment(args.name, Path(args.file)), indent=2))
    elif args.command == "import-customers":
        return import_customers(api, Path(args.file), background=args.background, merge=args.merge)
    elif args.command == "customer-imports":
        for r in api.customer_imports(limit=args.limit):
            print(
                f"{r['id']}  {r['state']:<9} {r['rowsWritten']:>9,} / {r['rows']:<9,} rows  "
                f"{r['createdAt'][:19]}  {r['createdBy']}  {r.get('error') or ''}"
            )
    elif args.command == "segments":
        for seg in api.segments():
            print(
                f"{seg['name']:40} {seg['members']:>9,} members  updated {seg.get('updatedAt', '')}"
            )
    elif args.command == "connections":
        for c in api.connections():
            print(f"{c['id']}  {c['displayName']}  ({c['type']})  {c.get('serverAddress', '')}")
    elif args.command == "test-connection":
        result = api.test_connection(args.connection_id)
        for check in result["checks"]:
            print(f"  [{'ok' if check['ok'] else 'FAIL'}] {check['name']}: {check['detail']}")
        return 0 if result["ok"] else 1
    elif args.command == "exports":
        for e in api.exports():
            state = "detached" if e["detached"] else ("enabled" if e["enabled"] else "disabled")
            print(
                f"{e['id']}  {e['displayName']}  [{e['mode']}, {state}]  segments: "
                f"{', '.join(e['segments'])}"
            )
    elif args.command == "run":
        run = api.start_run(args.export_id, dry_run=args.dry_run)
        print(f"queued run {run['id']}")
        if args.follow:
            run = follow(api, args.export_id, run["id"])
            print(run_summary(run))
            return 0 if run["status"] in ("succeeded", "partially-succeeded") else 1
    elif args.command == "run-all":
        for run in api.run_all():
            print(f"{run['exportId']}  run {run['id']}  {run['status']}  {run.get('reason') or ''}")
    elif args.command == "runs":
        print(runs_table(api.runs(args.export_id, limit=args.limit)))
    elif args.command == "show-run":
        print(run_summary(api.run(args.export_id, args.run_id)))
    elif args.command == "cancel":
        print(run_summary(api.cancel_run(args.export_id, args.run_id)))
    elif args.command == "rejections":
        if args.csv:
            sys.stdout.write(api.rejections_csv(args.export_id, args.run_id))
        else:
            for r in api.rejections(args.export_id, args.run_id):
                print(
                    f"{r['segment']}\t{r['customerId']}\t{r['reason']}\t{r.get('contactId') or ''}"
                    f"\t{r.get('detail') or ''}"
                )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m segexp",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--api", default=os.environ.get("SEGEXP_API", "http://127.0.0.1:7071"))
    p.add_argument("--token", default=os.environ.get("SEGEXP_TOKEN"))
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("import-segment", help="replace a segment's members from a CSV or JSON file")
    s.add_argument("name")
    s.add_argument("file")
    s = sub.add_parser(
        "import-customers",
        help="upsert unified customer rows from CSV or JSON (large files: in the background)",
    )
    s.add_argument("file")
    s.add_argument("--background", action="store_true", help="always use the background import")
    s.add_argument("--merge", action="store_true", help="keep stored columns a row does not name")
    s = sub.add_parser("customer-imports", help="recent background customer imports")
    s.add_argument("--limit", type=int, default=20)
    sub.add_parser("segments", help="list segments")
    sub.add_parser("connections", help="list connections")
    s = sub.add_parser("test-connection", help="probe a connection (token, WhoAmI, reads)")
    s.add_argument("connection_id")
    sub.add_parser("exports", help="list exports")
    s = sub.add_parser("run", help="run an export now")
    s.add_argument("export_id")
    s.add_argument("--dry-run", action="store_true", help="plan only; write nothing to Sales")
    s.add_argument("--follow", action="store_true", help="show progress until the run ends")
    sub.add_parser("run-all", help="run every enabled export now (Admin)")
    s = sub.add_parser("runs", help="run history of an export, newest first")
    s.add_argument("export_id")
    s.add_argument("--limit", type=int, default=20)
    s = sub.add_parser("show-run", help="one run with per-segment results")
    s.add_argument("export_id")
    s.add_argument("run_id")
    s = sub.add_parser("cancel", help="cancel a run at its next slice boundary")
    s.add_argument("export_id")
    s.add_argument("run_id")
    s = sub.add_parser("rejections", help="members left out of a run, with reasons")
    s.add_argument("export_id")
    s.add_argument("run_id")
    s.add_argument("--csv", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with ApiClient(args.api, token=args.token) as api:
            return _cmd(args, api)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
