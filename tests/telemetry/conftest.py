"""In-memory OpenTelemetry for the telemetry tests: SDK providers that keep what they record."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # the distro uses this one
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    logs: InMemoryLogRecordExporter

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def all_text(self) -> str:
        """Every name, attribute key and value, log body and metric attribute, as one text."""
        parts: list[str] = []
        for span in self.spans.get_finished_spans():
            parts.append(span.name)
            parts.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
            for event in span.events:
                parts.append(event.name)
                parts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    parts.append(metric.name)
                    for point in metric.data.data_points:
                        parts.extend(f"{k}={v}" for k, v in point.attributes.items())
        for item in self.logs.get_finished_logs():
            record = item.log_record
            parts.append(str(record.body))
            parts.extend(f"{k}={v}" for k, v in (record.attributes or {}).items())
        return "\n".join(parts)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    shared_logger = logging.getLogger(telemetry.LOGGER_NAME)
    level = shared_logger.level
    shared_logger.addHandler(handler)
    shared_logger.setLevel(logging.INFO)
    telemetry.use(tracer_provider, meter_provider)
    try:
        yield Recorded(spans, reader, logs)
    finally:
        telemetry.reset()
        shared_logger.removeHandler(handler)
        shared_logger.setLevel(level)
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()
