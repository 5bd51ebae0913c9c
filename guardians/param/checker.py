"""Param checker: per-value fixed windows from ``limits`` (FixedWindowRateLimiter).

Each value of ``rule.param`` gets ``threshold`` calls per ``duration_s`` (or its
exception's threshold). ``burst`` is a pool of extra calls a value may take
above its threshold, refilled every 10 windows, so a short spike of one hot
value passes while a sustained one is held to the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
        # the hot path counts on the storage directly, as FixedWindowRateLimiter.hit does
        # (incr(key, expiry) <= limit) without building limits' key string through its item
        self._incr = storage.incr
        self._key = f"{self.ns}/{self.param}/"
        self._bkey = f"{self.ns}b/{self.param}/"
        self._limits = {v: max(n, 1) for v, n in rule.exceptions}
        self._limit = max(rule.threshold, 1)
        self._expiry = rule.duration_s

    def check(
        self, node: ResourceNode, t: float, args: Mapping[str, Any] | None, origin: str | None
    ) -> float:
        if not args:
            return 0.0
        value = args.get(self.param)
        if value is None:
            return 0.0
        if isinstance(value, tuple | list | frozenset | set):  # every value counts (every SKU of an order)
            for v in value:
                self.check_value(str(v), args)
            return 0.0
        self.check_value(str(value), args)
        return 0.0

    def check_value(self, value: str, args: Mapping[str, Any]) -> None:
        if value in self.zero or (self.rule.threshold == 0 and value not in self.exceptions):
            raise self._blocked(value, args)
        if self._incr(self._key + value, self._expiry) <= self._limits.get(value, self._limit):
            return
        b = self.burst
        if b is not None and self._incr(self._bkey + value, self._expiry * BURST_WINDOWS) <= b.amount:
            return
        raise self._blocked(value, args)

    def _blocked(self, value: str, args: Mapping[str, Any]) -> ParamBlocked:
        exc = ParamBlocked(
            self.resource,
            self.rule,
            float(self.rule.duration_s),
            args=dict(args),
            detail=f"param rule {self.rule.name}: {self.param}={value} over {self.rule.limit_for(value)} "
            f"per {self.rule.duration_s}s on {self.resource}",
        )
        exc.param_name = self.param  # for the block log
        exc.param_value = value
        return exc


class ClusterParamChecker:
    """A ``cluster: true`` param rule: each value's threshold across all nodes, one ``INCR`` per call
    and value on the shared window ``(rule, value, epoch second)``; while the cluster storage fails,
    the node holds its share of the threshold (``Cluster.share``) with a local checker."""

    has_exit = False

    def __init__(self, rule: ParamRule, local: ParamChecker, cluster: Any) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.param = rule.param
        self.local = local
        self.cluster = cluster
        self.prefix = cluster.key("param", rule.resource, rule.name)

    def check(
        self, node: ResourceNode, t: float, args: Mapping[str, Any] | None, origin: str | None
    ) -> float:
        if not args:
            return 0.0
        value = args.get(self.param)
        if value is None:
            return 0.0
        values = value if isinstance(value, tuple | list | frozenset | set) else (value,)
        for v in values:
            v = str(v)
            limit = self.rule.limit_for(v)
            if limit == 0:
                raise self.local._blocked(v, args)
            if not self.cluster.ok:  # fallback: the cluster's own thread probes the storage
                self._local(v, limit, args)
                continue
            try:
                got = self.cluster.take(f"{self.prefix}:{v}:{int(t)}", 1, limit)
            except Exception as exc:
                self.cluster.failed(exc)
                self._local(v, limit, args)
                continue
            if not got:
                raise self.local._blocked(v, args)
        return 0.0

    def _local(self, value: str, limit: int, args: Mapping[str, Any]) -> None:
        share = self.cluster.share(limit)
        item = RateLimitItemPerSecond(max(share, 1), 1, namespace=self.local.ns + "c")
        if not self.local.limiter.hit(item, self.param, value):
            raise self.local._blocked(value, args)
