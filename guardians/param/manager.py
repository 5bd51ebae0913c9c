"""Param rule manager: one checker per rule on a shared clock-aware limits storage."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from common.clock import Clock
from guardians.param.checker import (
    ClusterParamChecker,
    ConcurrencyParamChecker,
    PacedParamChecker,
    ParamChecker,
)
from guardians.param.rule import ParamRule
from guardians.param.storage import ClockedMemoryStorage


class ParamRuleManager:
    def __init__(self, clock: Clock) -> None:
        self.storage = ClockedMemoryStorage(clock)
        self._seq = itertools.count(1)
        self._rules: tuple[ParamRule, ...] = ()
        self._checkers: dict[ParamRule, Any] = {}
        self.cluster: Any = None  # guardians.cluster.Cluster in cluster mode (``cluster: true`` rules)

    def rules(self) -> list[ParamRule]:
        return list(self._rules)

    def load(self, rules: tuple[ParamRule, ...]) -> tuple[dict[str, list[Any]], bool]:
        changed = rules != self._rules
        checkers: dict[ParamRule, Any] = {}
        by_resource: dict[str, list[Any]] = {}
        # calls in flight stay counted across an edit of their rule (same resource, param and name)
        inflight = {
            (r.resource, r.param, r.name): c.counts
            for r, c in self._checkers.items()
            if isinstance(c, ConcurrencyParamChecker)
        }
        for rule in rules:
            if rule in checkers:
                continue
            chk = self._checkers.get(rule) or self._build(
                rule, inflight.get((rule.resource, rule.param, rule.name))
            )
            checkers[rule] = chk
            by_resource.setdefault(rule.resource, []).append(chk)
        self._rules, self._checkers = tuple(rules), checkers
        return by_resource, changed

    def _build(self, rule: ParamRule, counts: dict[str, int] | None = None) -> Any:
        local = ParamChecker(rule, self.storage, next(self._seq))
        if rule.grade == "concurrency":
            return ConcurrencyParamChecker(rule, local, counts)
        if rule.behavior == "queue":
            return PacedParamChecker(rule, local)
        if rule.cluster and self.cluster is not None:
            return ClusterParamChecker(rule, local, self.cluster)
        return local

    def forget(self, pred: Callable[[ParamRule], bool]) -> None:
        self._checkers = {r: c for r, c in self._checkers.items() if not pred(r)}
