"""Test helpers for real local services: the launcher lives in devtools/ (scripts and bench use
it too); tests import it from here or from devtools directly."""

from devtools.azurite import (
    AZURITE_BIN,
    DEV_ACCOUNT_KEY,
    REPO,
    Azurite,
    azurite_command,
    free_port,
    start_azurite,
    wait_for_port,
)

__all__ = [
    "AZURITE_BIN",
    "DEV_ACCOUNT_KEY",
    "REPO",
    "Azurite",
    "azurite_command",
    "free_port",
    "start_azurite",
    "wait_for_port",
]
