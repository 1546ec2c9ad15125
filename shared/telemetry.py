"""Telemetry: the one place that configures OpenTelemetry, and the app's few instruments.

One route (README "Telemetry"): set ``APPLICATIONINSIGHTS_CONNECTION_STRING`` (plus
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING=ClientId=<id>;Authorization=AAD`` when Application
Insights has local auth disabled) and ``configure()`` calls ``configure_azure_monitor()`` once
per process, collecting the ``shared`` loggers. Unset (the default, and locally): telemetry is
off and nothing from OpenTelemetry is even imported. Do not also set
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`` (the worker's own route); if it is set anyway,
this module leaves the worker's setup alone rather than configuring twice.

What is recorded (counts, kinds and ids of our own records only; never a secret, token, contact
ID or customer ID):
- spans: ``run.slice`` (export, run, slice) > ``run.segment`` (segment position) > one
  ``sales.request`` per HTTP attempt (method, kind, status, throttled, retry-after);
- metrics: ``segexp.members.added`` / ``.removed`` / ``.left_out`` (by reason),
  ``segexp.sales.requests`` and ``segexp.sales.throttled_seconds`` (per connection),
  ``segexp.run.duration`` (seconds, by outcome) and ``segexp.runs`` (by outcome);
- logs: every record logged while a run slice is handled carries ``segexp.export_id`` and
  ``segexp.run_id``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

LOGGER_NAME = "shared"  # the loggers whose records are exported
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
WORKER_ROUTE = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"


@dataclass(frozen=True, slots=True)
class _RunScope:
    export_id: str
    run_id: str
    connection_id: str | None = None


_scope: contextvars.ContextVar[_RunScope | None] = contextvars.ContextVar(
    "segexp_run", default=None
)
_lock = threading.Lock()
_configured = False
_instruments: _Instruments | None = None
_NULL = contextlib.nullcontext()


class _Instruments:
    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        self.tracer = tracer_provider.get_tracer("segexp")
        meter = meter_provider.get_meter("segexp")
        self.added = meter.create_counter("segexp.members.added", unit="{member}")
        self.removed = meter.create_counter("segexp.members.removed", unit="{member}")
        self.left_out = meter.create_counter("segexp.members.left_out", unit="{member}")
        self.requests = meter.create_counter("segexp.sales.requests", unit="{request}")
        self.throttled = meter.create_counter("segexp.sales.throttled_seconds", unit="s")
        self.duration = meter.create_histogram("segexp.run.duration", unit="s")
        self.runs = meter.create_counter("segexp.runs", unit="{run}")


# --- configuration --------------------------------------------------------------------------


def configure(environ: Mapping[str, str]) -> bool:
    """Configure once per process from the app settings; True when telemetry is on."""
    global _configured
    with _lock:
        if _configured:
            return _instruments is not None
        _configured = True
        connection_string = (environ.get(CONNECTION_STRING) or "").strip()
        if not connection_string:
            return False
        from opentelemetry import metrics, trace

        if (environ.get(WORKER_ROUTE) or "").strip().lower() != "true":
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(
                connection_string=connection_string,
                logger_name=LOGGER_NAME,
                # our own spans cover Sales; the Azure SDK spans (storage) are kept
                instrumentation_options={
                    "django": {"enabled": False},
                    "flask": {"enabled": False},
                    "psycopg2": {"enabled": False},
                },
            )
        else:
            log.info("telemetry configured by the Functions Python worker; not configured again")
        _install(trace.get_tracer_provider(), metrics.get_meter_provider())
    return True


def use(tracer_provider: Any, meter_provider: Any) -> None:
    """Record through these providers (tests: SDK providers with in-memory exporters)."""
    global _configured
    with _lock:
        _configured = True
        _install(tracer_provider, meter_provider)


def reset() -> None:
    """Turn telemetry off again (tests)."""
    global _configured, _instruments
    with _lock:
        _configured = False
        _instruments = None


def enabled() -> bool:
    return _instruments is not None


def _install(tracer_provider: Any, meter_provider: Any) -> None:
    global _instruments
    _instruments = _Instruments(tracer_provider, meter_provider)
    _install_record_factory()


_factory_installed = False


def _install_record_factory() -> None:
    """Every log record made while a run slice is handled carries its export and run ids."""
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scope = _scope.get()
        if scope is not None:
            setattr(record, "segexp.export_id", scope.export_id)
            setattr(record, "segexp.run_id", scope.run_id)
        return record

    logging.setLogRecordFactory(factory)


# --- hooks (each a no-op while telemetry is off) ---------------------------------------------


@contextlib.contextmanager
def run_slice(export_id: str, run_id: str, slice_number: int) -> Iterator[None]:
    """Scope of one run slice: the span, and the ids every log record gets."""
    token = _scope.set(_RunScope(export_id, run_id))
    try:
        instruments = _instruments
        if instruments is None:
            yield
            return
        attributes = {
            "segexp.export_id": export_id,
            "segexp.run_id": run_id,
            "segexp.slice": slice_number,
        }
        with instruments.tracer.start_as_current_span("run.slice", attributes=attributes):
            yield
    finally:
        _scope.reset(token)


def set_connection(connection_id: str) -> None:
    """The run slice's connection, for the per-connection request metrics."""
    scope = _scope.get()
    if scope is not None:
        _scope.set(_RunScope(scope.export_id, scope.run_id, connection_id))


