"""Run ids and slice arithmetic (list names: tests/test_listname.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.runs.clock import new_run_id, run_id_created_at, utc_now_iso
from shared.runs.worker import busy_delay, slice_budget
from shared.settings import Settings


def settings(**env: str) -> Settings:
    return Settings.from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AUTH_MODE": "local-dev", **env}
    )


def test_run_ids_carry_their_creation_time_and_sort_by_it() -> None:
    early = datetime(2026, 11, 29, 2, 0, 0, 5000, tzinfo=UTC)
    late = datetime(2026, 11, 29, 2, 0, 1, 0, tzinfo=UTC)
    a, b = new_run_id(early), new_run_id(late)
    assert a < b
    assert run_id_created_at(a) == early
    assert run_id_created_at("not-a-run-id") is None


def test_timestamps_are_utc_with_z() -> None:
    stamp = utc_now_iso()
    assert stamp.endswith("Z") and "T" in stamp


def test_slice_budget_keeps_a_margin_and_busy_delay_is_bounded() -> None:
    assert slice_budget(settings()) == 450.0
    assert slice_budget(settings(RUN_SLICE_SECONDS="2")) == 1.8
    assert busy_delay(settings(LEASE_SECONDS="5")) == 1
    assert busy_delay(settings()) == 15
