"""Param rule manager: one checker per rule on a shared clock-aware limits storage."""

from __future__ import annotations

import itertools

from common.clock import Clock
from guardians.param.checker import ParamChecker
from guardians.param.rule import ParamRule
from guardians.param.storage import ClockedMemoryStorage


class ParamRuleManager:
    def __init__(self, clock: Clock) -> None:
        self.storage = ClockedMemoryStorage(clock)
        self._seq = itertools.count(1)
        self._rules: tuple[ParamRule, ...] = ()
        self._checkers: dict[ParamRule, ParamChecker] = {}

    def rules(self) -> list[ParamRule]:
        return list(self._rules)

    def load(self, rules: tuple[ParamRule, ...]) -> tuple[dict[str, list[ParamChecker]], bool]:
        changed = rules != self._rules
        checkers: dict[ParamRule, ParamChecker] = {}
        by_resource: dict[str, list[ParamChecker]] = {}
        for rule in rules:
            if rule in checkers:
                continue
            chk = self._checkers.get(rule) or ParamChecker(rule, self.storage, next(self._seq))
            checkers[rule] = chk
            by_resource.setdefault(rule.resource, []).append(chk)
        self._rules, self._checkers = tuple(rules), checkers
        return by_resource, changed
