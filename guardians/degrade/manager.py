"""Degrade manager: the registry of fallbacks (code) and the rules choosing them (data)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from guardians.degrade.rule import DegradeRule

log = logging.getLogger(__name__)


class DegradeManager:
    def __init__(self) -> None:
        self._fallbacks: dict[str, Callable[[Any], Any]] = {}
        self._rules: tuple[DegradeRule, ...] = ()

    def register(self, name: str, fn: Callable[[Any], Any]) -> None:
        if not name or name == "default":
            raise ValueError(
                "fallback name must be non-empty and not 'default' (reserved for the call site's)"
            )
        self._fallbacks[name] = fn

    def names(self) -> list[str]:
        return sorted(self._fallbacks)

    def rules(self) -> list[DegradeRule]:
        return list(self._rules)

    def load(self, rules: tuple[DegradeRule, ...]) -> tuple[dict[str, DegradeRule], bool]:
        changed = rules != self._rules
        self._rules = tuple(rules)
        by_resource: dict[str, DegradeRule] = {}
        for r in rules:
            by_resource.setdefault(r.resource, r)  # the first rule for a resource wins
            if r.fallback != "default" and r.fallback not in self._fallbacks:
                log.warning(
                    "degrade rule %s names fallback %r which is not registered (yet)", r.name, r.fallback
                )
        return by_resource, changed

    def lookup(self, name: str) -> Callable[[Any], Any] | None:
        return self._fallbacks.get(name)