def segment(index: int) -> contextlib.AbstractContextManager[Any]:
    instruments = _instruments
    if instruments is None:
        return _NULL
    return instruments.tracer.start_as_current_span(
        "run.segment", attributes={"segexp.segment_index": index}
    )


_PARENS = re.compile(r"\([^)]*\)")
_API_ROOT = re.compile(r"^.*?/api/data/v[0-9.]+/")


def request_kind(url: str) -> str:
    """What a Sales request is about, without any key: ``lists(<id>)/x?$filter=..`` -> ``lists``."""
    path = _API_ROOT.sub("", url.split("?", 1)[0]).lstrip("/")
    first = _PARENS.sub("", path.split("/", 1)[0])
    return first[:64] or "root"


def sales_request(
    method: str,
    url: str,
    *,
    status: int | None,
    seconds: float,
    throttled: bool = False,
    retry_after: float | None = None,
    error: str | None = None,
) -> None:
    """One HTTP attempt against Sales (called by shared/sales/client.py after each answer)."""
    instruments = _instruments
    if instruments is None:
        return
    kind = request_kind(url)
    scope = _scope.get()
    connection = (scope.connection_id if scope else None) or "unknown"
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "segexp.request_kind": kind,
        "segexp.throttled": throttled,
        "segexp.connection_id": connection,
    }
    if status is not None:
        attributes["http.response.status_code"] = status
    if retry_after is not None:
        attributes["segexp.retry_after_s"] = float(retry_after)
    if error is not None:
        attributes["error.type"] = error
    end = _now_ns()
    span = instruments.tracer.start_span(
        "sales.request", attributes=attributes, start_time=end - int(seconds * 1e9)
    )
    if error is not None or (status is not None and status >= 400 and not throttled):
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=end)
    instruments.requests.add(
        1,
        {
            "segexp.connection_id": connection,
            "segexp.request_kind": kind,
            "http.request.method": method,
            "segexp.throttled": throttled,
        },
    )
    if throttled and retry_after:
        instruments.throttled.add(float(retry_after), {"segexp.connection_id": connection})


def run_finished(run: Any) -> None:
    """Counts of a run that reached its final status (called once, when it is saved)."""
    instruments = _instruments
    if instruments is None:
        return
    outcome = {"segexp.outcome": str(run.status), "segexp.trigger": str(run.trigger)}
    instruments.runs.add(1, outcome)
    seconds = _seconds_between(run.started_at or run.queued_at, run.finished_at)
    if seconds is not None:
        instruments.duration.record(seconds, outcome)
    scope = {"segexp.dry_run": bool(run.dry_run)}
    added = sum(s.added for s in run.segments)
    removed = sum(s.removed for s in run.segments)
    if added:
        instruments.added.add(added, scope)
    if removed:
        instruments.removed.add(removed, scope)
    reasons: dict[str, int] = {}
    for result in run.segments:
        for reason, count in result.left_out.items():
            reasons[reason] = reasons.get(reason, 0) + count
    for reason, count in sorted(reasons.items()):
        if count:
            instruments.left_out.add(count, {**scope, "segexp.reason": reason})


def _now_ns() -> int:
    import time

    return time.time_ns()


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (b - a).total_seconds())
