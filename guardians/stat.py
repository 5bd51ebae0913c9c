"""Per-resource statistics: a ring of buckets, O(1) per event, bounded memory.

Each resource keeps a ring of 500 ms records covering the last minute: the
*second* level (2 × 500 ms, the sliding 1 s window the flow checks read) is the
newest two records, the *minute* level (60 × 1 s, read by collectors and BBR) is
the ring read two halves per second. Nothing is copied or folded on the hot path:
a record is a small plain list (cheap to create, fast to index); when the half
second changes, the next record replaces the oldest in the ring (one list copy),
and readers sum the two halves of each completed second when they ask.

Counters are updated without a lock (one list item store each, which the GIL keeps
whole in practice); rotating the ring takes the node's lock (rare path).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from guardians.snapshot import ResourceSnapshot

_INF = float("inf")
MINUTE_SECONDS = 60
RING = 2 * MINUTE_SECONDS + 4  # a minute of half-seconds, plus the current ones

# Indexes of a half-second record (a list). The engine's hot path uses the literals.
START = 0  # the half-second number, int(t * 2)
PASSED = 1
SUCCESS = 2
ERROR = 3
RT_SUM = 4
BLOCK_FLOW = 5
BLOCK_BREAKER = 6
BLOCK_SYSTEM = 7
BLOCK_PARAM = 8
RT_MAX = 9
RT_MIN = 10
CONC = 11  # concurrency when the half-second ended
_TEMPLATE: list[Any] = [-1, 0, 0, 0, 0.0, 0, 0, 0, 0, 0.0, _INF, 0]
_BLOCK_INDEX = {"flow": BLOCK_FLOW, "breaker": BLOCK_BREAKER, "system": BLOCK_SYSTEM, "param": BLOCK_PARAM}


def new_record(h: int) -> list[Any]:
    r = _TEMPLATE.copy()
    r[START] = h
    return r


def count_block(record: list[Any], kind: str) -> None:
    record[_BLOCK_INDEX.get(kind, BLOCK_PARAM)] += 1


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

    def add(self, r: list[Any]) -> Bucket:
        self.passed += r[PASSED]
        self.success += r[SUCCESS]
        self.error += r[ERROR]
        self.rt_sum += r[RT_SUM]
        self.block_flow += r[BLOCK_FLOW]
        self.block_breaker += r[BLOCK_BREAKER]
        self.block_system += r[BLOCK_SYSTEM]
        self.block_param += r[BLOCK_PARAM]
        if r[RT_MAX] > self.rt_max:
            self.rt_max = r[RT_MAX]
        if r[RT_MIN] < self.rt_min:
            self.rt_min = r[RT_MIN]
        if r[CONC] > self.concurrency:
            self.concurrency = r[CONC]
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
    """Statistics of one resource (also used for the node-wide inbound totals)."""

    __slots__ = ("h", "cur", "prev_passed", "concurrency", "end", "ring", "name", "_lock")  # noqa: RUF023

    def __init__(self, name: str) -> None:
        self.name = name
        self.concurrency = 0
        self.ring: list[list[Any] | None] = [None] * RING
        self.cur = new_record(-1)
        self.h: int = -1  # the half-second of ``cur`` (the engine compares it by identity with its own)
        self.prev_passed = 0  # passes of the half-second before ``cur`` (frozen when it rolled out)
        self.end = -1.0  # the current record's end (seconds)
        self._lock = threading.Lock()

    # -- hot path -----------------------------------------------------------
    def bucket(self, t: float) -> list[Any]:
        """The current 500 ms record for time ``t``."""
        if t >= self.end:
            self.roll(t)
        return self.cur

    def roll(self, t: float, h: int | None = None) -> list[Any]:
        """Move to half-second ``h`` = int(t·2): a fresh record replaces the oldest in the ring.

        Time never rolls the ring backwards: an earlier ``t`` keeps writing to the current record.
        """
        if h is None:
            h = int(t * 2)
        with self._lock:
            cur = self.cur
            if h > cur[START]:
                if self.concurrency > cur[CONC]:
                    cur[CONC] = self.concurrency
                new = _TEMPLATE.copy()
                new[START] = h
                self.ring[h % RING] = new
                self.prev_passed = cur[PASSED] if cur[START] == h - 1 else 0
                self.cur = cur = new
                self.end = (h + 1) / 2
            self.h = h
            return cur

    def current_pass_count(self) -> int:
        """Passes in the sliding 1 s window, for a node already rolled to now (the hot path)."""
        return self.cur[PASSED] + self.prev_passed

    def _record(self, h: int) -> list[Any] | None:
        r = self.ring[h % RING]
        return r if r is not None and r[START] == h else None

    def pass_count(self, h: int) -> int:
        """Calls passed in the 1 s window ending with half-second ``h``."""
        n = 0
        for r in (self._record(h), self._record(h - 1)):
            if r is not None:
                n += r[PASSED]
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
        if self.cur[START] < 0 or (self.cur[START] >> 1) <= after_second:
            return  # nothing happened since
        for s in range(max(after_second + 1, sec - MINUTE_SECONDS), sec):
            b = self.second(s)
            if b is not None:
                if b.concurrency == 0 and self.cur[START] >> 1 == s:
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
