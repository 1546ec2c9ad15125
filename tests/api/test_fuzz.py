"""Property-based fuzzing of every operation in /api/openapi.json (schemathesis over ASGI, no
network): no input may produce a 5xx, and every error is problem+json. Bounded and
deterministic (derandomized, few examples per operation); local-dev auth as Admin; real
Azurite tables seeded with a connection, two segments and an export.

Standalone against a running server: see README "HTTP API" (schemathesis CLI command)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from shared.api.app import create_api
from shared.settings import Settings
from tests.api.helpers import connection_body, export_body

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))  # deeper: set it higher


@pytest.fixture(scope="module")
def fuzz_schema(azurite: Any) -> Iterator[Any]:
    prefix = "fz" + uuid.uuid4().hex[:10]
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": prefix,
        "RUN_QUEUE_NAME": f"{prefix}-runs",
        "IMPORT_QUEUE_NAME": f"{prefix}-imports",
        "AUTH_MODE": "local-dev",
        "LOCAL_DEV_ROLES": "Admin",
        "MAX_UPLOAD_BYTES": "65536",
    }
    settings_ = Settings.from_env(env)
    api = create_api(lambda: settings_)
    with TestClient(api) as client:
        for name in ("High value", "Lapsed"):
            assert client.put(f"/api/segments/{name}", json=["C-1", "C-2"]).status_code == 201
        connection = client.post("/api/connections", json=connection_body()).json()
        assert client.post("/api/exports", json=export_body(connection["id"])).status_code == 201
    yield schemathesis.openapi.from_asgi("/api/openapi.json", api)


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def check(case: Any) -> None:
    response = case.call()
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        kind = response.headers.get("content-type", "")
        kind = kind[0] if isinstance(kind, list) else kind
        assert kind.startswith("application/problem+json"), f"{where} -> not problem+json"


def test_no_input_makes_a_server_error(fuzz_schema: Any) -> None:
    # One hypothesis run per operation (schemathesis' pytest plugin relies on pytest
    # internals that pytest 9 removed, so operations are iterated here).
    failures: list[str] = []
    operations = 0
    for result in fuzz_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                check(case)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no inputs)
            except AssertionError as failure:
                failures.append(f"{operation.label} ({mode.value}): {failure}")
    assert operations >= 20  # every route in the contract is in the schema
    assert not failures, "\n".join(failures)
