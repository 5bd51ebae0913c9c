"""Param checker: per-value fixed windows (``limits``' FixedWindowRateLimiter semantics).

Each value of ``rule.param`` gets ``threshold`` calls per ``duration_s`` (or its
exception's threshold). ``burst`` is a pool of extra calls a value may take
above its threshold, refilled every 10 windows, so a short spike of one hot
value passes while a sustained one is held to the threshold. A window starts with
the value's first call after the previous one ended (as ``limits``' fixed window with
``incr(key, expiry)``); each rule counts in its own ``_Windows`` (a new rule starts fresh).
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from limits import RateLimitItemPerSecond
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from guardians.errors import ParamBlocked
from guardians.param.rule import ParamRule
from guardians.stat import ResourceNode

BURST_WINDOWS: Final = 10
MULTI: Final = (tuple, list, frozenset, set)


class _Exact:
    # (matchers are small classes, not lambdas: compiled, a lambda is an object with a ``__weakref__``
    # slot mypyc mishandles on Python 3.11 — guardians/README.md, "The compiled hot path")
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __call__(self, v: str) -> bool:
        return v == self.pattern


class _Prefix(_Exact):
    def __call__(self, v: str) -> bool:
        return v.startswith(self.pattern)


class _Regex:
    def __init__(self, pattern: str) -> None:
        self.rx = re.compile(pattern)

    def __call__(self, v: str) -> bool:
        return self.rx.fullmatch(v) is not None


def value_matcher(rule: ParamRule) -> Callable[[str], bool] | None:
    """Sentinel's gateway param matching: which values of a ``header:``/``query:`` param a rule limits
    (``exact``, ``prefix``, or a ``regex`` matching the whole value); None: every value."""
    strategy, pattern = rule.match_strategy, rule.pattern
    if not strategy or pattern is None:
        return None
    if strategy == "exact":
        return _Exact(pattern)
    if strategy == "prefix":
        return _Prefix(pattern)
    return _Regex(pattern)


def values_of(
    param: str, args: Mapping[str, Any] | None, match: Callable[[str], bool] | None
) -> tuple[str, ...]:
    """The limited values of ``param`` in ``args`` (every one of a multi-valued argument), as strings."""
    if not args:
        return ()
    value = args.get(param)
    if value is None:
        return ()
    out = tuple(str(v) for v in value) if isinstance(value, MULTI) else (str(value),)
    return tuple(v for v in out if match(v)) if match is not None else out


class _Window:
    """One value's running window: ``n`` calls counted, ending at ``end`` (engine seconds)."""

    __slots__ = ("end", "n")

    def __init__(self, end: float) -> None:
        self.n = 0
        self.end = end


class _Windows:
    """Per-value fixed windows of one rule: value -> ``_Window``.

    ``hit(value, t)`` counts a call and returns the value's count in its window. A call in a running
    window is one increment with no call in between, exact under threads without a lock (interpreted,
    the GIL switches threads only at calls and backward jumps; compiled, the increment is native code
    with no call at all); starting a window (and sweeping ended ones every ``sweep_every`` starts, so
    memory follows the active values) takes the lock. A window never moves back: a call with an
    older clock reading than a running window's counts in it."""

    __slots__ = ("_lock", "counts", "expiry", "starts", "sweep_every")

    def __init__(self, expiry: float, sweep_every: int = 4096) -> None:
        self.counts: dict[str, _Window] = {}
        self.expiry = expiry
        self.starts = 0
        self.sweep_every = sweep_every
        self._lock = threading.Lock()

    def hit(self, value: str, t: float) -> int:
        counts = self.counts
        if value in counts:
            w = counts[value]
            if w.end > t:
                w.n += 1
                return w.n
        return self.start(value, t)

    def start(self, value: str, t: float) -> int:
        with self._lock:
            w = self.counts.get(value)
            if w is None or w.end <= t:
                self.starts += 1
                if self.starts >= self.sweep_every:
                    self.starts = 0
                    self.counts = {k: e for k, e in self.counts.items() if e.end > t}
                w = self.counts[value] = _Window(t + self.expiry)
            w.n += 1
            return w.n

    def __len__(self) -> int:
        return len(self.counts)


