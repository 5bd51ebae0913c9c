"""Where points come from: the guardians' per-second snapshot and breaker transitions, the
trading core's domain events (aggregated per shop and second), and the host (psutil).

Each source turns what it saw into validated points when asked (``collect``/``drain``); the
collection runtime puts them into the outbox on a 1-second job.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collectors.errors import PointError
from collectors.points import (
    breaker_event_point,
    from_epoch_seconds,
    host_point,
    make_point,
    resource_stats_point,
)
from collectors.query import Point
from domain import events as ev

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
        return points


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


def _tag(value: str | None) -> str:
    return value if value else "unknown"


@dataclass
class _Orders:
    placed: int = 0
    paid: int = 0
    cancelled: int = 0
    gmv_cents: int = 0
    paid_cents: int = 0
    discount_cents: int = 0
    items: int = 0


@dataclass
class _Refunds:
    requested: int = 0
    completed: int = 0
    amount_cents: int = 0


@dataclass
class _Payments:
    success: int = 0
    failure: int = 0
    latency_ms: list[float] = field(default_factory=list)


class BusinessAggregator:
    """Subscribed to the trading core's domain events; aggregates per second into points.

    - ``orders`` per (shop, channel, tx_type): placed, paid, cancelled (counts), gmv (amount
      buyers pay for placed sub-orders), paid_amount, discount (currency units = cents / 100),
      items (units placed);
    - ``refunds`` per shop: requested, completed (counts), amount (completed, currency units);
    - ``payments`` per node: success, failure (counts), latency_ms (mean of that second).

    A second is emitted once, after it is complete (``drain``). An event that arrives after its
    second was emitted is counted in the next open second instead — never re-emitting a second,
    which would overwrite the earlier point in the store.
    """

    def __init__(self, *, app: str, instance: str) -> None:
        self.app = app
        self.instance = instance
        self._lock = threading.Lock()
        self._orders: dict[tuple[int, str, str, str], _Orders] = defaultdict(_Orders)
        self._refunds: dict[tuple[int, str], _Refunds] = defaultdict(_Refunds)
        self._payments: dict[int, _Payments] = defaultdict(_Payments)
        self.emitted_through = 0  # every second <= this was drained
        self.ignored = 0

    def _second(self, at: datetime) -> int:
        second = int(at.timestamp())
        return second if second > self.emitted_through else self.emitted_through + 1

    def on_event(self, event: Any) -> None:
        with self._lock:
            s = self._second(event.occurred_at)
            if isinstance(event, ev.OrderPlaced | ev.OrderPaid | ev.OrderCancelled):
                o = self._orders[(s, _tag(event.shop_id), _tag(event.channel), _tag(event.tx_type))]
                if isinstance(event, ev.OrderPlaced):
                    o.placed += 1
                    o.gmv_cents += event.amount_cents
                    o.discount_cents += event.discount_cents
                    o.items += event.items
                elif isinstance(event, ev.OrderPaid):
                    o.paid += 1
                    o.paid_cents += event.amount_cents
                else:
                    o.cancelled += 1
            elif isinstance(event, ev.RefundRequested | ev.RefundCompleted):
                r = self._refunds[(s, _tag(event.shop_id))]
                if isinstance(event, ev.RefundRequested):
                    r.requested += 1
                else:
                    r.completed += 1
                    r.amount_cents += event.amount_cents
            elif isinstance(event, ev.PaymentSucceeded | ev.PaymentFailed):
                p = self._payments[s]
                if isinstance(event, ev.PaymentSucceeded):
                    p.success += 1
                else:
                    p.failure += 1
                p.latency_ms.append(float(event.latency_ms))
            else:
                self.ignored += 1

    def drain(self, now: datetime, *, everything: bool = False) -> list[Point]:
        """Points for every complete second before ``now`` (or every second, at shutdown)."""
        limit = int(now.timestamp()) - 1 if not everything else 2**62
        points: list[Point] = []
        with self._lock:
            for key in sorted(k for k in self._orders if k[0] <= limit):
                o = self._orders.pop(key)
                s, shop, channel, tx_type = key
                points.append(
                    make_point(
                        "orders",
                        {"app": self.app, "shop": shop, "channel": channel, "tx_type": tx_type},
                        {
                            "placed": o.placed,
                            "paid": o.paid,
                            "cancelled": o.cancelled,
                            "gmv": o.gmv_cents / 100,
                            "paid_amount": o.paid_cents / 100,
                            "discount": o.discount_cents / 100,
                            "items": o.items,
                        },
                        from_epoch_seconds(s),
                    )
                )
            for key in sorted(k for k in self._refunds if k[0] <= limit):
                r = self._refunds.pop(key)
                points.append(
                    make_point(
                        "refunds",
                        {"app": self.app, "shop": key[1]},
                        {"requested": r.requested, "completed": r.completed, "amount": r.amount_cents / 100},
                        from_epoch_seconds(key[0]),
                    )
                )
            for s in sorted(k for k in self._payments if k <= limit):
                p = self._payments.pop(s)
                fields: dict[str, float] = {"success": p.success, "failure": p.failure}
                if p.latency_ms:
                    fields["latency_ms"] = sum(p.latency_ms) / len(p.latency_ms)
                points.append(
                    make_point(
                        "payments",
                        {"app": self.app, "instance": self.instance},
                        fields,
                        from_epoch_seconds(s),
                    )
                )
            if everything:
                seconds = [p.time.timestamp() for p in points]
                if seconds:
                    self.emitted_through = max(self.emitted_through, int(max(seconds)))
            else:
                self.emitted_through = max(self.emitted_through, limit)
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
