"""System checker: all system rules against the node-wide inbound statistics.

The load (and, with strategy bbr, cpu) check follows Sentinel's BBR rule: block
only when the metric is over its threshold AND the inbound concurrency exceeds
what the node has shown it can complete: max success QPS (per second, over the
last minute) × min average RT (seconds). A high load while the node keeps up
lets traffic through.
"""

from __future__ import annotations

from collections.abc import Callable

from guardians.errors import SystemBlocked
from guardians.stat import ResourceNode
from guardians.system.probe import SystemProbe
from guardians.system.rule import SystemRule


class SystemChecker:
    has_exit = False

    def __init__(
        self, rules: tuple[SystemRule, ...], inbound: ResourceNode, probe_for: Callable[[], SystemProbe]
    ):
        self.rules = rules
        self.inbound = inbound
        self._probe_for = probe_for
        self.needs_probe = any(r.metric in ("cpu", "load") for r in rules)
        self._sec = -1
        self._cpu = 0.0
        self._load = 0.0
        self._bbr_sec = -1
        self._bbr_capacity = float("inf")

    def _refresh(self, t: float) -> None:
        s = int(t)
        if s != self._sec:
            self._sec = s
            if self.needs_probe:
                probe = self._probe_for()
                self._cpu = probe.cpu_usage()
                self._load = probe.load1()

    def bbr_capacity(self, t: float) -> float:
        """max success QPS × min RT over the last minute's completed seconds (concurrency units)."""
        s = int(t)
        if s != self._bbr_sec:
            self._bbr_sec = s
            self.inbound.flush(t)
            buckets = [b for b in self.inbound.minute_buckets(t) if b.success > 0]
            if not buckets:
                self._bbr_capacity = float("inf")
            else:
                max_qps = max(b.success for b in buckets)
                min_rt_ms = min(b.rt_avg for b in buckets)
                self._bbr_capacity = max_qps * min_rt_ms / 1000.0
        return self._bbr_capacity

    def bbr_blocks(self, t: float) -> bool:
        c = self.inbound.concurrency
        return c > 1 and c > self.bbr_capacity(t)

    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        self._refresh(t)
        inbound = self.inbound
        for rule in self.rules:
            m = rule.metric
            if m == "qps":
                over = inbound.pass_count(int(t * 2)) + 1 > rule.threshold
            elif m == "concurrency":
                over = inbound.concurrency + 1 > rule.threshold
            elif m == "avg_rt":
                w = inbound.last_second(t)
                over = w.completed > 0 and w.rt_avg > rule.threshold
            elif m == "cpu":
                over = self._cpu > rule.threshold and (rule.strategy != "bbr" or self.bbr_blocks(t))
            else:  # load
                over = self._load > rule.threshold and (rule.strategy != "bbr" or self.bbr_blocks(t))
            if over:
                raise SystemBlocked(
                    node.name,
                    rule,
                    1.0,
                    detail=f"system rule {rule.name} "
                    f"(threshold {rule.threshold:g}) blocked inbound {node.name}",
                )
        return 0.0
