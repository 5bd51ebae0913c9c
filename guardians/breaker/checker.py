"""Breaker checker: our ratio/count triggers drive pybreaker's state machine.

pybreaker owns the states (closed / open / half-open), their storage (memory, or
Redis for a breaker shared across nodes) and the listener notifications; this
module decides *when* to trip: per ``stat_interval_ms`` window it counts calls
and bad calls (errors, or calls slower than ``max_rt_ms``) and opens the circuit
once ``min_requests`` calls were seen and the ratio (or count) crosses the
threshold. After ``recovery_s`` the next calls find it half-open: ``probes``
trial calls pass; all succeeding closes it, any failing re-opens it.

The state is cached in a plain attribute so the closed-state check costs one
comparison; transitions take a lock and go through pybreaker. Every transition
also tells the resource's node (``gate_node.regate()``): the engine's fast path
reads the node's ``gate`` (all its breakers closed) instead of each breaker.

Only pybreaker's public API is used: ``CircuitBreaker.open()`` / ``half_open()`` /
``close()``, a ``CircuitBreakerListener.state_change`` relay, and the storage's
``state`` / ``opened_at`` properties (any ``CircuitBreakerStorage`` works). The
versions this is tested on are pinned in pyproject.toml, and a test checks the
installed one is among them.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

import pybreaker

from common.clock import Clock
from guardians.breaker.rule import BreakerRule
from guardians.errors import BreakerBlocked
from guardians.events import CLOSED, HALF_OPEN, OPEN, BreakerStateChanged
from guardians.stat import ResourceNode

log = logging.getLogger(__name__)

_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: CLOSED,
    pybreaker.STATE_OPEN: OPEN,
    pybreaker.STATE_HALF_OPEN: HALF_OPEN,
}

Emit = Callable[[BreakerStateChanged], None]


class _Relay:
    """pybreaker listener that turns its state changes into BreakerStateChanged events.

    Not a subclass of ``pybreaker.CircuitBreakerListener`` (pybreaker only calls the four methods): a
    compiled class with an interpreted base gets a ``__dict__`` and a ``__weakref__`` slot that mypyc
    mishandles on Python 3.11 (guardians/README.md, "The compiled hot path")."""

    def __init__(self, owner: BreakerChecker) -> None:
        self.owner = owner

    def before_call(self, cb: object, func: object, *args: object, **kwargs: object) -> None:
        pass

    def success(self, cb: object) -> None:
        pass

    def failure(self, cb: object, exc: BaseException) -> None:
        pass

    def state_change(self, cb, old_state, new_state) -> None:  # type: ignore[no-untyped-def]
        prev = _FROM_PYBREAKER.get(old_state.name, CLOSED) if old_state is not None else CLOSED
        new = _FROM_PYBREAKER.get(new_state.name, CLOSED)
        if prev != new:
            self.owner.notify(prev, new)


class BreakerChecker:
    """One breaker rule on one resource.

    Its statistics window is read from the resource's own half-second records
    (total calls and errors; for slow_ratio it counts its slow calls itself), so a
    call that succeeds in the closed state costs the breaker nothing at exit, and
    the window slides in 500 ms steps over the last ``stat_interval_ms``
    (≤ 60 s, the records the node keeps). The window is evaluated only when a bad
    call (error, or slow) arrives. Counting restarts when the circuit closes.
    """

    has_exit = True
    __slots__ = (  # noqa: RUF023 - hot fields first: fewer cache lines per call
        "state",
        "slow_ms",
        "n_halves",
        "since_h",
        "slow_counts",
        "min_requests",
        "threshold",
        "count_mode",
        "opened_t",
        "recovery_s",
        "probes",
        "probes_ok",
        "probes_started",
        "resource",
        "rule",
        "clock",
        "emit",
        "cb",
        "storage",
        "node",
        "gate_node",
        "_lock",
        "transitions",
    )

    def __init__(
        self,
        rule: BreakerRule,
        clock: Clock,
        emit: Emit,
        storage: pybreaker.CircuitBreakerStorage | None = None,
    ) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.clock = clock
        self.emit = emit
        self.state = CLOSED
        self.recovery_s = float(rule.recovery_s)
        self.n_halves = max(1, math.ceil(int(rule.stat_interval_ms) / 500))
        self.since_h = int(clock.time() * 2)  # counting starts now (and again at every close)
        self.slow_counts: dict[int, int] = {}
        self.min_requests = int(rule.min_requests)
        self.threshold = rule.threshold
        self.probes = int(rule.probes)
        self.slow_ms = rule.max_rt_ms if rule.strategy == "slow_ratio" else None
        self.count_mode = rule.strategy == "error_count"
        self.opened_t = 0.0
        self.probes_started = 0
        self.probes_ok = 0
        self.node: ResourceNode | None = None
        self.gate_node: ResourceNode | None = None  # the node whose ``gate`` follows this state (bind)
        self._lock = threading.RLock()
        # pybreaker's storage, kept to stamp ``opened_at`` with the injected clock (its public property)
        self.storage = storage or pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self.cb = pybreaker.CircuitBreaker(  # type: ignore[type-var]
            fail_max=2**31,  # pybreaker's own consecutive-failure trigger is never used
            reset_timeout=self.recovery_s,
            success_threshold=self.probes,
            state_storage=self.storage,
            listeners=[_Relay(self)],  # a listener by duck typing (see _Relay)
            name=rule.resource,
        )
        self.transitions = 0

    # -- the slot -------------------------------------------------------------
    def check(self, node: ResourceNode, t: float, args: object, origin: str | None) -> float:
        if self.state == CLOSED:
            return 0.0
        with self._lock:
            if self.state == OPEN:
                remaining = self.opened_t + self.recovery_s - t
                if remaining > 0:
                    raise self._blocked(remaining)
                self._to(HALF_OPEN, t)
            if self.state == HALF_OPEN:
                if self.probes_started < self.probes:
                    self.probes_started += 1
                    return 0.0
                raise self._blocked(1.0)
        return 0.0

    def on_exit(self, node: ResourceNode, t: float, rt_ms: float, error: bool) -> None:
        slow = self.slow_ms
        bad = (rt_ms > slow) if slow is not None else error
        if self.state == CLOSED:
            if not bad:
                return
            self.node = node
            h = int(t * 2)
            if slow is not None:
                self.slow_counts[h] = self.slow_counts.get(h, 0) + 1
            total, nbad = self.window(node, h)
            if total >= self.min_requests and (
                nbad >= self.threshold if self.count_mode else nbad / total > self.threshold
            ):
                with self._lock:
                    if self.state == CLOSED:
                        self._to(OPEN, t)
            return
        with self._lock:
            if self.state != HALF_OPEN:
                return
            if bad:
                self._to(OPEN, t)
            else:
                self.probes_ok += 1
                if self.probes_ok >= self.probes:
                    self._to(CLOSED, t)

    def window(self, node: ResourceNode, h: int) -> tuple[int, int]:
        """(calls completed, bad calls) in the window ending with half-second ``h``, since the last close."""
        lo = max(h - self.n_halves + 1, self.since_h)
        total = bad = 0
        slow = self.slow_counts if self.slow_ms is not None else None
        for hh in range(lo, h + 1):
            r = node._record(hh)
            if r is not None:
                total += r.success + r.error
                if slow is None:
                    bad += r.error
            if slow is not None:
                bad += slow.get(hh, 0)
        if slow is not None and len(slow) > 2 * self.n_halves + 4:
            for k in [k for k in slow if k < lo]:
                del slow[k]
        return total, bad

    # -- transitions through pybreaker ----------------------------------------
    def _to(self, state: str, t: float) -> None:
        self.transitions += 1
        if state == OPEN:
            self.opened_t = t
            self.state = OPEN
            self._regate()
            self.cb.open()
            self.storage.opened_at = self.clock.now()  # pybreaker stamps wall time; ours is injected
        elif state == HALF_OPEN:
            self.probes_started = 0
            self.probes_ok = 0
            self.state = HALF_OPEN
            self._regate()
            self.cb.half_open()
        else:
            self.since_h = int(t * 2)  # a closed circuit starts counting afresh
            self.slow_counts.clear()
            self.state = CLOSED
            self._regate()
            self.cb.close()

    def _regate(self) -> None:
        """Tell the bound node (the engine's fast path reads its ``gate``, not this state)."""
        node = self.gate_node
        if node is not None:
            node.regate()

    def adopt(self, state: str, t: float) -> None:
        """Take a state another node reached (shared breakers): ``OPEN`` opened at ``t``, or ``CLOSED``."""
        with self._lock:
            if state == self.state:
                return
            if state == OPEN:
                self._to(OPEN, self.clock.time())
                self.opened_t = t
            elif state == CLOSED:
                self._to(CLOSED, self.clock.time())

    def notify(self, previous: str, state: str) -> None:
        log.info("breaker %s: %s -> %s (%s)", self.resource, previous, state, self.rule.name)
        try:
            self.emit(BreakerStateChanged(self.resource, previous, state, self.clock.now(), self.rule))
        except Exception:
            log.exception("breaker listener failed for %s", self.resource)

    def _blocked(self, retry_after: float) -> BreakerBlocked:
        return BreakerBlocked(
            self.resource,
            self.rule,
            max(retry_after, 0.001),
            detail=f"breaker {self.rule.name} is {self.state} for {self.resource}",
        )

    def describe(self) -> dict[str, object]:
        total = bad = 0
        if self.node is not None:
            total, bad = self.window(self.node, int(self.clock.time() * 2))
        return {"rule": self.rule.name, "state": self.state, "window_total": total, "window_bad": bad}
