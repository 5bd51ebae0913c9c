"""``tradeguard worker``: alert evaluation, breaker polling, escalation and notification delivery,
and the journal relay (``relay`` job every 1 s: business figures from ``domain_events``; see
``tradeguard.bootstrap.build_relay`` for why the worker runs it).

An APScheduler ``BackgroundScheduler`` runs four jobs (``relay`` above and):
- ``evaluate`` every ``--interval`` s (``TRADEGUARD_ALERT_INTERVAL_S``, default 10): every alert
  rule → alert state transitions → grouping, silences, inhibition → queued notifications →
  escalation of unacknowledged alerts;
- ``breakers`` every ``--breaker-poll`` s (default 2): only the breaker rules, over the
  ``breaker_events`` measurement the nodes write — so an open breaker on any node fires its
  alert within a poll, without waiting for the next evaluation (the worker polls; a node
  in-process could instead subscribe ``AlertEngine.on_breaker_event`` to its guardians engine);
- ``deliver`` every ``--deliver-interval`` s (default 2): sends queued notifications, retrying
  failures with exponential backoff; every attempt is recorded.

High availability: run two or more workers on one control DB. Exactly one leads (a lease with a
fencing token in the control DB, ``collectors/lease.py``): it evaluates, escalates and delivers; the
others stand by, renewing their heartbeat every ``--lease-renew`` s, and the first to find the lease
expired (``--lease-ttl`` s after the leader's last renewal, SIGKILL included) takes over.
``tradeguard worker status [--json]`` lists the workers (instance, host, pid, role, last beat).

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
from typing import Any

from tradeguard.settings import load_settings

log = logging.getLogger(__name__)


def _status(args: argparse.Namespace) -> int:
    from tradeguard.bootstrap import worker_status

    report = worker_status(load_settings())
    if args.json:
        print(json.dumps(report, default=str))
        return 0 if report["leader"] else 1
    print(f"leader: {report['leader'] or '(none)'}  token: {report['token']}")
    rows = [
        (w["instance"], w["host"], str(w["pid"]), w["role"], w["last_beat"][:19], f"{w['age_s']:.1f}s")
        for w in report["workers"]
    ]
    head = ("INSTANCE", "HOST", "PID", "ROLE", "LAST BEAT (UTC)", "AGE")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    for r in [head, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return 0 if report["leader"] else 1


def _handle(args: argparse.Namespace) -> int:
    from tradeguard.bootstrap import build_worker, worker_health

    if args.action == "status":
        return _status(args)
    settings = load_settings()
    interval = args.interval or settings.alert_interval_s
    if args.health:
        code, report = worker_health(settings, interval)
        print(json.dumps(report, default=str))
        return code
    from tradeguard.bootstrap import apply_bootstrap_admin

    apply_bootstrap_admin(settings)  # TRADEGUARD_BOOTSTRAP_ADMIN: the first admin, once
    worker = build_worker(
        settings,
        interval_s=interval,
        breaker_poll_s=args.breaker_poll,
        deliver_s=args.deliver_interval,
        lease_ttl_s=args.lease_ttl,
        lease_renew_s=args.lease_renew,
    )
    if args.once:
        try:
            print(json.dumps(worker.once(), default=str))
        finally:
            worker.close()
        return 0
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
    try:
        while not stop.wait(0.5):
            pass
    finally:
        worker.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker",
        help="alert evaluation, breaker polling, escalation and notification delivery (APScheduler)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=("run", "status"),
        default="run",
        help="run (default) the worker, or print the workers' status (leader, standbys, last beats)",
    )
    p.add_argument("--json", action="store_true", help="status: one JSON object")
    p.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        help="seconds the leader lease lasts past its last renewal (default 10)",
    )
    p.add_argument(
        "--lease-renew",
        type=float,
        default=2.0,
        help="seconds between lease renewals / standby takeover attempts (default 2)",
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
