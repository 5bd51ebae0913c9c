"""Flow checkers: one object per rule, holding that rule's traffic-shaping state.

``check(node, t, args, origin) -> wait_seconds`` raises ``FlowBlocked`` or
returns how long the call must wait first (queueing behaviours; 0.0 otherwise).
``on_exit(node, t, rt_ms, error)`` exists only where a behaviour learns from
completions (adaptive).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from guardians.context import current_caller
from guardians.errors import FlowBlocked
from guardians.flow.rule import FlowRule
from guardians.stat import ResourceNode

NodeFor = Callable[[str], ResourceNode]


class _OwnCounter:
    """A 1 s sliding counter of the calls one checker admitted (limit_app, chain): the newest
    half-second ``h`` (``cur`` calls) and the one before it (``prev``), as a resource's node keeps
    its passes. It never moves back: a call whose clock reading is older counts in ``h``."""

    __slots__ = ("cur", "h", "prev")

    def __init__(self) -> None:
        self.h = -1
        self.cur = self.prev = 0

    def count(self, h: int) -> int:
        if h > self.h:
            return self.cur if h == self.h + 1 else 0
        return self.cur + self.prev

    def add(self, h: int) -> None:
        if h > self.h:
            self.prev = self.cur if h == self.h + 1 else 0
            self.cur = 0
            self.h = h
        self.cur += 1


class FlowChecker:
    # whether ``on_exit`` learns from completions (the engine calls it only then)
    has_exit = False
    # exact without the engine's node lock (see guardians.engine._Slot): only where set below
    lock_free = False

    def __init__(self, rule: FlowRule, node_for: NodeFor) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.threshold = rule.threshold
        self.limit_app = rule.limit_app
        self.entrance = rule.ref_resource if rule.strategy == "chain" else None
        # ``other``: origins that no other flow rule on the resource names (set by the manager)
        self.named: frozenset[str] = frozenset()
        # relate: the measured traffic is the referenced resource's
        ref = rule.ref_resource
        self.ref_node = node_for(ref) if rule.strategy == "relate" and ref is not None else None
        # limit_app / chain: the rule counts the calls it applies to (an origin's, an entrance's)
        self.own = _OwnCounter() if (self.limit_app is not None or self.entrance is not None) else None

    def applies(self, origin: str | None) -> bool:
        """Whether a call of ``origin`` (None: the request's, from ``guardians.context``) is limited."""
        app = self.limit_app
        entrance = self.entrance
        if entrance is None and app is None:
            return True
        o, e = current_caller()  # one context read: (origin, entrance)
        if entrance is not None and e != entrance:
            return False
        if app is None:
            return True
        if origin is not None:
            o = origin
        if app == "other":
            return o not in self.named
        return o == app

    def block(self, retry_after_s: float = 1.0, detail: str = "") -> FlowBlocked:
        return FlowBlocked(
            self.resource,
            self.rule,
            retry_after_s,
            detail=detail
            or f"flow rule {self.rule.name} ({self.rule.grade} threshold {self.threshold:g}) "
            f"blocked {self.resource}",
        )

    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        """``t`` is the engine clock (seconds; ``node`` is rolled to it); returns seconds to wait."""
        raise NotImplementedError

    def on_exit(self, node: ResourceNode, t: float, rt_ms: float, error: bool) -> None:
        """A completion (called only where ``has_exit``)."""


class QpsReject(FlowChecker):
    def __init__(self, rule: FlowRule, node_for: NodeFor) -> None:
        super().__init__(rule, node_for)
        # reading another resource's passes (relate), it does not depend on this resource's pass count
        self.lock_free = self.ref_node is not None
        self.limit = math.floor(self.threshold)  # count + 1 > threshold iff count >= floor(threshold)

    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        ref = self.ref_node
        n = node.current_pass_count() if ref is None else ref.pass_count(int(t * 2))
        if n + 1 > self.threshold:
            raise self.block(0.5 - (t % 0.5) or 0.5)
        return 0.0


class OwnQpsReject(QpsReject):
    """A QPS rule counting its own window (limit_app / chain): applies → roll → compare → count, with
    no call between the compare and the count, so it is exact under threads without the engine's node
    lock (``lock_free``; see ``guardians.engine`` for why that holds compiled and interpreted)."""

    def __init__(self, rule: FlowRule, node_for: NodeFor) -> None:
        super().__init__(rule, node_for)
        self.lock_free = True
        self.counter = self.own if self.own is not None else _OwnCounter()
        self.other = self.limit_app == "other"

    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        o, e = current_caller()
        entrance = self.entrance
        if entrance is not None and e != entrance:
            return 0.0
        app = self.limit_app
        if app is not None:
            if origin is not None:
                o = origin
            if self.other:
                if o in self.named:
                    return 0.0
            elif o != app:
                return 0.0
        own = self.counter
        h = int(t * 2)
        if h > own.h:
            own.prev = own.cur if h == own.h + 1 else 0
            own.cur = 0
            own.h = h
        if own.cur + own.prev >= self.limit:
            raise self.block(1.0 - (t % 1.0) or 1.0)
        own.cur += 1
        return 0.0


class ConcurrencyReject(FlowChecker):
    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        if self.own is not None and not self.applies(origin):
            return 0.0
        src = self.ref_node or node
        if src.concurrency + 1 > self.threshold:
            raise self.block(1.0)
        return 0.0


class WarmUp(FlowChecker):
    """Sentinel's WarmUpController (Guava SmoothWarmingUp): starts at threshold / cold_factor
    and ramps to threshold over about ``warm_up_s`` of sustained traffic."""

    def __init__(self, rule: FlowRule, node_for: NodeFor) -> None:
        super().__init__(rule, node_for)
        count = rule.threshold
        cf = rule.cold_factor
        w = rule.warm_up_s or 10
        self.count = count
        self.cold_factor = cf
        self.warning_token = int(w * count) / (cf - 1)
        self.max_token = self.warning_token + int(2 * w * count / (1.0 + cf))
        self.slope = (cf - 1.0) / count / max(self.max_token - self.warning_token, 1e-9)
        self.stored_tokens = 0.0
        self.last_filled_s = 0  # whole seconds
        self.sec = -1
        self.cur = 0
        self.prev = 0
        self._lock = threading.Lock()

    def _passes(self, t: float) -> tuple[int, int]:
        s = int(t)
        if s != self.sec:
            self.prev = self.cur if s == self.sec + 1 else 0
            self.cur = 0
            self.sec = s
        return self.cur, self.prev

    def _sync(self, t: float, previous_qps: int) -> None:
        s = int(t)
        if s <= self.last_filled_s:
            return
        old = self.stored_tokens
        new = old
        elapsed = s - self.last_filled_s
        if old < self.warning_token or (
            old > self.warning_token and previous_qps < int(self.count) // self.cold_factor
        ):
            new = old + elapsed * self.count
        new = min(new, self.max_token)
        self.stored_tokens = max(new - previous_qps, 0.0)
        self.last_filled_s = s

    def allowed_qps(self, t: float) -> float:
        _cur, prev = self._passes(t)
        self._sync(t, prev)
        rest = self.stored_tokens
        if rest >= self.warning_token:
            above = rest - self.warning_token
            return 1.0 / (above * self.slope + 1.0 / self.count)
        return self.count

    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        if self.own is not None and not self.applies(origin):
            return 0.0
        with self._lock:
            allowed = self.allowed_qps(t)
            if self.cur + 1 > allowed + 1e-9:
                raise self.block(
                    1.0 - (t % 1.0) or 1.0,
                    f"flow rule {self.rule.name} (warm-up, {allowed:.1f}/s "
                    f"now, {self.count:g}/s when warm) blocked {self.resource}",
                )
            self.cur += 1
        return 0.0


class Throttle(FlowChecker):
    """Sentinel's throttling (leaky bucket): calls pass evenly spaced at 1/threshold s,
    waiting in line up to ``max_queue_ms``; a call that would wait longer is blocked."""

    def __init__(self, rule: FlowRule, node_for: NodeFor) -> None:
        super().__init__(rule, node_for)
        self.max_queue_s = (rule.max_queue_ms or 0) / 1000.0
        self.latest = -math.inf
        self._lock = threading.Lock()

    def interval(self, t: float) -> float:
        return 1.0 / self.threshold

    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        if self.own is not None and not self.applies(origin):
            return 0.0
        with self._lock:
            interval = self.interval(t)
            expected = self.latest + interval
            if expected <= t:
                self.latest = t
                return 0.0
            wait = expected - t
            if wait > self.max_queue_s + 1e-9:
                raise self.block(
                    wait,
                    f"flow rule {self.rule.name} (queue: would wait {wait * 1000:.0f} ms > "
                    f"{self.max_queue_s * 1000:.0f} ms) blocked {self.resource}",
                )
            self.latest = expected
            return wait


class WarmUpThrottle(Throttle):
    """warm_up_queue: the throttle's spacing follows the warm-up allowed rate."""

    def __init__(self, rule: FlowRule, node_for: NodeFor) -> None:
        super().__init__(rule, node_for)
        self.warm = WarmUp(rule, node_for)

    def interval(self, t: float) -> float:
        allowed = self.warm.allowed_qps(t)
        self.warm.cur += 1
        return 1.0 / allowed


class Adaptive(FlowChecker):
    """An adaptive concurrency limit (Netflix concurrency-limits): the limit follows measured latency.

    gradient2: limit ← limit·g + queue, g = clamp(tolerance · long_rtt / short_rtt, 0.5, 1), smoothed;
    vegas: estimate the queue as limit·(1 − rtt_noload / rtt) and grow/shrink by log10(limit).
    ``threshold`` is the maximum limit; the limit starts there and never goes below ``min_limit``.
    """

    has_exit = True

    def __init__(self, rule: FlowRule, node_for: NodeFor) -> None:
        super().__init__(rule, node_for)
        self.max_limit = float(rule.threshold)
        self.min_limit = float(rule.min_limit or 1)
        self.limit = self.max_limit
        self.algorithm = rule.algorithm or "gradient2"
        # gradient2 state
        self.short_rtt = 0.0
        self.long_rtt = 0.0
        self.samples = 0
        self.tolerance = 1.5
        self.smoothing = 0.2
        self.long_alpha = 2.0 / (600 + 1)
        self.short_alpha = 2.0 / (10 + 1)
        # vegas state
        self.rtt_noload = math.inf
        self._lock = threading.Lock()

    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        if self.own is not None and not self.applies(origin):
            return 0.0
        if node.concurrency + 1 > int(self.limit):
            raise self.block(
                0.1, f"flow rule {self.rule.name} (adaptive limit {int(self.limit)}) blocked {self.resource}"
            )
        return 0.0

    def on_exit(self, node: ResourceNode, t: float, rt_ms: float, error: bool) -> None:
        if error:
            return
        with self._lock:
            self.sample(max(rt_ms, 0.001), node.concurrency + 1)

    def sample(self, rtt: float, inflight: int) -> None:
        if self.algorithm == "vegas":
            self._vegas(rtt, inflight)
        else:
            self._gradient2(rtt, inflight)

    def _gradient2(self, rtt: float, inflight: int) -> None:
        self.samples += 1
        if self.samples == 1:
            self.short_rtt = self.long_rtt = rtt
            return
        self.short_rtt += (rtt - self.short_rtt) * self.short_alpha
        self.long_rtt += (rtt - self.long_rtt) * self.long_alpha
        short, long_ = self.short_rtt, self.long_rtt
        if long_ / short > 2:  # latency dropped a lot: let the long average catch up quickly
            self.long_rtt = long_ = long_ * 0.95
        if inflight < self.limit / 2 and short <= long_:
            return  # application-limited: no evidence to grow
        gradient = max(0.5, min(1.0, self.tolerance * long_ / short))
        queue = math.sqrt(self.limit)
        new = self.limit * gradient + queue
        new = self.limit * (1 - self.smoothing) + new * self.smoothing
        self.limit = max(self.min_limit, min(self.max_limit, new))

    def _vegas(self, rtt: float, inflight: int) -> None:
        if rtt < self.rtt_noload:
            self.rtt_noload = rtt
            return
        limit = self.limit
        if inflight * 2 < limit:
            return
        queue = math.ceil(limit * (1 - self.rtt_noload / rtt))
        lg = max(1.0, math.log10(max(limit, 1.0)))
        alpha, beta = 3 * lg, 6 * lg
        if queue <= lg:
            new = limit + beta
        elif queue < alpha:
            new = limit + lg
        elif queue > beta:
            new = limit - lg
        else:
            return
        self.limit = max(self.min_limit, min(self.max_limit, new))


def build_checker(rule: FlowRule, node_for: NodeFor) -> FlowChecker:
    if rule.behavior == "adaptive":
        return Adaptive(rule, node_for)
    if rule.grade == "concurrency":
        return ConcurrencyReject(rule, node_for)
    if rule.behavior == "warm_up":
        return WarmUp(rule, node_for)
    if rule.behavior == "queue":
        return Throttle(rule, node_for)
    if rule.behavior == "warm_up_queue":
        return WarmUpThrottle(rule, node_for)
    if rule.limit_app is not None or (rule.strategy == "chain" and rule.ref_resource is not None):
        return OwnQpsReject(rule, node_for)
    return QpsReject(rule, node_for)
