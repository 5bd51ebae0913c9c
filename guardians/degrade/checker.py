"""Degrade "checker": resolves the fallback that answers a blocked call (it never blocks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guardians.degrade.manager import DegradeManager
from guardians.degrade.rule import DEFAULT, DegradeRule


def resolve_fallback(
    manager: DegradeManager, rule: DegradeRule | None, call_site: Callable[[Any], Any] | None
) -> Callable[[Any], Any] | None:
    """The function to run instead of the blocked call, or None (then the Blocked error propagates)."""
    if rule is None:
        return None
    if rule.fallback == DEFAULT:
        return call_site
    return manager.lookup(rule.fallback)
