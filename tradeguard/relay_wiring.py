"""Wiring of the journal relay (``collectors/relay.py``) into the worker.

Who runs it, and why the worker: the relay is fleet-wide work with exactly one writer, like alert
evaluation, so it belongs to the process kind that already exists once per fleet and is not on
the request path. Nodes scale out and in with traffic and are SIGKILLed in drills; running the
relay there would put a lease contest and a journal scan on every request host, and the figures'
freshness would depend on whichever node happens to be alive. Several workers may still run:
the relay's lease (control DB, fencing token) lets exactly one of them write; another takes over
within the lease TTL when the leader dies.

``build_relay(settings)`` builds it from the settings (trading DB, control DB, metric store,
``TRADEGUARD_BROKER_URL``); ``schedule_relay(scheduler, settings)`` adds the ``relay`` job
(every 1 s) to an APScheduler scheduler; ``relay_health(settings)`` reads the relay's last cycle
from the control DB for ``tradeguard worker --health``.
"""

from __future__ import annotations

import atexit
import logging
import uuid
from typing import Any

from collectors.broker import EventBroker, open_broker
from collectors.query import MetricStore
from collectors.relay import JournalRelay, RelayControl
from tradeguard.settings import Settings

log = logging.getLogger(__name__)

RELAY_INTERVAL_S = 1.0
LEASE_TTL_S = 10.0


def build_relay(
    settings: Settings,
    *,
    clock: Any = None,
    store: MetricStore | None = None,
    broker: EventBroker | None = None,
    holder: str | None = None,
    ttl_s: float = LEASE_TTL_S,
) -> JournalRelay:
    from collectors.registry import open_store
    from domain.adapters.journal import SqlJournal
    from domain.adapters.sku_sales import SkuSalesModel
    from domain.adapters.unit_of_work import build_trading_db

    settings.ensure_var_dir()
    trading = build_trading_db(settings.trading_db, pool_size=2, max_overflow=4)
    journal = SqlJournal(trading.engine, schema=trading.schema)
    journal.ensure_schema()
    instance = settings.instance_id()
    control = RelayControl.from_url(
        settings.control_db,
        holder=holder or f"{instance}-{uuid.uuid4().hex[:8]}",
        ttl_s=ttl_s,
        clock=clock,
    )
    if store is None:
        store = open_store(settings.metrics_url, clock=clock, **settings.metrics_credentials())
    if broker is None:
        broker = open_broker(settings.broker_url, app=settings.app)
    log.info("journal relay %s: broker %r", control.holder, broker)
    return JournalRelay(
        journal,
        store,
        control,
        app=settings.app,
        instance=instance,
        clock=clock,
        broker=broker,
        read_model=SkuSalesModel(trading.engine),
    )


def run_relay_cycle(relay: JournalRelay) -> None:
    try:
        out = relay.run_once()
        if out.events:
            log.info("relay: %d event(s), %d point(s), cursor %d, lag %.1f s",
                     out.events, out.points, out.cursor, out.lag_s or 0.0)
    except Exception:
        log.exception("relay cycle failed")


def schedule_relay(scheduler: Any, settings: Settings, **kwargs: Any) -> JournalRelay:
    """Build the relay and add the ``relay`` job (every second) to ``scheduler``."""
    relay = build_relay(settings, **kwargs)
    scheduler.add_job(run_relay_cycle, "interval", args=[relay], seconds=RELAY_INTERVAL_S, id="relay",
                      max_instances=1, coalesce=True, misfire_grace_time=30)
    atexit.register(relay.close)  # hand the lease over at once instead of after its TTL
    return relay


def relay_health(settings: Settings) -> dict[str, Any]:
    """The relay's last cycle as the control DB has it (works from any process)."""
    try:
        control = RelayControl.from_url(settings.control_db, holder="health-probe")
        try:
            return control.status()
        finally:
            control.engine.dispose()
    except Exception as exc:
        return {"error": f"relay status unreadable: {type(exc).__name__}"}