class ParamChecker:
    has_exit = False
    # each value's count is incremented and compared in one storage call (under the storage's lock):
    # exact without the engine's node lock
    lock_free = True

    def __init__(self, rule: ParamRule, storage: Storage, seq: int) -> None:
        self.rule = rule
        self.resource = rule.resource
        # interned: the args' keys are mostly literals (interned by Python and by mypyc), so the lookup
        # finds the key by identity, without comparing the strings
        self.param = sys.intern(rule.param)
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
        # the hot path counts in the rule's own windows at the engine's clock reading (what
        # FixedWindowRateLimiter.hit does on a storage: incr(key, expiry) <= limit, without a key string,
        # a storage call or its lock for a running window)
        self.windows = _Windows(rule.duration_s)
        self.burst_windows = _Windows(rule.duration_s * BURST_WINDOWS)
        clock = getattr(storage, "clock", None)
        self._now: Callable[[], float] = clock.time if clock is not None else time.time
        self._zero_all = rule.threshold == 0
        self._limits = {v: max(n, 1) for v, n in rule.exceptions}
        self._limit = max(rule.threshold, 1)
        self._expiry = rule.duration_s
        self.match = value_matcher(rule)
        # every value limited to the rule's threshold: check() takes its shortest path
        self.plain = self.match is None and not rule.exceptions and not self._zero_all

    def check(
        self, node: ResourceNode | None, t: float, args: Mapping[str, Any] | None, origin: str | None
    ) -> float:
        if type(args) is dict:  # what the engine's callers pass: compiled, a typed lookup
            value = args.get(self.param)
        elif not args:
            return 0.0
        else:
            value = args.get(self.param)
        if type(value) is not str:
            if value is None:
                return 0.0
            if isinstance(value, MULTI):  # every value counts (every SKU of an order)
                match = self.match
                for v in value:
                    v = str(v)
                    if match is None or match(v):
                        self.check_value(v, args, t)
                return 0.0
            value = str(value)
        if self.plain:
            # one value, every value under the rule's threshold (no match, exceptions or zero): a running
            # window is found, counted and compared with no call in between (exact under threads)
            # one lookup, no call (interpreted, a call could let another thread in before the count):
            # a value not seen in a while is the exception
            try:
                w: _Window | None = self.windows.counts[value]
            except KeyError:
                w = None
            if w is not None and w.end > t:
                w.n += 1
                n = w.n
                if n <= self._limit:
                    return 0.0
            else:
                n = self.windows.start(value, t)
                if n <= self._limit:
                    return 0.0
        else:
            match = self.match
            if match is not None and not match(value):
                return 0.0
            # check_value(value, args, t), spelled out for the one-value case (a running window: no call)
            if value in self.zero or (self._zero_all and value not in self.exceptions):
                raise self._blocked(value, args)
            counts = self.windows.counts
            if value in counts and counts[value].end > t:
                w = counts[value]
                w.n += 1
                n = w.n
            else:
                n = self.windows.start(value, t)
            if n <= self._limits.get(value, self._limit):
                return 0.0
        b = self.burst
        if b is not None and self.burst_windows.hit(value, t) <= b.amount:
            return 0.0
        raise self._blocked(value, args)

    def check_value(self, value: str, args: Mapping[str, Any], t: float | None = None) -> None:
        """Count one value at engine time ``t`` (None: now); raises when it is over its limit."""
        if value in self.zero or (self._zero_all and value not in self.exceptions):
            raise self._blocked(value, args)
        if t is None:
            t = self._now()
        if self.windows.hit(value, t) <= self._limits.get(value, self._limit):
            return
        b = self.burst
        if b is not None and self.burst_windows.hit(value, t) <= b.amount:
            return
        raise self._blocked(value, args)

    def _blocked(
        self, value: str, args: Mapping[str, Any], what: str | None = None, retry_s: float | None = None
    ) -> ParamBlocked:
        what = what or f"over {self.rule.limit_for(value)} per {self.rule.duration_s}s"
        exc = ParamBlocked(
            self.resource,
            self.rule,
            float(self.rule.duration_s) if retry_s is None else retry_s,
            args=dict(args),
            detail=f"param rule {self.rule.name}: {self.param}={value} {what} on {self.resource}",
        )
        exc.param_name = self.param  # for the block log
        exc.param_value = value
        return exc


