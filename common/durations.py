"""One duration grammar for every document and URL option of the project.

A duration is one or more ``<number><unit>`` parts, largest unit first or not (``30s``, ``5m``,
``1h30m``, ``7d``, ``2w``, ``1.5h``, ``500ms``), or a plain number of seconds (``90``, ``"90"``,
``0.5``). Units: ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``. Negative durations do not exist.

Used by alert documents (``for``, ``window``, ``shift``…) and by store URL options
(``retention=30d``, ``timeout=5s``).
"""

from __future__ import annotations

import re
from datetime import timedelta

UNIT_SECONDS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = r"\d+(?:\.\d+)?"
_PART = rf"{_NUMBER}\s*(?:ms|s|m|h|d|w)"
# The whole grammar as one regular expression (also the JSON Schema ``pattern`` of a duration string).
DURATION_PATTERN = rf"^\s*(?:{_NUMBER}|(?:{_PART}\s*)+)\s*$"
_WHOLE = re.compile(DURATION_PATTERN)
_PARTS = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d|w)")
EXAMPLES = "30s, 5m, 1h30m, 7d, 500ms or a number of seconds"


def parse_duration(value: object) -> timedelta:
    """``value`` (a duration string, a number of seconds or a ``timedelta``) as a ``timedelta``.

    Raises ``ValueError`` saying what a duration looks like.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"a duration must be ≥ 0, got {value}")
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like {EXAMPLES}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration must be ≥ 0, got {value!r}")
        return timedelta(seconds=float(value))
    if isinstance(value, str) and _WHOLE.match(value):
        text = value.strip()
        parts = _PARTS.findall(text)
        if not parts:  # a plain number of seconds
            return timedelta(seconds=float(text))
        return timedelta(seconds=sum(float(n) * UNIT_SECONDS[u] for n, u in parts))
    raise ValueError(f"expected a duration like {EXAMPLES}, got {value!r}")


def format_duration(value: timedelta) -> str:
    """Text ``parse_duration`` reads back as ``value``: the largest unit holding it a whole number of
    times (``0s``, ``90s``, ``5m``, ``90m``, ``1w``, ``500ms``), else seconds (``1.5s``)."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        size = UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"
