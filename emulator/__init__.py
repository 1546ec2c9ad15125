"""Local Dataverse Web API emulator (dev, tests, demo, benchmarks; never deployed).

See README.md.
"""

from emulator.config import Costs, EmulatorConfig, Faults, Limits
from emulator.server import RunningEmulator, start_emulator

__all__ = ["Costs", "EmulatorConfig", "Faults", "Limits", "RunningEmulator", "start_emulator"]