class _ValueLease:
    """One value's window on one node: tokens leased from the shared counter and not yet spent."""

    __slots__ = ("demand", "exhausted", "last_demand", "leased", "left", "low", "passed", "pending", "window")

    def __init__(self) -> None:
        self.window = -1
        self.left = 0  # leased tokens not spent yet
        self.low = 0  # spending down to this many queues a background refill
        self.leased = 0
        self.exhausted = False  # the shared counter of this window is spent
        self.pending = False  # a refill is queued
        self.passed = 0  # fallback: calls admitted this window from the local share
        self.demand = 0  # calls this window (passed + blocked), for the lease size
        self.last_demand = 0

    def roll(self, w: int) -> None:
        self.last_demand = self.demand if w == self.window + 1 else 0
        self.window = w
        self.left = self.leased = self.passed = self.demand = 0
        self.exhausted = False


class ClusterParamChecker:
    """A ``cluster: true`` param rule: each value's threshold across all nodes, with the lease design of
    cluster flow rules (``guardians.cluster.ClusterQps``): per value and epoch second a node leases a few
    tokens at a time from the shared counter ``(rule, value, second)`` (one ``INCR`` by ``k``), spends
    them locally and leases again in the background when half are spent; ``k`` follows the value's
    rate on this node, capped at ``limit × budget / live nodes``, so the fleet never admits more than
    the limit and leaves at most a few unspent tokens. While the storage fails, the node holds its
    share of each value's limit (``Cluster.share``). Memory follows the values of the last seconds."""

    has_exit = False
    MAX_VALUES = 10_000

    def __init__(self, rule: ParamRule, local: ParamChecker, cluster: Any) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.param = rule.param
        self.local = local
        self.match = local.match
        self.cluster = cluster
        self.prefix = cluster.key("param", rule.resource, rule.name)
        self.values: dict[str, _ValueLease] = {}
        self._lock = threading.Lock()

    def check(
        self, node: ResourceNode | None, t: float, args: Mapping[str, Any] | None, origin: str | None
    ) -> float:
        if not args:
            return 0.0
        value = args.get(self.param)
        if value is None:
            return 0.0
        w = int(t)
        for v in values_of(self.param, args, self.match):
            limit = self.rule.limit_for(v)
            if limit == 0:
                raise self.local._blocked(v, args)
            with self._lock:
                ok = self._spend(v, w, t, limit)
            if not ok:
                raise self._block(v, args, w, t, limit)
        return 0.0

    def _spend(self, v: str, w: int, t: float, limit: int) -> bool:
        """Spend one token of value ``v`` (under ``_lock``); False when the value is over its limit."""
        st = self.values.get(v)
        if st is None:
            if len(self.values) >= self.MAX_VALUES:
                self.values = {k: s for k, s in self.values.items() if s.window >= w - 1}
            st = self.values[v] = _ValueLease()
        if st.window != w:
            st.roll(w)
        st.demand += 1
        cl = self.cluster
        if st.left > 0:  # the common case: a leased token
            st.left -= 1
            if st.left <= st.low and not st.pending and not st.exhausted and cl.ok:
                st.pending = True
                cl.submit(functools.partial(self._refill, v, w, limit))  # (no lambda: see _Exact)
            return True
        if cl.ok and not st.exhausted:
            want = self._want(st, t, limit)
            try:
                got = cl.take(f"{self.prefix}:{v}:{w}", want, limit)
            except Exception as exc:
                cl.failed(exc)
            else:
                self._install(st, got, want)
                if st.left > 0:
                    st.left -= 1
                    return True
                return False
        if not cl.ok and st.passed < cl.share(limit):  # fallback: this node's share of the limit
            st.passed += 1
            return True
        return False

    def _want(self, st: _ValueLease, t: float, limit: int) -> int:
        elapsed = max(t - st.window, 0.05)
        return int(self.cluster.lease_size(limit, max(st.last_demand, st.demand / elapsed)))

    @staticmethod
    def _install(st: _ValueLease, got: int, want: int) -> None:
        st.leased += got
        st.left += got
        st.low = want // 2
        if got < want:
            st.exhausted = True

    def _refill(self, v: str, w: int, limit: int) -> None:
        """Background: lease ahead for value ``v`` in window ``w`` (dropped once the window passed)."""
        cl = self.cluster
        with self._lock:
            st = self.values.get(v)
            if st is None or st.window != w or st.exhausted or not cl.ok:
                if st is not None:
                    st.pending = False
                return
            want = self._want(st, cl.clock.time(), limit)
        try:
            got = cl.take(f"{self.prefix}:{v}:{w}", want, limit)
        except Exception as exc:
            cl.failed(exc)
            got = -1
        with self._lock:
            st.pending = False
            if got >= 0 and st.window == w:
                self._install(st, got, want)

    def _block(self, v: str, args: Mapping[str, Any], w: int, t: float, limit: int) -> ParamBlocked:
        cl = self.cluster
        retry = (w + 1.0 - t) or 1.0
        if cl.ok:
            return self.local._blocked(v, args, f"over {limit} per second across all nodes", retry)
        return self.local._blocked(
            v, args, f"over this node's share {cl.share(limit)}/s of {limit}/s across {cl.nodes} live "
            f"nodes (cluster storage unreachable)", retry
        )

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rule": self.rule.name,
                "values": len(self.values),
                "leased": sum(s.leased for s in self.values.values()),
            }


