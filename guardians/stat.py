"""Per-resource statistics: rings of buckets, O(1) per event, bounded memory.

Two levels, as in Sentinel:

* the *second* level is a ring of 2 × 500 ms buckets that every event writes to
  (the flow checks read pass counts from it);
* the *minute* level is a ring of 60 × 1 s buckets. Events never write to it
  directly: a finished 500 ms bucket is *folded* into its second when the ring
  rotates (at most twice a second per resource) or when a reader asks for
  completed seconds. So the hot path touches one small object per event, and a
  collector that reads once a second (or late, up to a minute) loses nothing.

Counters are plain Python ints updated without a lock: each update is a single
attribute store on an object with ``__slots__``, which the GIL keeps whole in
practice; rotation and folding take the node's lock (rare path).
"""

from __future__ import annotations

import threading
from typing import Any

from guardians.snapshot import ResourceSnapshot

_INF = float("inf")
MINUTE_BUCKETS = 60


class Bucket:
    __slots__ = (
        "block_breaker",
        "block_flow",
        "block_param",
        "block_system",
        "concurrency",
        "error",
        "folded",
        "passed",
        "rt_max",
        "rt_min",
        "rt_sum",
        "start",
        "success",
    )

    def __init__(self, start: int = -1) -> None:
        self.reset(start)

    def reset(self, start: int) -> None:
        self.start = start
        self.passed = 0
        self.block_flow = 0
        self.block_breaker = 0
        self.block_system = 0
        self.block_param = 0
        self.success = 0
        self.error = 0
        self.rt_sum = 0.0
        self.rt_min = _INF
        self.rt_max = 0.0
        self.concurrency = 0
        self.folded = False

    def add(self, o: Bucket) -> None:
        self.passed += o.passed
        self.block_flow += o.block_flow
        self.block_breaker += o.block_breaker
        self.block_system += o.block_system
        self.block_param += o.block_param
        self.success += o.success
        self.error += o.error
        self.rt_sum += o.rt_sum
        if o.rt_min < self.rt_min:
            self.rt_min = o.rt_min
        if o.rt_max > self.rt_max:
            self.rt_max = o.rt_max

    @property
    def active(self) -> bool:
        return bool(
            self.passed
            or self.success
            or self.error
            or self.block_flow
            or self.block_breaker
            or self.block_system
            or self.block_param
            or self.concurrency
        )

    @property
    def completed(self) -> int:
        return self.success + self.error

    @property
    def rt_avg(self) -> float:
        n = self.success + self.error
        return self.rt_sum / n if n else 0.0


class ResourceNode:
    """Statistics of one resource (also used for the node-wide inbound totals)."""

    __slots__ = ("_lock", "concurrency", "cur", "end", "h", "half", "minute", "name", "prev_passed")

    def __init__(self, name: str) -> None:
        self.name = name
        self.concurrency = 0
        self.half = [Bucket(-1), Bucket(-1)]
        self.cur = self.half[0]
        self.h: int = -1  # the half-second of ``cur`` (the engine compares it by identity with its own)
        self.prev_passed = 0  # passes of the half-second before ``cur`` (frozen when it rolled out)
        self.end = -1.0  # the current bucket's end (seconds)
        self.minute: list[Bucket | None] = [None] * MINUTE_BUCKETS
        self._lock = threading.Lock()

    # -- hot path -----------------------------------------------------------
    def bucket(self, t: float) -> Bucket:
        """The current 500 ms bucket for time ``t``."""
        if t >= self.end:
            self.roll(t)
        return self.cur

    def roll(self, t: float, h: int | None = None) -> Bucket:
        """Rotate the half-second ring to half-second ``h`` = int(t·2) (rare path: twice a second at most).

        Time never rolls the ring backwards: an earlier ``t`` keeps writing to the current bucket.
        """
        if h is None:
            h = int(t * 2)
        with self._lock:
            cur = self.cur
            if h > cur.start:
                b = self.half[h & 1]
                if b.start != h:
                    if b.start >= 0 and not b.folded:
                        self._fold(b)
                    b.reset(h)
                prev = self.half[(h & 1) ^ 1]
                self.prev_passed = prev.passed if prev.start == h - 1 else 0
                self.cur = cur = b
                self.end = (h + 1) / 2
            self.h = h
            return cur

    def current_pass_count(self) -> int:
        """Passes in the sliding 1 s window, for a node already rolled to now (the hot path)."""
        return self.cur.passed + self.prev_passed

    def pass_count(self, h: int) -> int:
        """Calls passed in the 1 s window ending with half-second ``h``."""
        half = self.half
        a = half[h & 1]
        n = a.passed if a.start == h else 0
        o = half[(h & 1) ^ 1]
        if o.start == h - 1:
            n += o.passed
        return n

    def window(self, t: float) -> tuple[Bucket, Bucket | None]:
        h = int(t * 2)
        a = self.half[h & 1]
        o = self.half[(h & 1) ^ 1]
        return (a if a.start == h else Bucket(h)), (o if o.start == h - 1 else None)

    # -- folding into the minute ring --------------------------------------
    def _fold(self, b: Bucket) -> None:
        s = b.start >> 1
        i = s % MINUTE_BUCKETS
        m = self.minute[i]
        if m is None:
            m = self.minute[i] = Bucket(s)
        elif m.start != s:
            if m.start > s:
                b.folded = True
                return  # older than the ring
            m.reset(s)
        m.add(b)
        if self.concurrency > m.concurrency:
            m.concurrency = self.concurrency
        b.folded = True

    def flush(self, t: float) -> None:
        """Fold every half-second bucket whose second is over (readers call this)."""
        sec = int(t)
        with self._lock:
            for b in self.half:
                if b.start >= 0 and not b.folded and (b.start >> 1) < sec:
                    self._fold(b)

    def completed_seconds(self, after_second: int, t: float) -> list[ResourceSnapshot]:
        self.flush(t)
        sec = int(t)
        out = []
        for m in self.minute:
            if m is not None and after_second < m.start < sec and m.active:
                out.append(self._snap(m))
        out.sort(key=lambda s: s.second)
        return out

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

    # -- readers for checks and /ops/stats -----------------------------------
    def last_second(self, t: float) -> Bucket:
        """The sliding 1 s window (both half buckets) summed into a fresh bucket."""
        a, o = self.window(t)
        total = Bucket(a.start)
        total.add(a)
        if o is not None:
            total.add(o)
        total.concurrency = self.concurrency
        return total

    def minute_buckets(self, t: float) -> list[Bucket]:
        """Completed seconds of the last minute (for BBR: max success QPS, min RT)."""
        sec = int(t)
        return [m for m in self.minute if m is not None and sec - MINUTE_BUCKETS <= m.start < sec]

    def stats(self, t: float) -> dict[str, Any]:
        self.flush(t)
        w = self.last_second(t)
        minute = Bucket(0)
        for m in self.minute_buckets(t):
            minute.add(m)
        n = w.success + w.error
        return {
            "pass_qps": w.passed,
            "block_qps": w.block_flow + w.block_breaker + w.block_system + w.block_param,
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
                "blocked": minute.block_flow
                + minute.block_breaker
                + minute.block_system
                + minute.block_param,
                "success": minute.success,
                "error": minute.error,
                "rt_avg_ms": round(minute.rt_avg, 3),
            },
        }
