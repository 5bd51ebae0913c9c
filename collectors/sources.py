"""Where a node's points come from: the guardians' per-second snapshot and breaker transitions,
the shop's refusals reported by the node's HTTP layer, and the host (psutil).

Business figures (``orders``, ``refunds``, ``payments``) are *not* made here: they come from the
trading DB's event journal through the journal relay (``collectors/relay.py``). Summing them in a
node's memory lost the seconds a SIGKILLed node held and let two nodes' untagged points of the same
second overwrite each other in the store.

Each source turns what it saw into validated points when asked (``collect``/``drain``); the
collection runtime puts them into the outbox on a 1-second job.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from collectors.errors import PointError
from collectors.points import (
    block_point,
    breaker_event_point,
    host_point,
    refusal_point,
    resource_stats_point,
)
from collectors.query import Point

log = logging.getLogger(__name__)


class GuardianSource:
    """Reads every completed 1-second bucket of the guardians engine exactly once.

    ``engine.metrics_since(after)`` returns buckets newer than ``after`` from its 60 × 1 s window,
    so a collector that runs late (a GC pause, a slow flush) loses nothing younger than a minute.
    """

    def __init__(self, engine: Any, *, app: str, instance: str) -> None:
        self.engine = engine
        self.app = app
        self.instance = instance
        self.after_second = 0
        self.skipped = 0

    def collect(self) -> list[Point]:
        snaps = self.engine.metrics_since(self.after_second)
        points = []
        for snap in snaps:
            try:
                points.append(resource_stats_point(snap, app=self.app, instance=self.instance))
            except PointError as exc:
                self.skipped += 1
                log.error("skipping snapshot of %r at %s: %s", snap.resource, snap.second, exc)
            if snap.second > self.after_second:
                self.after_second = snap.second
        points.extend(self._blocks())
        return points

    def _blocks(self) -> list[Point]:
        """The block log's completed seconds as ``blocks`` points."""
        log_ = getattr(self.engine, "block_log", None)
        if log_ is None:
            return []
        out = []
        for second, key, n in log_.drain(int(self.engine.clock.time())):
            try:
                out.append(block_point(second, key, n, app=self.app, instance=self.instance))
            except PointError as exc:
                self.skipped += 1
                log.error("skipping block-log row %r at %s: %s", key, second, exc)
        return out


class BreakerSource:
    """A breaker listener (``engine.add_breaker_listener(source.on_change)``) that buffers transitions.

    The listener runs on the request path, so it only appends to memory; ``drain`` (on the
    1-second job) turns them into ``breaker_events`` points.
    """

    def __init__(self, *, app: str, instance: str) -> None:
        self.app = app
        self.instance = instance
        self._pending: list[Any] = []
        self._lock = threading.Lock()

    def on_change(self, event: Any) -> None:
        with self._lock:
            self._pending.append(event)

    def drain(self) -> list[Point]:
        with self._lock:
            pending, self._pending = self._pending, []
        points = []
        for event in pending:
            try:
                points.append(breaker_event_point(event, app=self.app, instance=self.instance))
            except PointError as exc:
                log.error("skipping breaker event %r: %s", event, exc)
        return points


class RefusalSource:
    """The core's ``RefusalRecorder`` port (``domain.ports``): counts refusals per second in memory.

    ``record`` runs on the request path and only counts; ``drain`` (the 1-second job) turns every
    *completed* second (before the clock's current one) into ``refusals`` points exactly once, so a
    (series, second) is written once and never overwritten by a partial count. ``final=True`` (at
    stop) drains the running second too. The clock is read under the lock, so a refusal counted
    after a drain always lands in a second that drain did not take.
    """

    def __init__(self, *, app: str, instance: str, clock: Any) -> None:
        self.app = app
        self.instance = instance
        self.clock = clock
        self._counts: dict[tuple[int, str, str], int] = {}
        self._lock = threading.Lock()
        self.recorded = 0

    def record(self, resource: str, reason: str) -> None:
        with self._lock:
            second = int(self.clock.now().timestamp())
            key = (second, resource or "unknown", reason or "unknown")
            self._counts[key] = self._counts.get(key, 0) + 1
            self.recorded += 1

    def drain(self, *, final: bool = False) -> list[Point]:
        with self._lock:
            current = int(self.clock.now().timestamp())
            done = [k for k in self._counts if final or k[0] < current]
            taken = {k: self._counts.pop(k) for k in done}
        points = []
        for (second, resource, reason), count in sorted(taken.items()):
            try:
                points.append(refusal_point(app=self.app, instance=self.instance, resource=resource,
                                            reason=reason, count=count, second=second))
            except PointError as exc:
                log.error("skipping %d refusals of %r (%r): %s", count, resource, reason, exc)
        return points


def _psutil_probe() -> tuple[float, float, float]:
    import psutil

    cpu = psutil.cpu_percent(interval=None)
    mem = psutil.virtual_memory().percent
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return cpu, mem, load


class HostSource:
    """Host metrics via psutil: CPU %, memory used %, 1-minute load average."""

    def __init__(
        self, *, app: str, instance: str, probe: Callable[[], tuple[float, float, float]] | None = None
    ) -> None:
        self.app = app
        self.instance = instance
        self.probe = probe or _psutil_probe
        if probe is None:
            self.probe()  # psutil's first cpu_percent() call only sets the baseline

    def collect(self, now: datetime) -> list[Point]:
        cpu, mem, load = self.probe()
        return [host_point(app=self.app, instance=self.instance, cpu=cpu, mem=mem, load=load, time=now)]