class ConcurrencyParamChecker:
    """``grade: concurrency``: at most ``limit_for(value)`` calls of each value in flight.

    ``check`` only compares; the engine calls ``acquire(args)`` when it counts the pass (under the
    resource's lock, with the checks) and carries the values it returned on the entry/guard frame
    to ``release(values)`` at the exit, so an exit gives back exactly what its entry took (also after
    an error, a fallback, or a rule edit meanwhile). Values at 0 are dropped: memory follows the
    values in flight."""

    has_exit = False
    holds = True

    def __init__(self, rule: ParamRule, local: ParamChecker, counts: dict[str, int] | None = None) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.param = rule.param
        self.local = local
        self.match = local.match
        self.counts: dict[str, int] = counts if counts is not None else {}

    def check(
        self, node: ResourceNode | None, t: float, args: Mapping[str, Any] | None, origin: str | None
    ) -> float:
        if not args:
            return 0.0
        counts = self.counts
        for v in values_of(self.param, args, self.match):
            limit = self.rule.limit_for(v)
            if counts.get(v, 0) >= limit:
                raise self.local._blocked(v, args, f"has {limit} calls in flight (at most {limit})", 1.0)
        return 0.0

    def acquire(self, args: Mapping[str, Any] | None) -> tuple[str, ...]:
        values = values_of(self.param, args, self.match)
        counts = self.counts
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        return values

    def release(self, values: tuple[str, ...]) -> None:
        counts = self.counts
        for v in values:
            n = counts.get(v, 0) - 1
            if n > 0:
                counts[v] = n
            else:
                counts.pop(v, None)

    def in_flight(self, value: str) -> int:
        return self.counts.get(value, 0)


class PacedParamChecker:
    """``behavior: queue``: each value's calls pass evenly spaced at ``duration_s / limit_for(value)``
    seconds; a call waits for its value's turn up to ``max_queue_ms`` (the engine serves the wait
    the check returns), a longer wait is blocked. Sentinel's rate limiter per hot value."""

    has_exit = False

    def __init__(self, rule: ParamRule, local: ParamChecker) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.param = rule.param
        self.local = local
        self.match = local.match
        self.max_wait = (rule.max_queue_ms or 0) / 1000.0
        self.latest: dict[str, float] = {}  # value -> the time its latest admitted call passes

    def check(
        self, node: ResourceNode | None, t: float, args: Mapping[str, Any] | None, origin: str | None
    ) -> float:
        values = values_of(self.param, args, self.match)
        if not values:
            return 0.0
        latest = self.latest
        plan: list[tuple[str, float]] = []
        wait = 0.0
        for v in values:
            limit = self.rule.limit_for(v)
            if limit <= 0:
                raise self.local._blocked(v, args or {})
            cost = self.rule.duration_s / limit
            last = latest.get(v)
            at = t if last is None or last + cost <= t else last + cost
            w = at - t
            if w > self.max_wait:
                raise self.local._blocked(
                    v, args or {}, f"would wait {w * 1000:.0f} ms for its turn (at most "
                    f"{self.rule.max_queue_ms} ms at {limit} per {self.rule.duration_s}s)", w
                )
            plan.append((v, at))
            if w > wait:
                wait = w
        for v, at in plan:  # every value admitted: reserve their turns
            latest[v] = at
        if len(latest) > 10_000:
            horizon = t - self.rule.duration_s
            self.latest = {k: at for k, at in latest.items() if at > horizon}
        return wait
