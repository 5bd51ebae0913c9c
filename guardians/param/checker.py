"""Param checker: per-value fixed windows from ``limits`` (FixedWindowRateLimiter).

Each value of ``rule.param`` gets ``threshold`` calls per ``duration_s`` (or its
exception's threshold). ``burst`` is a pool of extra calls a value may take
above its threshold, refilled every 10 windows, so a short spike of one hot
value passes while a sustained one is held to the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping

from limits import RateLimitItemPerSecond
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from guardians.errors import ParamBlocked
from guardians.param.rule import ParamRule
from guardians.stat import ResourceNode

BURST_WINDOWS = 10


class ParamChecker:
    has_exit = False

    def __init__(self, rule: ParamRule, storage: Storage, seq: int) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.param = rule.param
        self.limiter = FixedWindowRateLimiter(storage)
        self.ns = f"g{seq}"  # a fresh namespace per rule version: new rules start with fresh windows
        self.item = RateLimitItemPerSecond(max(rule.threshold, 1), rule.duration_s, namespace=self.ns)
        self.exceptions = {
            v: RateLimitItemPerSecond(max(n, 1), rule.duration_s, namespace=self.ns)
            for v, n in rule.exceptions
        }
        self.zero = {v for v, n in rule.exceptions if n == 0}
        self.burst = (
            RateLimitItemPerSecond(rule.burst, rule.duration_s * BURST_WINDOWS, namespace=self.ns + "b")
            if rule.burst
            else None
        )

    def check(
        self, node: ResourceNode, t: float, args: Mapping[str, str] | None, origin: str | None
    ) -> float:
        if not args:
            return 0.0
        value = args.get(self.param)
        if value is None:
            return 0.0
        value = str(value)
        item = self.exceptions.get(value, self.item)
        if value in self.zero or (self.rule.threshold == 0 and value not in self.exceptions):
            raise self._blocked(value, args)
        if self.limiter.hit(item, self.param, value):
            return 0.0
        if self.burst is not None and self.limiter.hit(self.burst, self.param, value):
            return 0.0
        raise self._blocked(value, args)

    def _blocked(self, value: str, args: Mapping[str, str]) -> ParamBlocked:
        return ParamBlocked(
            self.resource,
            self.rule,
            float(self.rule.duration_s),
            args=dict(args),
            detail=f"param rule {self.rule.name}: {self.param}={value} over {self.rule.limit_for(value)} "
            f"per {self.rule.duration_s}s on {self.resource}",
        )
