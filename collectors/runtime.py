"""The in-node collection pipeline: sources → durable outbox → flusher → metric store.

``Collection`` owns the jobs, run on an APScheduler ``BackgroundScheduler``:

- ``tick`` (every ``snapshot_interval_s``, 1 s): guardians snapshot + breaker transitions + the
  shop's refusals (``refusals``: the core's ``RefusalRecorder`` port) → outbox
  (business figures are not the node's: the journal relay makes them from ``domain_events``);
- ``flush`` (every ``flush_interval_s``): outbox → store, oldest first, until empty or the
  store fails (the points stay and are retried next time);
- ``collect_host`` (every ``host_interval_s``): host metrics and the pipeline's own
  ``collector`` point (outbox depth, dropped, quarantined);
- ``maintain`` (every ``maintenance_interval_s``, embedded store only): rollups and retention.

Every job is a plain method, so tests drive them directly on a fake clock; ``health()`` feeds
``/ops/health``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

from collectors.errors import PointError
from collectors.outbox import Flusher, Outbox
from collectors.points import make_point
from collectors.query import MetricStore, Point
from collectors.sources import BreakerSource, GuardianSource, HostSource, RefusalSource
from common.clock import SystemClock

log = logging.getLogger(__name__)


def default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Collection:
    """Collection for one node process. ``start()`` schedules the jobs; ``stop()`` drains and closes."""

    def __init__(
        self,
        store: MetricStore,
        outbox: Outbox | str | os.PathLike[str],
        *,
        app: str = "tradeguard",
        instance: str | None = None,
        engine: Any = None,
        clock: Any = None,
        snapshot_interval_s: float = 1.0,
        flush_interval_s: float = 1.0,
        host_interval_s: float = 10.0,
        maintenance_interval_s: float = 60.0,
        batch_size: int = 5000,
        max_points: int = 2_000_000,
        host_probe: Any = None,
        collect_host_metrics: bool = True,
    ) -> None:
        self.store = store
        self.outbox = outbox if isinstance(outbox, Outbox) else Outbox(outbox, max_points=max_points)
        self.app = app
        self.instance = instance or default_instance()
        self.clock = clock or SystemClock()
        self.flusher = Flusher(self.outbox, store, clock=self.clock, batch_size=batch_size)
        self.guardians = (
            GuardianSource(engine, app=app, instance=self.instance) if engine is not None else None
        )
        self.breakers = BreakerSource(app=app, instance=self.instance)
        if engine is not None:
            engine.add_breaker_listener(self.breakers.on_change)
        # the trading core's RefusalRecorder port (domain.ports): plugged into the HTTP layer by bootstrap
        self.refusals = RefusalSource(app=app, instance=self.instance, clock=self.clock)
        self.host = (
            HostSource(app=app, instance=self.instance, probe=host_probe) if collect_host_metrics else None
        )
        self.intervals = {
            "tick": snapshot_interval_s,
            "flush": flush_interval_s,
            "collect_host": host_interval_s,
            "maintain": maintenance_interval_s,
        }
        self._scheduler = None
        self._tick_lock = threading.Lock()
        self.last_tick_at: datetime | None = None
        self.last_maintenance: dict | None = None
        self.errors = 0

    # ------------------------------------------------------------ jobs

    def tick(self, *, final: bool = False) -> int:
        """Move what the sources have into the outbox; returns the number of points enqueued."""
        with self._tick_lock:
            now = self.clock.now()
            points: list[Point] = []
            if self.guardians is not None:
                points += self.guardians.collect()
            points += self.breakers.drain()
            points += self.refusals.drain(final=final)
            self.last_tick_at = now
            # every source builds its points with make_point, so they are validated already
            return self.outbox.put(points, validated=True) if points else 0

    def _put(self, points: list[Point]) -> int:
        if not points:
            return 0
        try:
            return self.outbox.put(points)
        except PointError as exc:
            # one bad point must not cost the others: enqueue them one by one
            self.errors += 1
            log.error("a point was invalid (%s); enqueueing the rest individually", exc)
            n = 0
            for p in points:
                try:
                    n += self.outbox.put([p])
                except PointError as one:
                    log.error("dropped invalid point: %s", one)
            return n

    def flush(self, *, max_batches: int | None = None):
        return self.flusher.flush(max_batches=max_batches)

    def collect_host(self) -> int:
        now = self.clock.now()
        points = []
        if self.host is not None:
            try:
                points += self.host.collect(now)
            except Exception:
                log.exception("host metrics failed")
        stats = self.outbox.stats()
        points.append(
            make_point(
                "collector",
                {"app": self.app, "instance": self.instance},
                {
                    "outbox_depth": stats["depth"],
                    "dropped": stats["dropped"],
                    "quarantined": stats["quarantined"],
                },
                now,
            )
        )
        return self._put(points)

    def maintain(self) -> dict | None:
        maintain = getattr(self.store, "maintain", None)
        if maintain is None:
            return None
        self.last_maintenance = maintain(self.clock.now())
        return self.last_maintenance

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        if self._scheduler is not None:
            return
        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        scheduler.add_job(self._safe(self.tick), "interval", seconds=self.intervals["tick"], id="tick")
        scheduler.add_job(self._safe(self.flush), "interval", seconds=self.intervals["flush"], id="flush")
        scheduler.add_job(
            self._safe(self.collect_host), "interval", seconds=self.intervals["collect_host"], id="host"
        )
        if hasattr(self.store, "maintain"):
            scheduler.add_job(
                self._safe(self.maintain), "interval", seconds=self.intervals["maintain"], id="maintain"
            )
        scheduler.start()
        self._scheduler = scheduler
        log.info(
            "collection started for %s/%s: outbox %s (%d pending), store %r",
            self.app,
            self.instance,
            self.outbox.path,
            self.outbox.depth(),
            self.store,
        )

    def _safe(self, job):
        def run():
            try:
                job()
            except Exception:
                self.errors += 1
                log.exception("collection job %s failed", getattr(job, "__name__", job))

        run.__name__ = getattr(job, "__name__", "job")
        return run

    def stop(self, *, flush: bool = True, close: bool = True) -> None:
        """Stop the jobs, enqueue what the sources still hold, try one last flush, close."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        try:
            self.tick(final=True)
            if flush:
                result = self.flush(max_batches=20)
                log.info(
                    "collection stopped: %d points sent, %d left in the outbox for next start",
                    result.sent,
                    result.remaining,
                )
        except Exception:
            log.exception("final collection tick/flush failed; the outbox keeps what it has")
        if close:
            self.outbox.close()
            self.store.close()

    # ------------------------------------------------------------ health

    def health(self) -> dict:
        store = self.store.health()
        state = self.flusher.state
        outbox = self.outbox.stats()
        status = "degraded" if not store.get("reachable") or state.last_error else "ok"
        return {
            "status": status,
            "outbox": outbox,
            "last_flush_at": state.last_success_at.isoformat() if state.last_success_at else None,
            "last_flush_error": state.last_error,
            "consecutive_flush_failures": state.consecutive_failures,
            "sent_total": state.sent_total,
            "store": store,
            "running": self._scheduler is not None,
        }
