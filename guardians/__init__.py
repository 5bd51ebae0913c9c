"""guardians: a Sentinel-class flow-control engine for named resources.

It imports nothing of the project. See ``guardians.engine`` for the slot chain,
``guardians.rules`` for rule documents, ``guardians.store`` / ``watcher`` /
``fleet`` for the control DB, ``guardians.http`` for the ASGI side.
"""

from guardians.clock import Clock, FakeClock, SystemClock
from guardians.engine import Engine, Entry
from guardians.errors import (
    Blocked,
    BreakerBlocked,
    FlowBlocked,
    ParamBlocked,
    RuleValidationError,
    SystemBlocked,
)
from guardians.events import BreakerStateChanged
from guardians.rules import RuleSet, parse_document
from guardians.snapshot import ResourceSnapshot

__all__ = [
    "Blocked",
    "BreakerBlocked",
    "BreakerStateChanged",
    "Clock",
    "Engine",
    "Entry",
    "FakeClock",
    "FlowBlocked",
    "ParamBlocked",
    "ResourceSnapshot",
    "RuleSet",
    "RuleValidationError",
    "SystemBlocked",
    "SystemClock",
    "parse_document",
]
