"""guardians: a Sentinel-class flow-control engine for named resources.

It imports nothing of the project but ``common`` (its clock is ``common.clock``).
See ``guardians.engine`` for the slot chain, ``guardians.rules`` for rule documents,
``guardians.store`` / ``watcher`` / ``fleet`` for the control DB, ``guardians.http`` for the ASGI side.
"""

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
    "Engine",
    "Entry",
    "FlowBlocked",
    "ParamBlocked",
    "ResourceSnapshot",
    "RuleSet",
    "RuleValidationError",
    "SystemBlocked",
    "parse_document",
]
