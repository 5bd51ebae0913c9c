"""``tradeguard worker``: alert evaluation, breaker polling, escalation and notification delivery,
and the journal relay (``relay`` job every 1 s: business figures from ``domain_events``; see
``tradeguard/relay_wiring.py`` for why the worker runs it).

An APScheduler ``BackgroundScheduler`` runs three jobs:
- ``evaluate`` every ``--interval`` s (``TRADEGUARD_ALERT_INTERVAL_S``, default 10): every alert
  rule → alert state transitions → grouping, silences, inhibition → queued notifications →
  escalation of unacknowledged alerts;
- ``breakers`` every ``--breaker-poll`` s (default 2): only the breaker rules, over the
  ``breaker_events`` measurement the nodes write — so an open breaker on any node fires its
  alert within a poll, without waiting for the next evaluation (the worker polls; a node
  in-process could instead subscribe ``AlertEngine.on_breaker_event`` to its guardians engine);
- ``deliver`` every ``--deliver-interval`` s (default 2): sends queued notifications, retrying
  failures with exponential backoff; every attempt is recorded.

Each job writes its last run to the control DB (``alert_worker_status``):
``tradeguard worker --health`` prints it and exits 0 when the last evaluation is recent
(within 3 intervals), 1 otherwise. ``--once`` runs one cycle and one delivery round and exits.
Channels: ``TRADEGUARD_ALERT_WEBHOOK_URL``, ``TRADEGUARD_SMTP_URL``, a log channel, and any
defined in the control DB (``tradeguard alerts rules apply -f FILE`` with a ``channels`` section).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from datetime import UTC, datetime
from typing import Any

from alerts.engine import AlertEngine, ensure_default_rules
from alerts.nodes import FleetNodes
from alerts.store import AlertStore
from tradeguard.relay_wiring import relay_health, schedule_relay
from tradeguard.settings import Settings, load_settings

log = logging.getLogger(__name__)


def node_source(control_db: str) -> Any:
    try:
        return FleetNodes.from_url(control_db)
    except Exception as exc:  # guardians.fleet missing or its table unreadable: heartbeat rules see no data
        log.warning("node heartbeats unavailable (%s); heartbeat alert rules will see no data", exc)
        return None


def build_engine(settings: Settings) -> AlertEngine:
    from collectors.registry import open_store

    settings.ensure_var_dir()
    store = AlertStore(settings.control_db)
    metrics = open_store(settings.metrics_url, **settings.metrics_credentials())
    return AlertEngine(
        store,
        metrics,
        nodes=node_source(settings.control_db),
        webhook_url=settings.alert_webhook_url,
        smtp_url=settings.smtp_url,
        external_url=f"http://{settings.console_host}:{settings.console_port}",
    )


class Worker:
    """The scheduled jobs around one engine; ``start()`` / ``stop()``; usable in-process (demo, tests)."""

    def __init__(
        self,
        engine: AlertEngine,
        *,
        interval_s: float = 10.0,
        breaker_poll_s: float = 2.0,
        deliver_s: float = 2.0,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.breaker_poll_s = breaker_poll_s
        self.deliver_s = deliver_s
        self._lock = threading.Lock()  # evaluate and breaker polls share the evaluator's state
        self._scheduler: Any = None

    def evaluate(self) -> None:
        try:
            with self._lock:
                out = self.engine.cycle()
            ev = out.get("evaluate", {})
            log.info(
                "alert cycle: %s rule(s), %s quer(ies), %s transition(s), %s error(s), %s notification(s), "
                "%s escalation(s) in %.3f s",
                ev.get("rules"),
                ev.get("queries"),
                ev.get("transitions"),
                len(ev.get("errors", {}) or {}),
                out.get("notifications"),
                out.get("escalations"),
                out.get("duration_s", 0.0),
            )
        except Exception:
            log.exception("alert cycle failed")

    def poll_breakers(self) -> None:
        try:
            with self._lock:
                out = self.engine.poll_breakers()
            if out.get("transitions"):
                log.info("breaker poll: %s transition(s)", out["transitions"])
        except Exception:
            log.exception("breaker poll failed")

    def deliver(self) -> None:
        try:
            counts = self.engine.deliver()
            if any(counts.values()):
                log.info("notifications: %s", counts)
        except Exception:
            log.exception("notification delivery failed")

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(timezone="UTC")
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}
        sched.add_job(
            self.evaluate,
            "interval",
            seconds=self.interval_s,
            id="evaluate",
            next_run_time=datetime.now(UTC),
            **common,
        )
        sched.add_job(self.poll_breakers, "interval", seconds=self.breaker_poll_s, id="breakers", **common)
        sched.add_job(self.deliver, "interval", seconds=self.deliver_s, id="deliver", **common)
        sched.start()
        self._scheduler = sched
        log.info(
            "worker started: evaluate every %ss, breakers every %ss, deliver every %ss",
            self.interval_s,
            self.breaker_poll_s,
            self.deliver_s,
        )

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        log.info("worker stopped")


def health(settings: Settings, interval_s: float) -> tuple[int, dict[str, Any]]:
    store = AlertStore(settings.control_db)
    try:
        status = store.status()
        times = store.status_times()
    finally:
        store.close()
    now = datetime.now(UTC)
    last = times.get("evaluate")
    age = (now - last).total_seconds() if last else None
    ok = age is not None and age <= 3 * interval_s
    relay = relay_health(settings)  # journal relay (issue 11): lag, cursor, leader
    return (0 if ok else 1), {"ok": ok, "last_cycle_age_s": age, "interval_s": interval_s, "jobs": status,
                              "relay": relay, "relay_lag_s": relay.get("lag_s")}


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()
    interval = args.interval or settings.alert_interval_s
    if args.health:
        code, report = health(settings, interval)
        print(json.dumps(report, default=str))
        return code
    engine = build_engine(settings)
    if ensure_default_rules(engine.store, engine.clock.now()):
        log.info("no alert rules in the control DB: installed the defaults (alerts/default_rules.yaml)")
    if args.once:
        out = engine.cycle()
        out["deliver"] = engine.deliver()
        print(json.dumps(out, default=str))
        return 0
    worker = Worker(
        engine, interval_s=interval, breaker_poll_s=args.breaker_poll, deliver_s=args.deliver_interval
    )
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping the worker", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, _stop)
        except ValueError:  # not the main thread
            pass
    worker.start()
    schedule_relay(worker._scheduler, settings)  # journal relay job, every 1 s (tradeguard/relay_wiring.py)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        worker.stop()
        engine.store.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker",
        help="alert evaluation, breaker polling, escalation and notification delivery (APScheduler)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument(
        "--interval",
        type=float,
        default=None,
        help="evaluation interval in seconds (default TRADEGUARD_ALERT_INTERVAL_S or 10)",
    )
    p.add_argument("--breaker-poll", type=float, default=2.0, help="breaker_events poll interval (s)")
    p.add_argument("--deliver-interval", type=float, default=2.0, help="notification delivery interval (s)")
    p.add_argument(
        "--once", action="store_true", help="run one evaluation cycle and one delivery round, then exit"
    )
    p.add_argument(
        "--health",
        action="store_true",
        help="print the worker's last cycle from the control DB; exit 0 if recent, 1 if not",
    )
    p.set_defaults(func=_handle)
