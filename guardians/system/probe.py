"""Where CPU usage and load come from: an injectable probe (psutil by default)."""

from __future__ import annotations

import os
from typing import Protocol


class SystemProbe(Protocol):
    def cpu_usage(self) -> float:
        """CPU usage of the machine in [0, 1]."""
        ...

    def load1(self) -> float:
        """One-minute load average."""
        ...


class PsutilProbe:
    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        psutil.cpu_percent(interval=None)  # prime the counter

    def cpu_usage(self) -> float:
        return self._psutil.cpu_percent(interval=None) / 100.0

    def load1(self) -> float:
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


class FixedProbe:
    """A probe reporting what it is told (tests)."""

    def __init__(self, cpu: float = 0.0, load: float = 0.0) -> None:
        self.cpu = cpu
        self.load = load

    def cpu_usage(self) -> float:
        return self.cpu

    def load1(self) -> float:
        return self.load
