"""Per-export schedules on Azurite: refresh / cron / off, exactly one run per due time however
many ticks and instances see it, skipped naming the active run, nothing before creation."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from shared.models import Audit, Export, RunStatus, Schedule, ScheduleKind, Trigger
from shared.runs import schedule, triggers
from shared.runs.requests import request_all
from shared.settings import Settings
from shared.store import open_store
from tests.runs.helpers import make_connection, make_export

DAY = datetime(2026, 12, 3, tzinfo=UTC)
CREATED = "2026-12-01T00:00:00.000Z"


def scheduled(store: Any, emu: Any, sched: Schedule, *, name: str = "E", **kw: Any) -> Export:
    export = make_export(store, make_connection(store, emu), ["S1"], name=name, **kw)
    changed = dataclasses.replace(export, schedule=sched, audit=Audit("t", CREATED, "t", CREATED))
    saved: Export = store.exports.update(changed, if_match=export.etag)
    return saved


def runs_of(store: Any, export: Export) -> list[Any]:
    runs, _ = store.runs.list(export.id)
    return list(runs)


def finish(store: Any, run: Any) -> None:
    current = store.runs.get(run.export_id, run.id)
    current.status = RunStatus.SUCCEEDED
    current.finished_at = "2026-12-03T00:00:00.000Z"
    store.runs.update(current)
    store.active_runs.release(run.export_id, run.id)


def test_due_time_rules() -> None:
    refresh = schedule.crontab("0 0 2 * * *")
    base = Export(
        id="e", display_name="E", connection_id="c", segments=["S"],
        audit=Audit("t", CREATED, "t", CREATED),
    )  # fmt: skip
    at_2 = DAY + timedelta(hours=2)
    assert schedule.due_time(base, refresh, at_2 + timedelta(seconds=30)) == at_2
    assert schedule.due_time(base, refresh, at_2 + timedelta(minutes=59)) == at_2  # late tick
    assert schedule.due_time(base, refresh, at_2 + timedelta(hours=2)) is None  # beyond catch-up
    off = dataclasses.replace(base, schedule=Schedule(ScheduleKind.OFF))
    assert schedule.due_time(off, refresh, at_2) is None
    disabled = dataclasses.replace(base, enabled=False)
    assert schedule.due_time(disabled, refresh, at_2) is None
    detached = dataclasses.replace(base, connection_id=None)
    assert schedule.due_time(detached, refresh, at_2) is None
    cron = dataclasses.replace(base, schedule=Schedule(ScheduleKind.CRON, "0 */15 * * * *"))
    assert schedule.due_time(cron, refresh, DAY + timedelta(hours=5, minutes=20)) == (
        DAY + timedelta(hours=5, minutes=15)
    )
    newer = dataclasses.replace(base, audit=Audit("t", "2026-12-03T02:00:01.000Z", "t", ""))
    assert schedule.due_time(newer, refresh, at_2 + timedelta(seconds=30)) is None  # saving
    assert schedule.next_due(cron, refresh, DAY) == DAY + timedelta(minutes=15)
    assert schedule.next_due(off, refresh, DAY) is None
    assert schedule.next_due(base, refresh, DAY) == at_2


def test_each_due_time_starts_exactly_one_run_across_instances(
    settings: Settings, store: Any, emu: Any
) -> None:
    export = scheduled(store, emu, Schedule(ScheduleKind.CRON, "0 */10 * * * *"))
    due = DAY + timedelta(hours=9, minutes=10)
    instances = [open_store(settings) for _ in range(4)]  # four hosts, four clients
    barrier = threading.Barrier(len(instances) * 2)
    results: list[list[Any]] = []
    errors: list[BaseException] = []

    def tick(instance: Any, seconds: int) -> None:
        barrier.wait()
        try:
            results.append(
                triggers.on_timer(
                    False, store=instance, settings=settings, now=due + timedelta(seconds=seconds)
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=tick, args=(instance, seconds))
        for instance in instances
        for seconds in (0, 40)  # the minute tick and a late refresh tick see the same due time
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for instance in instances:
        instance.close()
    assert not errors
    started = [run for result in results for run in result]
    assert len(started) == 1
    [run] = runs_of(store, export)
    assert run.status is RunStatus.QUEUED and run.trigger is Trigger.SCHEDULE
    assert run.id == started[0].id


def test_active_run_at_next_due_time_is_skipped_naming_it(
    settings: Settings, store: Any, emu: Any
) -> None:
    export = scheduled(store, emu, Schedule(ScheduleKind.CRON, "0 0 * * * *"))
    first_due = DAY + timedelta(hours=9)
    [first] = triggers.on_timer(False, store=store, settings=settings, now=first_due)
    [skipped] = triggers.on_timer(
        False, store=store, settings=settings, now=first_due + timedelta(hours=1, seconds=5)
    )
    assert skipped.status is RunStatus.SKIPPED and first.id in (skipped.reason or "")
    # the same due time seen again starts nothing more
    assert (
        triggers.on_timer(
            False, store=store, settings=settings, now=first_due + timedelta(hours=1, minutes=1)
        )
        == []
    )
    finish(store, first)
    [third] = triggers.on_timer(
        False, store=store, settings=settings, now=first_due + timedelta(hours=2)
    )
    assert third.status is RunStatus.QUEUED
    assert [r.status for r in runs_of(store, export)] == [
        RunStatus.QUEUED,
        RunStatus.SKIPPED,
        RunStatus.SUCCEEDED,
    ]


def test_refresh_cron_and_off_exports_each_follow_their_schedule(
    settings: Settings, store: Any, emu: Any
) -> None:
    follows = scheduled(store, emu, Schedule(), name="refresh")  # REFRESH_SCHEDULE 02:00
    own = scheduled(store, emu, Schedule(ScheduleKind.CRON, "0 30 6 * * *"), name="cron")
    off = scheduled(store, emu, Schedule(ScheduleKind.OFF), name="off")

    at_2 = triggers.on_timer(False, store=store, settings=settings, now=DAY + timedelta(hours=2))
    at_630 = triggers.on_timer(
        False, store=store, settings=settings, now=DAY + timedelta(hours=6, minutes=30, seconds=1)
    )
    assert [r.export_id for r in at_2] == [follows.id]
    assert [r.export_id for r in at_630] == [own.id]
    assert runs_of(store, off) == []
    # "run all" (POST /api/runs) runs exports with an active schedule, as Customer Insights does
    for run in (*at_2, *at_630):
        finish(store, run)
    all_now = request_all(store, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert sorted(r.export_id for r in all_now) == sorted([follows.id, own.id])


def test_a_past_due_tick_after_an_outage_starts_only_the_latest_due_time(
    settings: Settings, store: Any, emu: Any
) -> None:
    export = scheduled(store, emu, Schedule(ScheduleKind.CRON, "0 */10 * * * *"))
    [run] = triggers.on_timer(
        True, store=store, settings=settings, now=DAY + timedelta(hours=9, minutes=37)
    )
    assert [r.id for r in runs_of(store, export)] == [run.id]
    # down for three catch-up windows (many due times missed): one run, not a backlog
    finish(store, run)
    later = DAY + timedelta(hours=9, minutes=37) + schedule.CATCH_UP * 3
    assert len(triggers.on_timer(True, store=store, settings=settings, now=later)) == 1
    assert len(runs_of(store, export)) == 2


@pytest.fixture
def app_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {**env, "REFRESH_SCHEDULE": "* * * * * *"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(triggers, "_runtime", None)
    return env


def test_both_timer_functions_start_due_exports(
    app_env: dict[str, str], store: Any, emu: Any, function_app_functions: dict[str, Any]
) -> None:
    export = make_export(store, make_connection(store, emu), ["T1"])  # created now, refresh
    # REFRESH_SCHEDULE is every second here: whichever timer fires first starts the due time
    for name in ("scheduled_refresh", "schedule_tick"):
        function_app_functions[name].get_user_function()(TimerRequest(past_due=False))
    runs = runs_of(store, export)
    assert runs and runs[-1].status is RunStatus.QUEUED and runs[-1].trigger is Trigger.SCHEDULE
    assert all(r.status is RunStatus.SKIPPED for r in runs[:-1])
