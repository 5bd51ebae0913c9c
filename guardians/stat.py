"""Per-resource statistics: a ring of buckets, O(1) per event, bounded memory.

Each resource keeps a ring of 500 ms records covering the last minute: the
*second* level (2 × 500 ms, the sliding 1 s window the flow checks read) is the
current half-second plus the newest record, the *minute* level (60 × 1 s, read by
collectors and BBR) is the ring read two halves per second. Nothing is folded on
the hot path: the current half-second's counters are plain attributes of the
node (a call reads and writes one object); when the half second changes they are
copied into the ring — a new ``Record`` replacing the one a minute older — and
reset, and readers sum the two halves of each completed second when they ask.

Counters of a resource whose checks call out before the pass count are updated under ``glock`` by
the engine (check and count atomically, so limits hold exactly under threads; see
``guardians.engine``); otherwise they are counted without a lock (a compare and an attribute
update with no call between them: no other thread runs in between, interpreted or compiled — see
``guardians.engine``); rolling to the next half-second makes no call between its check and its
last reset, so it is kept whole too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from guardians.snapshot import ResourceSnapshot

if TYPE_CHECKING:
    from guardians.engine import _Slot

# (Final: compiled, these are C constants, not a module dict lookup per use)
_INF: Final = float("inf")
MINUTE_SECONDS: Final = 60
RING: Final = 2 * MINUTE_SECONDS + 4  # a minute of half-seconds, plus the current ones

# the node attribute counting each kind of block (an unknown kind counts as param)
_BLOCK_FIELD = {k: f"block_{k}" for k in ("flow", "breaker", "system", "param")}
_BLOCK_FIELD["authority"] = "block_flow"  # counted with flow blocks (the block log has the kind)


class Record:
    """One completed half-second of a resource, as the ring keeps it (the current half-second is the
    node's own attributes). Never changed once made: a reader holding one reads one half-second whole.
    Compiled, its fields are stored unboxed in the one object (a tuple would box four of them: making a
    record would allocate five objects)."""

    __slots__ = (
        "block_breaker",
        "block_flow",
        "block_param",
        "block_system",
        "concurrency",
        "error",
        "passed",
        "rt_max",
        "rt_min",
        "rt_sum",
        "start",
        "success",
    )

    def __init__(
        self,
        start: int,
        passed: int,
        success: int,
        error: int,
        rt_sum: float,
        block_flow: int,
        block_breaker: int,
        block_system: int,
        block_param: int,
        rt_max: float,
        rt_min: float,
        concurrency: int,
    ) -> None:
        self.start = start  # the half-second number, int(t * 2)
        self.passed = passed
        self.success = success
        self.error = error
        self.rt_sum = rt_sum
        self.block_flow = block_flow
        self.block_breaker = block_breaker
        self.block_system = block_system
        self.block_param = block_param
        self.rt_max = rt_max
        self.rt_min = rt_min
        self.concurrency = concurrency  # when the half-second ended


class Bucket:
    """A read-side view: one or more records summed (a second, the sliding window, a minute)."""

    __slots__ = (
        "block_breaker",
        "block_flow",
        "block_param",
        "block_system",
        "concurrency",
        "error",
        "passed",
        "rt_max",
        "rt_min",
        "rt_sum",
        "start",
        "success",
    )

    def __init__(self, start: int = -1) -> None:
        self.start = start
        self.passed = self.success = self.error = 0
        self.block_flow = self.block_breaker = self.block_system = self.block_param = 0
        self.rt_sum = 0.0
        self.rt_min = _INF
        self.rt_max = 0.0
        self.concurrency = 0

    def add(self, r: Record) -> Bucket:
        self.passed += r.passed
        self.success += r.success
        self.error += r.error
        self.rt_sum += r.rt_sum
        self.block_flow += r.block_flow
        self.block_breaker += r.block_breaker
        self.block_system += r.block_system
        self.block_param += r.block_param
        if r.rt_max > self.rt_max:
            self.rt_max = r.rt_max
        if r.rt_min < self.rt_min:
            self.rt_min = r.rt_min
        if r.concurrency > self.concurrency:
            self.concurrency = r.concurrency
        return self

    def merge(self, o: Bucket) -> Bucket:
        for f in (
            "passed",
            "success",
            "error",
            "rt_sum",
            "block_flow",
            "block_breaker",
            "block_system",
            "block_param",
        ):
            setattr(self, f, getattr(self, f) + getattr(o, f))
        self.rt_max = max(self.rt_max, o.rt_max)
        self.rt_min = min(self.rt_min, o.rt_min)
        self.concurrency = max(self.concurrency, o.concurrency)
        return self

    @property
    def blocked(self) -> int:
        return self.block_flow + self.block_breaker + self.block_system + self.block_param

    @property
    def active(self) -> bool:
        return bool(self.passed or self.success or self.error or self.blocked or self.concurrency)

    @property
    def completed(self) -> int:
        return self.success + self.error

    @property
    def rt_avg(self) -> float:
        n = self.success + self.error
        return self.rt_sum / n if n else 0.0


class ResourceNode:
    """Statistics of one resource (also used for the node-wide inbound totals).

    The counters of the current half-second are plain attributes of the node (one
    object per call, no record to find); when the half-second changes they are
    written into the ring (reusing, in place, the record of the same slot a minute
    earlier) and start again from zero. ``gate`` is True while every breaker bound to
    the resource is closed, so a call through a closed breaker reads only this object.
    The engine keeps its per-resource chain here too (``chain`` and copies of the fields a
    guarded call reads), so a call reads this one object: with 10,000 resources each call
    touches fewer cold cache lines and pages.
    """

    # Layout: the fields a guarded call reads and writes come first, together (interpreted, the
    # ``__slots__`` order; compiled, mypyc lays the fields out in the order of the annotations below,
    # then the rest of ``__init__``). Not padded to a 256-byte block (a cache line per node): the
    # power-of-two stride puts every node's hot lines in half of the cache's sets, and the bench runs
    # with it were no better (guardians/README.md, "Cost").
    __slots__ = (  # noqa: RUF023 - hot fields first, see above
        "h",
        "passed",
        "prev_passed",
        "concurrency",
        "qps_limit",
        "free",
        "slow",
        "exits",
        "success",
        "rt_sum",
        "rt_max",
        "rt_min",
        "gate",
        "chain",
        "error",
        "block_flow",
        "block_breaker",
        "block_system",
        "block_param",
        "start",
        "ring",
        "breakers",
        "name",
        "_lock",
        "glock",
        "key",  # (read only compiled: interpreted, the engine finds nodes by the dict)
    )
    # the string object a caller named this resource with last (equal to ``name``): the engine's
    # identity cache of nodes (``guardians.engine.Engine._cached_node``)
    key: str
    h: int  # the engine's half-second this node was last rolled to
    passed: int
    prev_passed: int  # passes of the half-second before ``start`` (frozen when it rolled out)
    concurrency: int
    # the copies of the hot fields of the engine's chain a guarded call reads, kept here so that a call
    # reads one object (``guardians.engine._Slot.install``). Typed so that compiled, the counters, ``h``,
    # ``qps_limit`` (-1: none), ``slow`` (+inf: no breaker counts a slow call) and the response-time
    # floats are stored unboxed in the node, not as objects elsewhere in memory
    qps_limit: int
    free: tuple[Any, ...] | None
    slow: float
    exits: tuple[Any, ...]
    success: int
    rt_sum: float
    rt_max: float
    rt_min: float
    gate: bool  # every bound breaker closed (see ``bind``)
    # the engine's chain of this resource (``guardians.engine._Slot``), set by its ``install`` (read only
    # by the engine, for nodes it created and installed a chain on)
    chain: _Slot

    def __init__(self, name: str) -> None:
        self.key = name
        self.h = -1
        self.passed = 0
        self.prev_passed = 0
        self.concurrency = 0
        self.qps_limit = -1  # as set here: no rules
        self.free = ()
        self.slow = _INF
        self.exits = ()
        self.gate = True
        self.success = 0
        self.rt_sum = 0.0
        self.rt_max = 0.0
        self.rt_min = _INF
        self.error = 0
        self.block_flow = self.block_breaker = self.block_system = self.block_param = 0
        self.start = -1  # the half-second the counters belong to
        self.ring: list[Record | None] = [None] * RING
        self.breakers: tuple[Any, ...] = ()
        self.name = name
        self._lock = threading.Lock()
        # held by the engine from a limited resource's checks to its pass count (and around its
        # concurrency decrement): a QPS or concurrency limit holds exactly under any number of threads
        self.glock = threading.Lock()

    # -- breakers -----------------------------------------------------------
    def bind(self, breakers: tuple[Any, ...]) -> None:
        """The breakers in force on this resource (objects with ``state``); they call ``regate``
        after every transition."""
        with self._lock:
            for b in breakers:
                b.gate_node = self
            self.breakers = breakers
            self.gate = all(b.state == "closed" for b in breakers)

    def regate(self) -> None:
        with self._lock:
            self.gate = all(b.state == "closed" for b in self.breakers)

    # -- hot path -----------------------------------------------------------
    def count_block(self, kind: str) -> None:
        name = _BLOCK_FIELD.get(kind, "block_param")
        setattr(self, name, getattr(self, name) + 1)

    def roll(self, t: float, h: int = -1) -> None:
        """Move to half-second ``h`` = int(t·2) (computed when not given): the counters go to the ring,
        replacing the record a minute older, and start again from zero.

        Time never rolls backwards: an earlier ``t`` keeps counting in the current half-second.
        No lock: from the check to the last reset the counters are only read into locals and reset,
        with no call in between, so no other thread runs in between — interpreted, the GIL switches
        threads only at calls and backward jumps; compiled, this is native code that calls nothing.
        Two threads rolling at once roll once, and no count slips between the copy and the reset.
        The record is made after that (making it is a call, and may collect garbage).
        """
        if h < 0:
            h = int(t * 2)
        start = self.start
        if h <= start:
            self.h = h
            return
        passed, success, error, rt_sum = self.passed, self.success, self.error, self.rt_sum
        bf, bb, bs, bp = self.block_flow, self.block_breaker, self.block_system, self.block_param
        rt_max, rt_min, conc = self.rt_max, self.rt_min, self.concurrency
        if start >= 0:
            self.prev_passed = passed if start == h - 1 else 0
        self.start = h
        self.passed = self.success = self.error = 0
        self.block_flow = self.block_breaker = self.block_system = self.block_param = 0
        self.rt_sum = self.rt_max = 0.0
        self.rt_min = _INF
        self.h = h
        if start >= 0:
            # a new record replaces the one a minute older (made in memory the allocator just handed
            # back, warm, where copying into the old record would touch it, cold)
            self.ring[start % RING] = Record(
                start, passed, success, error, rt_sum, bf, bb, bs, bp, rt_max, rt_min, conc if conc > 0 else 0
            )

    def current(self) -> Record:
        """A copy of the current half-second's record."""
        return Record(
            self.start,
            self.passed,
            self.success,
            self.error,
            self.rt_sum,
            self.block_flow,
            self.block_breaker,
            self.block_system,
            self.block_param,
            self.rt_max,
            self.rt_min,
            0,
        )

    def current_pass_count(self) -> int:
        """Passes in the sliding 1 s window, for a node already rolled to now (the hot path)."""
        return self.passed + self.prev_passed

    def _record(self, h: int) -> Record | None:
        if h == self.start:
            cur = self.current()
            if cur.start == h:  # else it rolled meanwhile: the ring has it
                return cur
        r = self.ring[h % RING]
        return r if r is not None and r.start == h else None

    def pass_count(self, h: int) -> int:
        """Calls passed in the 1 s window ending with half-second ``h``."""
        n = 0
        for r in (self._record(h), self._record(h - 1)):
            if r is not None:
                n += r.passed
        return n

    # -- readers ------------------------------------------------------------
    def second(self, s: int) -> Bucket | None:
        a, b = self._record(2 * s), self._record(2 * s + 1)
        if a is None and b is None:
            return None
        out = Bucket(s)
        if a is not None:
            out.add(a)
        if b is not None:
            out.add(b)
        return out

    def _completed(self, after_second: int, t: float) -> Iterator[Bucket]:
        sec = int(t)
        start = self.start
        if start < 0 or (start >> 1) <= after_second:
            return  # nothing happened since
        for s in range(max(after_second + 1, sec - MINUTE_SECONDS), sec):
            b = self.second(s)
            if b is not None:
                if b.concurrency == 0 and start >> 1 == s:
                    b.concurrency = self.concurrency
                yield b

    def completed_seconds(self, after_second: int, t: float) -> list[ResourceSnapshot]:
        """Snapshots of every completed second newer than ``after_second`` (within the last minute)."""
        return [self._snap(b) for b in self._completed(after_second, t) if b.active]

    def _snap(self, m: Bucket) -> ResourceSnapshot:
        n = m.success + m.error
        return ResourceSnapshot(
            resource=self.name,
            second=m.start,
            passed=m.passed,
            block_flow=m.block_flow,
            block_breaker=m.block_breaker,
            block_system=m.block_system,
            block_param=m.block_param,
            success=m.success,
            error=m.error,
            rt_avg_ms=round(m.rt_sum / n, 3) if n else 0.0,
            rt_max_ms=round(m.rt_max, 3),
            rt_min_ms=round(m.rt_min, 3) if n else 0.0,
            concurrency=m.concurrency,
        )

    def last_second(self, t: float) -> Bucket:
        """The sliding 1 s window (the current and the previous half-second) summed."""
        h = int(t * 2)
        total = Bucket(h)
        for r in (self._record(h), self._record(h - 1)):
            if r is not None:
                total.add(r)
        total.concurrency = self.concurrency
        return total

    def minute_buckets(self, t: float) -> list[Bucket]:
        """Completed seconds of the last minute (for BBR: max success QPS, min RT)."""
        return list(self._completed(int(t) - MINUTE_SECONDS - 1, t))

    def flush(self, t: float) -> None:
        """Kept for callers of the earlier API: nothing is pending any more."""

    def stats(self, t: float) -> dict[str, Any]:
        w = self.last_second(t)
        minute = Bucket(0)
        for m in self.minute_buckets(t):
            minute.merge(m)
        n = w.success + w.error
        return {
            "pass_qps": w.passed,
            "block_qps": w.blocked,
            "block_flow_qps": w.block_flow,
            "block_breaker_qps": w.block_breaker,
            "block_system_qps": w.block_system,
            "block_param_qps": w.block_param,
            "success_qps": w.success,
            "error_qps": w.error,
            "rt_avg_ms": round(w.rt_sum / n, 3) if n else 0.0,
            "rt_max_ms": round(w.rt_max, 3),
            "rt_min_ms": round(w.rt_min, 3) if n else 0.0,
            "concurrency": self.concurrency,
            "minute": {
                "passed": minute.passed,
                "blocked": minute.blocked,
                "success": minute.success,
                "error": minute.error,
                "rt_avg_ms": round(minute.rt_avg, 3),
            },
        }
