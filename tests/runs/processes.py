"""Worker processes for the crash and recovery tests, and waiting on events (never on time)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.models import Run
from tests.support import REPO

WAIT_LIMIT = 180.0  # safety bound against hangs, not a timing assertion


class WorkerProcess:
    """One `python -m shared.runs.worker_main` with the test's settings in its environment."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared.runs.worker_main",
                "--visibility",
                "3",
                "--retry-delay",
                "1",
                *args,
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert "worker ready" in line, f"worker did not start; see {log}"

    @property
    def holder_prefix(self) -> str:
        return f"{socket.gethostname()}:{self.proc.pid}:"

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()


def wait_until(condition: Callable[[], bool], what: str, limit: float = WAIT_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def current(store: Any, run: Run) -> Run:
    got: Run = store.runs.get(run.export_id, run.id)
    return got


def list_fill(store: Any, emu: Any, export_id: str) -> int:
    """Members in the export's list right now (0 before the list exists)."""
    state = store.export_state.get(export_id)
    return sum(len(emu.state.list_members(s.list_id)) for s in state.values())
