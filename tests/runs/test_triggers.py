"""The timer and queue functions as the host would see them: bindings, config, direct calls."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from shared.models import RunStatus, Trigger
from shared.runs import triggers as run_triggers
from shared.runs.requests import request_run
from shared.settings import Settings
from shared.store import encode_message
from tests.runs.helpers import make_connection, make_export, seed_customers, seed_segment
from tests.support import REPO

NCRONTAB_6 = re.compile(r"^\S+( \S+){5}$")


def bindings(functions: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return json.loads(functions[name].get_function_json())["bindings"]


def test_timer_bindings(function_app_functions: dict[str, Any]) -> None:
    for name, setting, monitor in (
        ("scheduled_refresh", "%REFRESH_SCHEDULE%", True),
        ("schedule_tick", "%SCHEDULE_TICK%", False),  # every minute: the host's advice
    ):
        assert bindings(function_app_functions, name) == [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": setting,
                "runOnStartup": False,
                "useMonitor": monitor,
            }
        ]


def test_queue_bindings(function_app_functions: dict[str, Any]) -> None:
    for name, queue in (
        ("run_worker", "%RUN_QUEUE_NAME%"),
        ("run_poison", "%RUN_QUEUE_NAME%-poison"),
    ):
        assert bindings(function_app_functions, name) == [
            {
                "direction": "IN",
                "type": "queueTrigger",
                "name": "msg",
                "queueName": queue,
                "connection": "AzureWebJobsStorage",
            }
        ]


def _settings_names() -> set[str]:
    source = (REPO / "shared" / "settings.py").read_text()
    pattern = r'(?:env\.get|_str|_int|_float|_bool|_list)\(\s*(?:env,\s*)?"([A-Za-z_]\w*)"'
    return set(re.findall(pattern, source))


def test_example_settings_name_every_setting_and_a_valid_schedule() -> None:
    example = json.loads((REPO / "local.settings.example.json").read_text())
    values: dict[str, str] = example["Values"]
    names = _settings_names()
    assert {"REFRESH_SCHEDULE", "SCHEDULE_TICK", "RUN_QUEUE_NAME", "MAX_DEQUEUE_COUNT"} <= names
    platform = {"WEBSITE_INSTANCE_ID"}  # set by App Service itself, never by us
    assert names - platform <= set(values)
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["AzureWebJobsFeatureFlags"] == "EnableWorkerIndexing"
    assert all(isinstance(v, str) for v in values.values())
    for name, attr in (
        ("REFRESH_SCHEDULE", "refresh_schedule"),
        ("SCHEDULE_TICK", "schedule_tick"),
    ):
        assert NCRONTAB_6.match(values[name])
        assert values[name] == Settings.__dataclass_fields__[attr].default
    assert example["IsEncrypted"] is False


def test_host_json_agrees_with_the_run_settings() -> None:
    host = json.loads((REPO / "host.json").read_text())
    queues = host["extensions"]["queues"]
    defaults = Settings.__dataclass_fields__
    assert host["version"] == "2.0"
    assert queues["maxDequeueCount"] == defaults["max_dequeue_count"].default
    assert queues["messageEncoding"] == "base64"  # the store writes base64(JSON)
    assert 1 <= queues["batchSize"] <= 32
    hours, minutes, seconds = (int(p) for p in host["functionTimeout"].split(":"))
    # a slice must end (and save) well before the host kills the function
    assert hours * 3600 + minutes * 60 + seconds > defaults["run_slice_seconds"].default + 60


def test_importing_the_app_builds_no_client() -> None:
    code = (
        "import sys, function_app\n"
        "from shared.runs import triggers\n"
        "assert triggers._runtime is None\n"
        "print(','.join(m for m in ('msal', 'azure.storage.queue') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.fixture
def app_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The function bodies read settings from the environment, as in Azure."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(run_triggers, "_runtime", None)
    return env


def test_timer_queues_every_export_and_skips_an_active_one(
    app_env: dict[str, str], store: Any, emu: Any, settings: Settings
) -> None:
    connection = make_connection(store, emu)
    first = make_export(store, connection, ["T1"])
    second = make_export(store, connection, ["T2"])
    due = datetime(2026, 12, 3, 2, tzinfo=UTC)  # REFRESH_SCHEDULE's default 02:00

    run_triggers.on_timer(True, store=store, settings=settings, now=due)
    run_triggers.on_timer(False, store=store, settings=settings, now=due + timedelta(days=1))

    for export in (first, second):
        runs, _ = store.runs.list(export.id)
        assert [r.status for r in runs] == [RunStatus.SKIPPED, RunStatus.QUEUED]
        assert all(r.trigger is Trigger.SCHEDULE for r in runs)
        assert runs[1].id in (runs[0].reason or "")


def test_queue_function_runs_the_message_and_poison_function_closes_the_run(
    app_env: dict[str, str],
    store: Any,
    emu: Any,
    function_app_functions: dict[str, Any],
) -> None:
    members = [i for i in range(4000, 4040) if not emu.is_inactive(i)]
    seed_customers(store, emu, members)
    seed_segment(store, "Q1", members)
    export = make_export(store, make_connection(store, emu), ["Q1", "Q2"])
    seed_segment(store, "Q2", members[:5])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    [received] = store.queue.receive(max_messages=1, visibility_timeout=30)
    worker = function_app_functions["run_worker"].get_user_function()
    body = encode_message(received.message).encode()

    worker(QueueMessage(id=received.id, body=body, dequeue_count=1, pop_receipt="p"))

    done = store.runs.get(export.id, run.id)
    assert done.status is RunStatus.SUCCEEDED
    assert emu.state.list_members(done.segments[0].list_id) == {emu.contact_id(i) for i in members}

    stuck = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    poison = function_app_functions["run_poison"].get_user_function()
    poison(QueueMessage(id="p1", body=encode_message_for(stuck), dequeue_count=1))
    closed = store.runs.get(export.id, stuck.id)
    assert closed.status is RunStatus.FAILED and "given up" in (closed.error or "")
    assert store.active_runs.get(export.id) is None


def encode_message_for(run: Any) -> bytes:
    from shared.models import RunMessage

    return encode_message(RunMessage(export_id=run.export_id, run_id=run.id)).encode()
