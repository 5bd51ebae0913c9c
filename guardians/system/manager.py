"""System rule manager."""

from __future__ import annotations

from collections.abc import Callable

from guardians.stat import ResourceNode
from guardians.system.checker import SystemChecker
from guardians.system.probe import SystemProbe
from guardians.system.rule import SystemRule


class SystemRuleManager:
    def __init__(self, inbound: ResourceNode, probe_for: Callable[[], SystemProbe]) -> None:
        self.inbound = inbound
        self.probe_for = probe_for
        self._rules: tuple[SystemRule, ...] = ()
        self._checker: SystemChecker | None = None

    def rules(self) -> list[SystemRule]:
        return list(self._rules)

    def load(self, rules: tuple[SystemRule, ...]) -> tuple[SystemChecker | None, bool]:
        changed = rules != self._rules
        if changed or self._checker is None:
            self._checker = SystemChecker(tuple(rules), self.inbound, self.probe_for) if rules else None
        self._rules = tuple(rules)
        return self._checker, changed
