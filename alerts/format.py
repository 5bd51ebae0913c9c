"""Values rounded for a person, with the unit their rule measures: ``76.2 %``, ``812 ms``, ``open``.

One helper for the alert annotations the engine renders (``{value}``, ``{threshold}`` in a summary)
and for the console's Alerts page (``console.services.alert_actions`` re-exports these), so a
notification and the page show the same text for the same value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from collectors.points import BREAKER_STATE_NAMES

UNITS = ("%", "ms", "s", "breaker", "points")


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def unit_of(rule: Any) -> str:
    """The unit of a rule's value, for a rule document (mapping) or an ``alerts.model.AlertRule``:
    ``%`` for ratios, ``ms`` for *_ms fields, ``s`` for heartbeats and *_s fields, ``breaker`` for
    breaker states, ``points`` for a growth (``function: delta``); empty when unknown."""
    if not rule:
        return ""
    if _get(rule, "kind") == "heartbeat":
        return "s"
    q = _get(rule, "query") or {}
    if _get(q, "ratio"):
        return "%"
    if _get(q, "measurement") == "breaker_events":
        return "breaker"
    field = str(_get(q, "field") or "")
    if field.endswith("_ms"):
        return "ms"
    if field.endswith("_s"):
        return "s"
    if _get(q, "function") == "delta":
        return "points"
    return ""


def value_text(value: Any, unit: str) -> str:
    """A value rounded for a person: ``76.2 %``, ``812 ms``, ``open``, ``35 s``; ``no data`` for None."""
    if value is None:
        return "no data"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if unit == "%":
        return f"{100 * v:.1f} %"
    if unit == "breaker":
        name = BREAKER_STATE_NAMES.get(int(v)) if v.is_integer() else None
        return name.replace("_", "-") if name else f"{v:g}"
    if unit in ("ms", "s"):
        return f"{v:,.0f} {unit}"
    if unit == "points":
        return f"{v:+,.0f} points"
    return f"{v:,.4g}"


def drop_written_units(template: str, unit: str, names: tuple[str, ...] = ("value", "threshold")) -> str:
    """``{value} ms`` → ``{value}`` when ``unit`` is ``ms``: a placeholder rendered by ``value_text``
    carries its unit already, so a unit the text writes after it would be said twice."""
    if unit not in ("ms", "s", "points", "%"):
        return template
    for name in names:
        written = r"\{" + name + r"\}\s*" + re.escape(unit) + r"(?![\w%])"
        template = re.sub(written, "{" + name + "}", template)
    return template
