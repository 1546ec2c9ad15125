"""Composition root of the Functions app: the HTTP API (FastAPI behind AsgiFunctionApp).

Nothing heavy happens at import: settings, the store and identity are resolved on the first
request; only settings that must never run (local-dev inside Azure) are refused here, at start.
Serve locally without the Functions host: ``uvicorn function_app:api``.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.app import create_api
from shared.config_check import startup_problems
from shared.runs import triggers as run_triggers  # light: builds no client at import
from shared.settings import check_start
from shared.storage import HOST_STORAGE_SETTING

check_start()  # refuses to start at all on settings that must never run (local-dev in Azure)
startup_problems()  # checked once at start: each problem is logged as an error naming its setting
api = create_api()
app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.ANONYMOUS)

# --- runs: scheduled refresh, the run-queue worker and its poison queue (bodies: shared/runs) ---


@app.function_name(name="scheduled_refresh")
@app.timer_trigger(
    schedule="%REFRESH_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def scheduled_refresh(timer: func.TimerRequest) -> None:
    run_triggers.on_timer(timer.past_due)


# Exports with their own NCRONTAB schedule: a frequent tick (every minute by default) runs the
# same body; each due time is claimed in the store, so both timers never start one twice.
@app.function_name(name="schedule_tick")
@app.timer_trigger(
    schedule="%SCHEDULE_TICK%", arg_name="timer", run_on_startup=False, use_monitor=False
)
def schedule_tick(timer: func.TimerRequest) -> None:
    run_triggers.on_timer(timer.past_due)


@app.function_name(name="run_worker")
@app.queue_trigger(arg_name="msg", queue_name="%RUN_QUEUE_NAME%", connection=HOST_STORAGE_SETTING)
def run_worker(msg: func.QueueMessage) -> None:
    run_triggers.on_run_message(msg.get_body(), msg.dequeue_count or 1)


@app.function_name(name="run_poison")
@app.queue_trigger(
    arg_name="msg", queue_name="%RUN_QUEUE_NAME%-poison", connection=HOST_STORAGE_SETTING
)
def run_poison(msg: func.QueueMessage) -> None:
    run_triggers.on_poison_message(msg.get_body())


# --- background customer imports (POST /api/customer-imports; bodies: shared/imports) ---------


@app.function_name(name="customer_import")
@app.queue_trigger(
    arg_name="msg", queue_name="%IMPORT_QUEUE_NAME%", connection=HOST_STORAGE_SETTING
)
def customer_import(msg: func.QueueMessage) -> None:
    from shared.imports.triggers import on_import_message

    on_import_message(msg.get_body(), msg.dequeue_count or 1)


@app.function_name(name="customer_import_poison")
@app.queue_trigger(
    arg_name="msg", queue_name="%IMPORT_QUEUE_NAME%-poison", connection=HOST_STORAGE_SETTING
)
def customer_import_poison(msg: func.QueueMessage) -> None:
    from shared.imports.triggers import on_import_poison

    on_import_poison(msg.get_body())
