"""Configuration problems, computed once per process at start, logged, and reported by health.

One mechanism for every "this app cannot work as configured" finding: a missing setting the
Functions host needs, and anything ``Settings.from_env`` refuses (e.g. local-dev in Azure).
Problems name the setting; values are never repeated (they may be secrets).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ConfigurationError
from shared.settings import (
    AZURE_HOST_MARKERS,
    CONNECTION_SETTINGS,
    HOST_SETTINGS,
    SETTING_NAMES,
    Settings,
)
from shared.storage import HOST_STORAGE_SETTING, read_connection

log = logging.getLogger("shared.config")

# Markers of a process started by the Functions host (locally with `func start`, or in Azure).
# Without the host (uvicorn, the local queue runner) no trigger resolves %SETTING%, so the
# Python defaults are what runs and a missing host setting is not a problem.
_HOST_MARKERS = ("FUNCTIONS_WORKER_RUNTIME", *AZURE_HOST_MARKERS)
_KNOWN = sorted((*SETTING_NAMES, *CONNECTION_SETTINGS), key=len, reverse=True)
_NAMED = re.compile(r"\b(" + "|".join(map(re.escape, _KNOWN)) + r")(__\w+)?\b")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    setting: str  # the app setting to fix ("settings" when none could be named)
    message: str  # for the log: what is wrong and how to fix it (never a value)


def under_functions_host(env: Mapping[str, str]) -> bool:
    return any((env.get(name) or "").strip() for name in _HOST_MARKERS)


def configuration_problems(env: Mapping[str, str]) -> tuple[ConfigProblem, ...]:
    """Every configuration problem of `env` (pure; no I/O)."""
    problems: list[ConfigProblem] = []
    if under_functions_host(env):
        for name in HOST_SETTINGS:
            if not (env.get(name) or "").strip():
                problems.append(
                    ConfigProblem(
                        name,
                        f"app setting {name} is missing: the Functions host resolves %{name}% in "
                        "a trigger from app settings only (the Python default never reaches it),"
                        " so that function cannot run",
                    )
                )
    try:
        missing = read_connection(env, HOST_STORAGE_SETTING) is None
    except ConfigurationError:
        missing = False  # present but invalid: from_env below names what is wrong
    if missing:
        problems.append(
            ConfigProblem(
                HOST_STORAGE_SETTING,
                f"app setting {HOST_STORAGE_SETTING} (or {HOST_STORAGE_SETTING}__accountName / "
                "__queueServiceUri) is missing: the host, the timer and the run queue trigger "
                "need it",
            )
        )
    try:
        Settings.from_env(env)
    except ConfigurationError as error:
        message = str(error)
        named = _NAMED.search(message)
        setting = named.group(0) if named else "settings"
        if not any(p.setting == setting for p in problems):
            problems.append(ConfigProblem(setting, message))
    return tuple(problems)


@functools.cache
def startup_problems() -> tuple[ConfigProblem, ...]:
    """This process's configuration problems (from the environment), each logged as an error
    naming its setting the first time it is asked (at import of function_app)."""
    problems = configuration_problems(os.environ)
    for problem in problems:
        log.error("configuration problem (%s): %s", problem.setting, problem.message)
    return problems
