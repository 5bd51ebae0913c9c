"""Flow rule manager: validated rules in, per-resource checkers out, state kept for unchanged rules."""

from __future__ import annotations

from guardians.flow.checker import FlowChecker, NodeFor, build_checker
from guardians.flow.rule import FlowRule


class FlowRuleManager:
    def __init__(self) -> None:
        self._rules: tuple[FlowRule, ...] = ()
        self._checkers: dict[FlowRule, FlowChecker] = {}

    def rules(self) -> list[FlowRule]:
        """A copy of the rules in force."""
        return list(self._rules)

    def load(
        self, rules: tuple[FlowRule, ...], node_for: NodeFor
    ) -> tuple[dict[str, list[FlowChecker]], bool]:
        """Build checkers per resource; a rule identical to one in force keeps its checker (and state)."""
        changed = rules != self._rules
        checkers: dict[FlowRule, FlowChecker] = {}
        by_resource: dict[str, list[FlowChecker]] = {}
        for rule in rules:
            if rule in checkers:
                continue  # an exact duplicate adds nothing
            chk = self._checkers.get(rule) or build_checker(rule, node_for)
            checkers[rule] = chk
            by_resource.setdefault(rule.resource, []).append(chk)
        self._rules, self._checkers = tuple(rules), checkers
        return by_resource, changed
