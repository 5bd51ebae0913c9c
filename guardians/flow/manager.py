"""Flow rule manager: validated rules in, per-resource checkers out, state kept for unchanged rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guardians.flow.checker import FlowChecker, NodeFor, build_checker
from guardians.flow.rule import FlowRule


class FlowRuleManager:
    def __init__(self) -> None:
        self._rules: tuple[FlowRule, ...] = ()
        self._checkers: dict[FlowRule, FlowChecker] = {}
        # cluster mode: builds the checker of a ``cluster: true`` rule (leases from a shared counter)
        self.cluster_checker: Callable[[FlowRule, NodeFor], Any] | None = None

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
            chk = self._checkers.get(rule) or self._build(rule, node_for)
            checkers[rule] = chk
            by_resource.setdefault(rule.resource, []).append(chk)
        for chks in by_resource.values():  # ``limit_app: other``: the origins the others name
            named = frozenset(c.rule.limit_app for c in chks if c.rule.limit_app not in (None, "other"))
            for c in chks:
                if isinstance(c, FlowChecker):
                    c.named = named
        self._rules, self._checkers = tuple(rules), checkers
        return by_resource, changed

    def _build(self, rule: FlowRule, node_for: NodeFor) -> Any:
        if rule.cluster and self.cluster_checker is not None:
            return self.cluster_checker(rule, node_for)
        return build_checker(rule, node_for)

    def forget(self, pred: Callable[[FlowRule], bool]) -> None:
        """Drop the kept checkers of matching rules (rebuilt at the next load)."""
        self._checkers = {r: c for r, c in self._checkers.items() if not pred(r)}
