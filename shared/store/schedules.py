"""Due-time claims: the one guard that turns each scheduled due time into at most one run.

``schedclaims``: PartitionKey = export id, RowKey = due time ``YYYYMMDDTHHMMSSZ``. A claim is an
insert (create_entity), which Table Storage refuses with 409 when the row exists, so however
many timer ticks or instances see the same due time, exactly one insert succeeds.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from shared.errors import ConflictError, StoreError
from shared.store._boundary import translated
from shared.store.keys import encode_key
from shared.store.limits import check_entity
from shared.store.tables import Tables, submit

log = logging.getLogger(__name__)

SCHEDULE_CLAIMS = "schedclaims"
_DUE_FORMAT = "%Y%m%dT%H%M%SZ"
# Claims older than this are deleted by later claims of the same export (they can never be
# claimed again: a tick only looks back a bounded catch-up window, far shorter than this).
KEEP_CLAIMS = timedelta(days=2)


def due_key(due: datetime) -> str:
    return due.astimezone(UTC).strftime(_DUE_FORMAT)


class ScheduleClaimRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def claim(self, export_id: str, due: datetime, claimed_by: str) -> bool:
        """True if this call claimed the due time; False if someone else already had."""
        pk = encode_key(export_id, "export id")
        entity = {
            "PartitionKey": pk,
            "RowKey": due_key(due),
            "ExportId": export_id,
            "ClaimedBy": claimed_by,
        }
        check_entity(entity, f"schedule claim of export {export_id!r}")
        client = self._tables.client(SCHEDULE_CLAIMS)
        try:
            with translated(f"claim due time of export {export_id!r}"):
                client.create_entity(entity)
        except ConflictError:
            return False
        try:
            self._forget_before(pk, due - KEEP_CLAIMS)
        except StoreError:  # housekeeping only (another tick may be deleting the same rows)
            log.warning("could not delete old schedule claims of export %s", export_id)
        return True

    def set_run(self, export_id: str, due: datetime, run_id: str) -> None:
        """Note which run the claimed due time started (for operators reading the table)."""
        entity = {
            "PartitionKey": encode_key(export_id, "export id"),
            "RowKey": due_key(due),
            "ExportId": export_id,
            "RunId": run_id,
        }
        with translated(f"note run of due time of export {export_id!r}"):
            self._tables.client(SCHEDULE_CLAIMS).upsert_entity(entity)

    def _forget_before(self, pk: str, before: datetime) -> None:
        client = self._tables.client(SCHEDULE_CLAIMS)
        with translated("list old schedule claims"):
            keys = [
                e["RowKey"]
                for e in client.query_entities(
                    "PartitionKey eq @pk and RowKey lt @before",
                    parameters={"pk": pk, "before": due_key(before)},
                    select=["RowKey"],
                )
            ]
        if keys:
            ops = [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in keys]
            submit(client, ops, "delete old schedule claims")
