"""Local development services for tests, the demo and the benchmarks: free loopback ports and
Azurite (in memory or on disk) from node_modules. Not deployed; imports nothing from the app."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account key (public, documented by Microsoft).
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


@dataclass
class Azurite:
    """A running Azurite (in-memory) on free loopback ports."""

    proc: subprocess.Popen[bytes]
    table_port: int
    queue_port: int
    blob_port: int

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={DEV_ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/devstoreaccount1;"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/devstoreaccount1;"
        )

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop an Azurite started by ``launch_azurite`` (its whole process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def azurite_command() -> list[str]:
    if AZURITE_BIN.exists():
        return [str(AZURITE_BIN)]
    found = shutil.which("azurite")
    if found:
        return [found]
    raise RuntimeError("Azurite is not installed: run `npm ci` in the repository (see README)")


def start_azurite(
    table_port: int | None = None,
    queue_port: int | None = None,
    blob_port: int | None = None,
    *,
    location: Path | None = None,
) -> Azurite:
    """Start Azurite in memory, or on disk under ``location`` so that a restart on the same
    ports loses nothing (Azurite refuses --inMemoryPersistence together with --location)."""
    tp, qp, bp = table_port or free_port(), queue_port or free_port(), blob_port or free_port()
    persistence = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    proc = launch_azurite(persistence, tp, qp, bp)
    return Azurite(proc=proc, table_port=tp, queue_port=qp, blob_port=bp)


def launch_azurite(
    extra_args: Sequence[str], table_port: int, queue_port: int, blob_port: int
) -> subprocess.Popen[bytes]:
    """Start Azurite on loopback with the given ports and extra arguments (persistence, OAuth,
    TLS) and return once all three ports answer; killed again if any does not."""
    proc = subprocess.Popen(
        [
            *azurite_command(),
            "--silent",
            *extra_args,
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table_port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue_port),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for port in (table_port, queue_port, blob_port):
            wait_for_port(port, proc)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc
