"""guardians: a Sentinel-class flow-control engine for named resources.

It imports nothing of the project but ``common`` (its clock is ``common.clock``).
See ``guardians.engine`` for the slot chain, ``guardians.rules`` for rule documents,
``guardians.store`` / ``watcher`` / ``fleet`` for the control DB, ``guardians.http`` for the ASGI side.

``COMPILED``: whether the guard's hot path runs compiled (mypyc; ``guardians._native`` lists the
modules, ``COMPILED_MODULES`` those that are): False in a pure-Python install, same behaviour, and
with ``TRADEGUARD_INTERPRETED=1`` (the sources run even where extensions were built).
"""

from guardians._native import MODULES as _HOT
from guardians._native import compiled_modules, interpreted_requested, prefer_sources

if interpreted_requested():
    prefer_sources()

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

COMPILED_MODULES: tuple[str, ...] = compiled_modules()
COMPILED: bool = len(COMPILED_MODULES) == len(_HOT)

__all__ = [
    "COMPILED",
    "COMPILED_MODULES",
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
