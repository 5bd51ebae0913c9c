"""Breaker rule manager: one breaker per rule; an unchanged rule keeps its breaker and state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.clock import Clock
from guardians.breaker.checker import BreakerChecker, Emit
from guardians.breaker.rule import BreakerRule


class BreakerRuleManager:
    def __init__(self, clock: Clock, emit: Emit) -> None:
        self.clock = clock
        self.emit = emit
        # cluster mode: a pybreaker storage shared through Redis for ``shared: true`` rules
        self.storage_for: Callable[[BreakerRule], Any] | None = None
        self._rules: tuple[BreakerRule, ...] = ()
        self._checkers: dict[BreakerRule, BreakerChecker] = {}

    def rules(self) -> list[BreakerRule]:
        return list(self._rules)

    def breakers(self) -> list[BreakerChecker]:
        return list(self._checkers.values())

    def load(self, rules: tuple[BreakerRule, ...]) -> tuple[dict[str, list[BreakerChecker]], bool]:
        changed = rules != self._rules
        checkers: dict[BreakerRule, BreakerChecker] = {}
        by_resource: dict[str, list[BreakerChecker]] = {}
        for rule in rules:
            if rule in checkers:
                continue
            chk = self._checkers.get(rule) or self._build(rule)
            checkers[rule] = chk
            by_resource.setdefault(rule.resource, []).append(chk)
        self._rules, self._checkers = tuple(rules), checkers
        return by_resource, changed

    def _build(self, rule: BreakerRule) -> BreakerChecker:
        storage = self.storage_for(rule) if rule.shared and self.storage_for is not None else None
        chk = BreakerChecker(rule, self.clock, self.emit, storage)
        if storage is not None:
            storage.checker = chk
        return chk

    def forget(self, pred: Callable[[BreakerRule], bool]) -> None:
        """Drop the kept checkers of matching rules (rebuilt at the next load)."""
        self._checkers = {r: c for r, c in self._checkers.items() if not pred(r)}
