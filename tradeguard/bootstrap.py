"""The composition root: the ONLY place that opens stores and wires concrete adapters together.

``build_node(settings, host=…, port=…)`` returns a ``Node``: the trading core (trading DB,
simulated payment gateway, EventBus, TradingService), its FastAPI app, and the parts plugged
around it, each wired by one function below:

- ``wire_guardians``  — guardians Engine as the core's Guard port, GuardMiddleware outermost (the door:
  a refusal skips tracing and routing; ``RefusalBudget`` hands the few the tracer keeps inside), the
  ``Blocked`` → 429/503 problem+json handler (``guardians.http.blocked_problem``), RuleWatcher,
  Fleet heartbeats, cluster mode (Redis);
- ``wire_trading_core`` — trading DB, gateway, bus, service;
- ``wire_collectors`` — collectors ``Collection`` subscribed to the EventBus (metrics), and the
  shop's refusals (409/422 answers) recorded through it (``recording_domain_error_handler``);
- ``wire_chaos`` — payment-gateway chaos settings polled from the control DB;
- ``wire_timeouts`` — the scheduled cancellation of unpaid orders and the queued-payment retries;
- ``wire_ops_routes`` — the ``/ops/*`` routes of ``tradeguard.ops_api`` given what was built.

``build_worker(settings)`` returns a ``Worker``: the alert engine (control DB, metric store,
node heartbeats, channels) and its scheduled jobs. ``build_console_services(settings)`` returns the
console's ``ConsoleServices``. The CLI commands open their stores through the ``open_*`` functions
below (and ``build_alert_service``), the same openers the processes use.

Every first-party package is there; what can really fail at start (a store that cannot be
reached) is logged — URLs through ``common.redact.redact_url`` — and shows in ``/ops/health``;
the node serves with the rest. Nothing here runs at import time; ``Node.start()`` starts the
scheduler and the background parts, ``Node.stop()`` stops them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from common.clock import Clock, SystemClock
from common.problems import PROBLEM_JSON
from common.redact import redact_text, redact_url
from domain.api.problems import problem_responses
from domain.ports import EventBus, Guard, NoopGuard
from tradeguard.chaos import ChaosPoller, ChaosStore
from tradeguard.ops_api import ops_router
from tradeguard.settings import Settings

if TYPE_CHECKING:
    from alerts.engine import AlertEngine
    from collectors.relay import JournalRelay
    from console.services import ConsoleServices
    from guardians.errors import Blocked

log = logging.getLogger(__name__)

HealthCheck = Callable[[], dict[str, Any]]

# What a guard plugged into the trading routes can answer on top of the core's own errors.
GUARD_RESPONSES = {
    **problem_responses(429),
    **problem_responses(503, description="unavailable: a store is down, or a breaker is open (Retry-After)"),
}


def tradeguard_version() -> str:
    try:
        return metadata.version("tradeguard")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass
class NodeContext:
    """What the wiring functions build up, in order, before the app is created."""

    settings: Settings
    host: str
    port: int
    instance: str
    clock: Clock
    scheduler: BackgroundScheduler
    bus: EventBus
    guard: Guard = field(default_factory=NoopGuard)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    routers: list[APIRouter] = field(default_factory=list)
    exception_handlers: dict[Any, Callable[..., Any]] = field(default_factory=dict)
    app_hooks: list[Callable[[FastAPI], None]] = field(default_factory=list)  # run on the created app
    # run after app_hooks: what must wrap everything they installed (the guardians' door)
    outer_hooks: list[Callable[[FastAPI], None]] = field(default_factory=list)
    on_start: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)  # part -> "on" | "off" | "error: …"
    # set by the wiring functions
    trading_db: Any = None
    gateway: Any = None
    service: Any = None
    engine: Any = None  # guardians.Engine
    rule_watcher: Any = None
    fleet: Any = None
    collection: Any = None
    tracing: Any = None  # tradeguard.tracing.Tracing when wired
    chaos_store: ChaosStore | None = None
    chaos_poller: ChaosPoller | None = None
    started_at: float = field(default_factory=time.time)

    def every(self, seconds: float, job: Callable[[], Any], job_id: str) -> None:
        """Run ``job`` every ``seconds`` on the node's scheduler; a failing run is logged, never fatal."""

        def safe() -> None:
            try:
                job()
            except Exception:
                log.exception("scheduled job %s failed", job_id)

        self.scheduler.add_job(
            safe,
            "interval",
            seconds=seconds,
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds * 2)),
            next_run_time=datetime.now(UTC),
        )


# ============================================================================ wiring
def fallbacks(service: Callable[[], Any] | None = None) -> dict[str, Callable[[Any], Any]]:
    """Named fallbacks that degrade rules may choose (``degrade: [{resource, fallback: NAME}]``).

    ``service`` gives the node's TradingService (read when a fallback runs); without it the
    fallbacks that read the catalog (``sold_out``) are not offered."""
    from domain.ports import ChargeResult

    def queue_payment(exc: Any) -> ChargeResult:
        # payment.charge is blocked (breaker open): do not call the gateway; the payment waits in
        # state "queued" (order pending_payment, stock reserved, POST /orders/{id}/pay → 202) and the
        # node's "payment-retry" job (TradingService.retry_queued_payments) charges it later.
        return ChargeResult(ok=False, queued=True,
                            reason=f"payment queued: the gateway is degraded ({type(exc).__name__})")

    out: dict[str, Callable[[Any], Any]] = {"queue_payment": queue_payment}
    if service is not None:
        out["sold_out"] = _sold_out(service)
    return out


def _sold_out(service: Callable[[], Any]) -> Callable[[Any], Any]:
    """``sold_out``: a blocked product/stock read (``GET /shops/{shop_id}/products``) answers the shop's
    products as sold out — 200, each with ``available: 0``, no per-warehouse stock, ``sold_out: true``
    and a flash price's ``available: 0`` — instead of a 429. It reads the catalog only (products and
    promotions, never the stock levels that were guarded off); an unknown shop or a failing read
    declines (the 429 goes through)."""
    from domain.api.dto import ProductOut
    from domain.views import ProductView

    def sold_out(exc: Blocked) -> Any:
        params = exc.path_params or {}
        args = exc.args_ or {}
        shop_id = params.get("shop_id") or args.get("shop")
        svc = service()
        if not shop_id or svc is None:
            return None

        def run(uow: Any) -> list[dict[str, Any]] | None:
            if uow.catalog.shop(shop_id) is None:
                return None
            now = svc.clock.now()
            promos = [p for p in uow.catalog.promotions([shop_id]) if p.active(now)]
            out = []
            for p in uow.catalog.products(shop_id):
                view = ProductOut.model_validate(ProductView.of(p, {}, promos)).model_dump(mode="json")
                view["available"] = 0
                view["warehouses"] = None
                if view.get("flash"):
                    view["flash"]["available"] = 0
                view["sold_out"] = True
                out.append(view)
            return out

        with svc.uow_factory(readonly=True) as uow:  # the service's own read-only unit of work
            return run(uow)

    return sold_out


class RefusalBudget:
    """``(resource, exc) -> bool``: true for at most ``per_s`` refusals a second per (resource, rule) — a
    token bucket of that size, like the tail sampler's budget of kept blocked traces (``None``: all)."""

    def __init__(self, per_s: float | None, clock: Callable[[], float]) -> None:
        self.per_s = per_s
        self.clock = clock
        self._buckets: dict[tuple[str, str], list[float]] = {}

    def __call__(self, resource: str, exc: Any) -> bool:
        rate = self.per_s
        if rate is None:
            return True
        now = self.clock()
        key = (resource, exc.rule_name)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= 4096:
                self._buckets.clear()
            bucket = self._buckets[key] = [rate, now]
        else:
            bucket[0] = min(rate, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True


def wire_guardians(ctx: NodeContext) -> None:
    """guardians Engine as Guard port, middleware, Blocked handler, rule watcher, heartbeats, cluster."""
    from guardians import Blocked, Engine
    from guardians.http import GuardMiddleware, RefusalAnswer, blocked_problem
    from guardians.starlette_routes import starlette_route_resolver
    from guardians.watcher import RuleWatcher

    s = ctx.settings
    engine = Engine(clock=None)
    ctx.engine = engine
    ctx.guard = engine

    from guardians.http import TrustedProxies
    from tradeguard.origins import OriginResolver
    from tradeguard.stale import StaleOrders

    trusted = TrustedProxies(s.trusted_proxies)
    key_origins = None
    try:
        keys = open_api_keys(s)
        key_origins = keys.origins_by_hash
        ctx.on_stop.append(keys.close)
    except Exception:  # callers are then told apart by the trusted-proxy header only
        log.exception("API keys unavailable (control DB %s)", redact_url(s.control_db))
    resolver = OriginResolver(key_origins, header_name=s.origin_header, trusted=trusted)

    def install_middleware(app: FastAPI) -> None:
        # inside the app's stack (tracing, error handling): answers the refusals the door hands on
        app.add_middleware(RefusalAnswer, engine=engine)

    def install_door(app: FastAPI) -> None:
        """The door, outermost: StaleOrders, then GuardMiddleware, then whatever the other hooks built
        (the tracing middleware, Starlette's error handling, routing). A refused request costs the
        route lookup, the checks and a prebuilt 429; only the refusals the tracer would keep (its
        per-rule budget of blocked traces) and those with a route fallback go on, to be answered by
        RefusalAnswer inside the traced stack."""
        resolve = starlette_route_resolver(app)

        def route_resource(scope: Any) -> str | None:
            if str(scope.get("path", "")).startswith("/ops/"):
                return None  # the node's own ops endpoints are never guarded
            return resolve(scope)

        tracing = ctx.tracing
        refuse_inside = trace_ids = None
        if tracing is not None:
            from tradeguard.tracing import door_trace_ids

            refuse_inside = RefusalBudget(tracing.sampler.blocked_per_s, ctx.clock.time)
            trace_ids = door_trace_ids  # every answer names a trace, a refusal at the door too
        inner = app.build_middleware_stack

        def build() -> Any:
            door = GuardMiddleware(inner(), engine=engine, route_resolver=route_resource,
                                   origin_from=resolver, trusted_proxies=trusted, refuse_inside=refuse_inside,
                                   trace_ids=trace_ids)
            return StaleOrders(door)  # outside the guard: a blocked order read answers its cached view

        app.build_middleware_stack = build  # type: ignore[method-assign]

    ctx.app_hooks.append(install_middleware)
    ctx.outer_hooks.append(install_door)

    def on_blocked(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Blocked)
        status, headers, body = blocked_problem(exc)
        return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)

    ctx.exception_handlers[Blocked] = on_blocked
    for name, fn in fallbacks(lambda: ctx.service).items():
        engine.register_fallback(name, fn)

    try:
        store = open_rule_store(s)
    except Exception as exc:  # the node serves without rules rather than not at all
        log.exception("rule store %s unavailable: no rules on this node", redact_url(s.control_db))
        error = redact_text(f"{type(exc).__name__}: {exc}")
        ctx.health_checks["rule_watcher"] = lambda: {"status": "error", "error": error}
    else:
        watcher = RuleWatcher(store, engine, s.app, interval_s=s.rules_poll_s, instance=ctx.instance)
        ctx.rule_watcher = watcher
        ctx.on_start.append(watcher.start)
        ctx.on_stop.append(store.close)  # hooks run in reverse: the watcher stops before its store closes
        ctx.on_stop.append(watcher.stop)
        ctx.health_checks["rule_watcher"] = lambda: _watcher_health(watcher.status())

    fleet = None
    try:
        fleet = open_fleet(s)
    except Exception:
        log.exception("fleet heartbeats unavailable (control DB %s)", redact_url(s.control_db))
    if fleet is not None:
        ctx.fleet = fleet
        address = f"http://{ctx.host}:{ctx.port}"
        version = tradeguard_version()
        beating = fleet

        def beat() -> None:
            beating.beat(ctx.instance, address, version, _rule_version(ctx), _last_snapshot_at(ctx),
                         canary=ctx.rule_watcher.canary_id if ctx.rule_watcher else None)

        ctx.every(s.heartbeat_s, beat, "heartbeat")
        ctx.on_stop.append(fleet.close)

    if s.redis_url:  # cluster-wide limits and shared breakers
        from guardians.cluster import connect

        try:
            live = fleet.live_count if fleet is not None else None
            cluster = connect(s.redis_url, live_nodes=live, namespace=f"tradeguard:{s.app}")
            engine.enable_cluster(cluster)
            ctx.on_start.append(cluster.start)
            ctx.on_stop.append(cluster.close)
        except Exception:
            log.exception("cluster mode unavailable (redis %s): per-node limits", redact_url(s.redis_url))
    ctx.health_checks["cluster"] = engine.cluster_status
    ctx.health_checks["guard_hot_path"] = guard_hot_path
    hot = guard_hot_path()
    if hot["status"] == "ok":
        log.info("guard hot path: %s", hot["detail"])
    else:
        log.warning("guard hot path: %s", hot["detail"])
    ctx.parts["guardians"] = "on"


def guard_hot_path() -> dict[str, Any]:
    """``/ops/health`` → ``stores.guard_hot_path``: whether the guard's hot path runs compiled (mypyc,
    ``guardians._native``) or as pure Python (both ok); degraded when a compiled module is older than
    its source (an edit not rebuilt: the old code runs)."""
    import guardians
    from guardians import _native

    found = _native.stale()
    compiled = guardians.COMPILED
    return {
        "status": "degraded" if found else "ok",
        "compiled": compiled,
        "modules": list(guardians.COMPILED_MODULES),
        "detail": _native.stale_message(found) if found
        else "compiled (mypyc)" if compiled
        else "pure Python" + (" (partly compiled)" if guardians.COMPILED_MODULES else ""),
    }


def wire_tracing(ctx: NodeContext) -> None:
    """Call-chain tracing (``tradeguard.tracing``): the route span and response headers on the app,
    a span per guarded call (the Guard port is wrapped: call before ``wire_trading_core``), DB
    statement spans on the trading DB; kept traces go to OTLP or the embedded span store."""
    from tradeguard.tracing import build_tracing

    s = ctx.settings
    try:
        tracing = build_tracing(
            instance=ctx.instance,
            service_name=f"tradeguard-node:{s.app}",
            sample=s.trace_sample,
            otlp_endpoint=s.otlp_endpoint,
            store_path=s.var_dir / "traces.db",
        )
    except Exception as exc:  # the node serves untraced rather than not at all
        error = redact_text(f"{type(exc).__name__}: {exc}")
        log.exception("tracing could not be wired: requests are not traced")
        ctx.parts["tracing"] = f"error: {error}"
        ctx.health_checks["tracing"] = lambda: {"status": "error", "error": error}
        return
    ctx.guard = tracing.wrap_guard(ctx.guard)

    def instrument(app: FastAPI) -> None:
        from guardians.starlette_routes import starlette_route_resolver

        tracing.route_name = starlette_route_resolver(app)
        tracing.instrument_app(app)
        if ctx.trading_db is not None:
            tracing.instrument_engine(ctx.trading_db.engine)
        # the service map's other edges (hooks run once every part is wired): the guardians' Redis
        # clients in cluster mode, the outbox flusher's writes to the metric store
        cluster = ctx.engine.cluster if ctx.engine is not None else None
        if cluster is not None:  # limits' RedisStorage keeps its client as ``storage``
            for client in (cluster.redis, getattr(cluster.storage, "storage", None)):
                if client is not None:
                    tracing.instrument_redis(client)
        if ctx.collection is not None:
            tracing.instrument_metric_store(ctx.collection.flusher, s.metrics_url.split(":", 1)[0])

    ctx.app_hooks.append(instrument)
    ctx.on_start.append(tracing.start)
    ctx.on_stop.append(tracing.stop)
    ctx.health_checks["tracing"] = tracing.status
    ctx.parts["tracing"] = tracing.sink
    ctx.tracing = tracing


def build_gateway(settings: Settings) -> Any:
    """The simulated payment gateway: its own latency and, optionally, a bounded number of slots
    (``TRADEGUARD_GATEWAY_CONCURRENCY``), the bounded downstream of ``tradeguard bench surge``."""
    from domain.adapters.payment_sim import SimulatedGateway

    kwargs: dict[str, Any] = {"latency_ms": settings.gateway_latency_ms}
    if settings.gateway_concurrency:
        kwargs["concurrency"] = settings.gateway_concurrency
    return SimulatedGateway(**kwargs)


def wire_trading_core(ctx: NodeContext) -> None:
    """Trading DB, simulated payment gateway, TradingService publishing to the EventBus."""
    from domain.adapters.unit_of_work import build_trading_db
    from domain.services import TradingService

    s = ctx.settings
    s.ensure_var_dir()
    ctx.trading_db = build_trading_db(s.trading_db)
    ctx.gateway = build_gateway(s)
    ctx.service = TradingService(
        ctx.trading_db.uow_factory,
        ctx.gateway,
        guard=ctx.guard,
        publisher=ctx.bus,
        clock=ctx.clock,
        payment_timeout=s.payment_timeout,
        queued_payment_grace=timedelta(seconds=s.queued_payment_grace_s),
        instance=ctx.instance,  # named on its payment events: per-node payment series
    )
    db_engine = ctx.trading_db.engine
    ctx.health_checks["trading_db"] = lambda: _ping(db_engine, s.trading_db)
    ctx.on_stop.append(db_engine.dispose)
    ctx.parts["trading_core"] = "on"


def wire_collectors(ctx: NodeContext) -> None:
    """Metrics: collectors ``Collection`` fed by the EventBus and the guardians' snapshots."""
    s = ctx.settings
    try:
        collection = _build_collection(ctx)
    except Exception as exc:  # e.g. InfluxDB unreachable or a bad URL: the node serves without metrics
        log.exception("collectors could not be wired (%s): metrics are off on this node",
                      redact_url(s.metrics_url))
        error = redact_text(f"{type(exc).__name__}: {exc}")
        ctx.parts["collectors"] = f"error: {error}"
        ctx.health_checks["metrics"] = lambda: {
            "status": "error",
            "error": error,
            "url": redact_url(s.metrics_url),
        }
        return
    ctx.collection = collection
    from domain.api.problems import recording_domain_error_handler
    from domain.errors import DomainError

    ctx.exception_handlers[DomainError] = recording_domain_error_handler(collection.refusals)
    ctx.on_start.append(collection.start)
    ctx.on_stop.append(collection.stop)
    ctx.health_checks["metrics"] = lambda: _status_dict(collection.health())
    ctx.parts["collectors"] = "on"


def _build_collection(ctx: NodeContext) -> Any:
    from collectors.runtime import Collection

    s = ctx.settings
    safe_instance = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in ctx.instance)
    outbox_dir = s.var_dir / "outbox"
    outbox_dir.mkdir(parents=True, exist_ok=True)
    return Collection(
        open_metric_store(s),
        outbox_dir / f"{safe_instance}.db",
        app=s.app,
        instance=ctx.instance,
        engine=ctx.engine,
    )


def wire_chaos(ctx: NodeContext) -> None:
    """Payment-gateway chaos settings, read from the control DB every ``chaos_poll_s``."""
    s = ctx.settings
    try:
        store = open_chaos_store(s)
    except Exception as exc:  # no chaos control rather than no node
        log.exception("control DB %s unavailable: payment chaos is off", redact_url(s.control_db))
        error = redact_text(f"{type(exc).__name__}: {exc}")
        ctx.health_checks["control_db"] = lambda: {
            "status": "error",
            "url": redact_url(s.control_db),
            "error": error,
        }
        ctx.parts["chaos"] = f"error: {error}"
        return
    poller = ChaosPoller(store, ctx.gateway)
    ctx.chaos_store, ctx.chaos_poller = store, poller
    ctx.every(s.chaos_poll_s, poller.poll, "chaos-poll")
    ctx.health_checks["control_db"] = lambda: _ping(store.engine, s.control_db)
    ctx.health_checks["payment_chaos"] = poller.status
    ctx.on_stop.append(store.close)
    ctx.parts["chaos"] = "on"
    wire_relay_status(ctx, store.engine)


def wire_relay_status(ctx: NodeContext, control_engine: Any) -> None:
    """``/ops/health`` → ``stores.relay``: the journal relay's lag and cursor as the control DB has
    them (whoever runs the relay — the leader worker — every node shows it)."""
    from collectors.relay import RelayControl, relay_check

    try:
        probe = RelayControl(control_engine, holder=f"{ctx.instance}-health")
    except Exception as exc:
        error = redact_text(f"{type(exc).__name__}: {exc}")
        ctx.health_checks["relay"] = lambda: {"status": "error", "error": error}
        return
    ctx.health_checks["relay"] = lambda: relay_check(probe.status())


def wire_timeouts(ctx: NodeContext) -> None:
    """Cancel unpaid orders past their deadline (stock released), every ``timeout_sweep_s``; charge
    queued payments again (``retry_queued_payments``, race-safe across nodes) every ``payment_retry_s``;
    mark delivered sub-orders received after their shop's ``auto_receive_days`` (every minute); close
    ended auctions and re-offer unpaid ones (every 15 s); lapse presale orders whose balance window closed
    unpaid (every minute)."""
    service = ctx.service
    ctx.every(ctx.settings.timeout_sweep_s, service.cancel_expired, "timeout-cancel")
    ctx.every(ctx.settings.payment_retry_s, service.retry_queued_payments, "payment-retry")
    ctx.every(60.0, service.auto_receive, "auto-receive")
    ctx.every(15.0, service.close_auctions, "auction-close")
    ctx.every(60.0, service.forfeit_presales, "presale-forfeit")
    ctx.parts["timeouts"] = "on"


def wire_ops_routes(ctx: NodeContext, health: Callable[[], dict[str, Any]]) -> None:
    """The ``/ops/*`` routes (``tradeguard.ops_api``) over what the wiring functions built."""
    engine = ctx.engine
    ctx.routers.append(
        ops_router(
            health=health,
            stats=engine.stats if engine is not None else None,
            rules=(lambda: _rules_view(ctx)) if engine is not None else None,
            chaos_store=ctx.chaos_store,
            chaos_poller=ctx.chaos_poller,
            auth=ops_auth(ctx.settings),
        )
    )


def _rules_view(ctx: NodeContext) -> dict[str, Any]:
    """``GET /ops/rules``: the rules in force on this node, their version and the watcher's state."""
    return {
        "app": ctx.settings.app,
        "instance": ctx.instance,
        "version": _rule_version(ctx),
        "canary": ctx.rule_watcher.canary_id if ctx.rule_watcher else None,  # the canary it runs, if any
        "watcher": _status_dict(ctx.rule_watcher.status()) if ctx.rule_watcher else {},
        "rules": ctx.engine.ruleset.to_document(),
    }


# ============================================================================ the node
class Node:
    """A wired node: ``app`` to serve, ``start()``/``stop()`` for its background parts."""

    def __init__(self, ctx: NodeContext, app: FastAPI) -> None:
        self.ctx = ctx
        self.app = app
        self._started = False

    @property
    def service(self) -> Any:
        return self.ctx.service

    @property
    def gateway(self) -> Any:
        return self.ctx.gateway

    def start(self) -> None:
        if self._started:
            return
        self.ctx.scheduler.start()
        for hook in self.ctx.on_start:
            hook()
        self._started = True
        log.info(
            "node %s started: parts %s; jobs %s",
            self.ctx.instance,
            self.ctx.parts,
            [j.id for j in self.ctx.scheduler.get_jobs()],
        )

    def stop(self) -> None:
        if self._started:
            try:
                self.ctx.scheduler.shutdown(wait=True)
            except Exception:
                log.exception("scheduler shutdown failed")
        for hook in reversed(self.ctx.on_stop):
            try:
                hook()
            except Exception:
                log.exception("stopping %s failed", getattr(hook, "__qualname__", hook))
        self._started = False
        log.info("node %s stopped", self.ctx.instance)

    def health(self) -> dict[str, Any]:
        checks: dict[str, dict[str, Any]] = {}
        for name, check in self.ctx.health_checks.items():
            try:
                checks[name] = check()
            except Exception as exc:
                checks[name] = {"status": "error", "error": redact_text(f"{type(exc).__name__}: {exc}")}
        statuses = {c.get("status", "ok") for c in checks.values()}
        if checks.get("trading_db", {}).get("status") not in (None, "ok"):
            overall = "down"
        elif statuses <= {"ok", "absent"}:  # "absent": a mode not configured, e.g. cluster without Redis
            overall = "ok"
        else:
            overall = "degraded"
        return {
            "status": overall,
            "app": self.ctx.settings.app,
            "instance": self.ctx.instance,
            "version": tradeguard_version(),
            "uptime_s": round(time.time() - self.ctx.started_at, 1),
            "node": {"status": "ok" if self._started else "starting", "parts": self.ctx.parts},
            "stores": checks,
        }


def build_node(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    clock: Clock | None = None,
    guardians: bool = True,
    collectors: bool = True,
    tracing: bool = True,
) -> Node:
    """Wire a node. Nothing is started: call ``Node.start()`` (``tradeguard node`` does)."""
    from domain.api.app import create_app

    host = host or settings.node_host
    port = settings.node_port if port is None else port
    bus = EventBus(on_error=lambda exc: log.warning("event subscriber failed: %s", exc))
    ctx = NodeContext(
        settings=settings,
        host=host,
        port=port,
        instance=settings.instance_id(port),
        clock=clock or SystemClock(),
        scheduler=BackgroundScheduler(timezone=UTC),
        bus=bus,
    )
    if guardians:
        wire_guardians(ctx)
    else:
        ctx.parts["guardians"] = "off"
    if tracing:
        wire_tracing(ctx)
    else:
        ctx.parts["tracing"] = "off"
    wire_trading_core(ctx)
    if collectors:
        wire_collectors(ctx)
    else:
        ctx.parts["collectors"] = "off"
    wire_chaos(ctx)
    wire_timeouts(ctx)
    node_ref: list[Node] = []
    wire_ops_routes(ctx, lambda: node_ref[0].health())
    app = create_app(
        ctx.service,
        exception_handlers=ctx.exception_handlers,
        routers=tuple(ctx.routers),
        trading_responses=GUARD_RESPONSES if ctx.engine is not None else None,
        merchant_auth=ops_auth(settings),
    )
    for hook in ctx.app_hooks:
        hook(app)
    for hook in ctx.outer_hooks:
        hook(app)
    node = Node(ctx, app)
    node_ref.append(node)
    return node


# ============================================================================ smaller entry points
def build_service(settings: Settings) -> tuple[Any, Any]:
    """Trading DB + service without a node (for ``tradeguard seed``). Returns (trading_db, service)."""
    from domain.adapters.unit_of_work import build_trading_db
    from domain.services import TradingService

    settings.ensure_var_dir()
    db = build_trading_db(settings.trading_db)
    service = TradingService(
        db.uow_factory, build_gateway(settings), payment_timeout=settings.payment_timeout
    )
    return db, service


def seed_catalog(settings: Settings) -> dict[str, int]:
    """Write the demo catalog (idempotent). Returns what was newly created."""
    from domain.catalog import demo_catalog

    db, service = build_service(settings)
    try:
        return service.seed(demo_catalog())
    finally:
        db.engine.dispose()


def apply_demo_rules(settings: Settings, *, by: str = "demo", why: str = "tradeguard demo") -> int:
    """Store guardians' demo rules (``guardians/demo_rules.yaml``) for this app; the version in force.

    Applying the same document again does not make a new version.
    """
    import yaml

    import guardians

    path = Path(guardians.__file__).with_name("demo_rules.yaml")
    document = yaml.safe_load(path.read_text()) or {}
    store = open_rule_store(settings)
    try:
        version = store.apply(settings.app, document, by, why)  # the same document: no new version
    finally:
        store.close()
    log.info("demo rules %s in force as version %s", path, version)
    return int(version)


# ============================================================ stores and services: one opener each
# The node, the worker, the console and the CLI commands open their stores through these, so a store
# is opened the same way (var dir, credentials, clock) wherever it is used.
def console_url(settings: Settings) -> str:
    """The console's address, linked from notifications."""
    return f"http://{settings.console_host}:{settings.console_port}"


def open_metric_store(settings: Settings, *, clock: Clock | None = None) -> Any:
    """The metric store of ``TRADEGUARD_METRICS_URL`` (``collectors.registry``) with its credentials."""
    from collectors.registry import open_store

    settings.ensure_var_dir()
    return open_store(settings.metrics_url, clock=clock, **settings.metrics_credentials())


def open_rule_store(settings: Settings, *, clock: Clock | None = None) -> Any:
    """The guardians' rule store (versions, canaries) in the control DB."""
    from guardians.store import RuleStore

    settings.ensure_var_dir()
    return RuleStore(settings.control_db, clock=clock)


def open_fleet(settings: Settings, *, clock: Clock | None = None) -> Any:
    """The nodes' heartbeats in the control DB."""
    from guardians.fleet import Fleet

    settings.ensure_var_dir()
    return Fleet(settings.control_db, clock=clock)


def open_chaos_store(settings: Settings) -> ChaosStore:
    settings.ensure_var_dir()
    return ChaosStore(settings.control_db)


def open_api_keys(settings: Settings) -> Any:
    """Callers' API keys (``tradeguard.origins.ApiKeyStore``) in the control DB."""
    from tradeguard.origins import ApiKeyStore

    settings.ensure_var_dir()
    return ApiKeyStore(settings.control_db)


def span_store_path(settings: Settings) -> Path:
    return settings.var_dir / "traces.db"


def open_span_store(settings: Settings) -> Any:
    """The embedded span store the nodes keep traces in (``var/traces.db``)."""
    from tradeguard.tracing import SpanStore

    return SpanStore(span_store_path(settings))


def open_journal(settings: Settings) -> tuple[Any, Any]:
    """(trading DB, its event journal) for reading ``domain_events``; dispose the trading DB after."""
    from domain.adapters.journal import SqlJournal
    from domain.adapters.unit_of_work import build_trading_db

    settings.ensure_var_dir()
    trading = build_trading_db(settings.trading_db, pool_size=1, max_overflow=1)
    journal = SqlJournal(trading.engine, schema=trading.schema)
    journal.ensure_schema()
    return trading, journal


def build_alert_service(
    settings: Settings,
    store: Any,
    *,
    clock: Clock | None = None,
    metrics: Any = None,
    guard_rules: Any = None,
) -> Any:
    """``alerts.service.AlertService`` over ``store`` with the settings' channels and console link;
    with ``guard_rules`` (the rule store) it applies and reverts alert proposals."""
    from alerts.service import AlertService

    return AlertService(
        store,
        clock=clock,
        metrics=metrics,
        webhook_url=settings.alert_webhook_url,
        smtp_url=settings.smtp_url,
        external_url=console_url(settings),
        guard_rules=guard_rules,
        guard_app=settings.app,
    )


def open_alert_service(settings: Settings, *, clock: Clock | None = None) -> Any:
    """The alert service on its own control-DB store (the CLI's); ``close()`` closes the store."""
    from alerts.store import AlertStore

    settings.ensure_var_dir()
    return build_alert_service(settings, AlertStore(settings.control_db), clock=clock)


# ============================================================================ the worker
WORKER_LEASE = "worker-leader"
WORKER_LEASE_TTL_S = 10.0
WORKER_LEASE_RENEW_S = 2.0


class Worker:
    """The worker's scheduled jobs around one alert engine; ``start()`` / ``stop()`` / ``close()``.

    ``evaluate`` every ``interval_s``: every alert rule → transitions → grouping, silences,
    inhibition → queued notifications → escalation; ``breakers`` every ``breaker_poll_s``: only the
    breaker rules over the nodes' ``breaker_events``; ``deliver`` every ``deliver_s``: queued
    notifications, retried with backoff. A failing run is logged, never fatal.

    High availability: with a ``leader`` lease (``collectors.lease.Lease`` named ``worker-leader`` in
    the control DB; see that module for why a lease with a fencing token and not an advisory lock),
    the ``lease`` job every ``lease_renew_s`` renews it (leader) or tries to take it (standby) and
    writes this worker's heartbeat (``worker_heartbeats``: instance, host, pid, role, last beat).
    Only the leader runs ``evaluate``, ``breakers`` and ``deliver`` (escalation is part of
    ``evaluate``); its write transactions are fenced by the token (``AlertStore.fence``) and its
    deliveries claimed under it (``AlertStore.claim_due``). A standby that takes the lease reloads
    the open alerts from the control DB and evaluates at once. The journal relay keeps its own lease
    (``journal``): it may run on any one worker, independently of the alerting leader.
    """

    def __init__(
        self,
        engine: AlertEngine,
        *,
        interval_s: float = 10.0,
        breaker_poll_s: float = 2.0,
        deliver_s: float = 2.0,
        relay: JournalRelay | None = None,
        closers: tuple[Callable[[], None], ...] = (),
        leader: Any = None,
        beats: Any = None,
        instance: str = "worker",
        lease_renew_s: float = WORKER_LEASE_RENEW_S,
    ) -> None:
        self.engine = engine
        self.relay = relay
        self.interval_s = interval_s
        self.breaker_poll_s = breaker_poll_s
        self.deliver_s = deliver_s
        self.leader = leader
        self.beats = beats
        self.instance = instance
        self.lease_renew_s = lease_renew_s
        self._closers = closers
        self._lock = threading.Lock()  # evaluate and breaker polls share the evaluator's state
        self._scheduler: BackgroundScheduler | None = None
        self.extra_jobs: dict[str, tuple[Callable[[], None], float]] = {}
        self._token: int | None = None  # the fencing token of the current leadership
        self._started_at = time.time()
        self.led_since: float | None = None  # time.time() when this worker last became leader
        self.first_eval_at: float | None = None  # time.time() of the first evaluation of that leadership
        if leader is not None:
            engine.store.fence = leader.fence

    @property
    def leading(self) -> bool:
        """True when this worker may run the leader-only jobs (always, without a lease)."""
        return self.leader is None or bool(self.leader.valid)

    @property
    def role(self) -> str:
        return "leader" if self.leading else "standby"

    def tick(self) -> str:
        """The ``lease`` job: renew or take the leader lease, then beat. Returns the role."""
        if self.leader is None:
            return "leader"
        try:
            token = self.leader.acquire()
        except Exception as exc:  # the control DB is unreachable: the lease runs out by itself
            token = None
            log.warning("worker lease: control DB error: %s", redact_text(f"{type(exc).__name__}: {exc}"))
        if token is not None and token != self._token:
            self._token = token
            self.led_since = time.time()
            self.first_eval_at = None
            log.warning("worker %s leads alerting now (fencing token %s)", self.leader.holder, token)
            self._take_over()
        elif token is None and self._token is not None:
            log.warning("worker %s stands by: leadership lost (token %s)", self.leader.holder, self._token)
            self._token = None
        self._beat()
        return self.role

    def _take_over(self) -> None:
        """Forget what an earlier leadership of this process remembered; evaluate at once."""
        from alerts.state import AlertStates

        with self._lock:
            self.engine.evaluator.states = AlertStates(self.engine.store.open_alerts())
        self.evaluate()

    def _beat(self) -> None:
        if self.beats is None or self.leader is None:
            return
        try:
            self.beats.beat(holder=self.leader.holder, instance=self.instance, role=self.role,
                            token=self.leader.token if self.leading else None, started_at=self._started_at)
        except Exception as exc:
            log.warning("worker heartbeat not written: %s", redact_text(f"{type(exc).__name__}: {exc}"))

    def evaluate(self) -> None:
        if not self.leading:
            return
        try:
            with self._lock:
                out = self.engine.cycle()
            if self.first_eval_at is None:
                self.first_eval_at = time.time()
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
        if not self.leading:
            return
        try:
            with self._lock:
                out = self.engine.poll_breakers()
            if out.get("transitions"):
                log.info("breaker poll: %s transition(s)", out["transitions"])
        except Exception:
            log.exception("breaker poll failed")

    def deliver(self) -> None:
        if not self.leading:
            return
        try:
            counts = self.engine.deliver()
            if any(counts.values()):
                log.info("notifications: %s", counts)
        except Exception:
            log.exception("notification delivery failed")

    def run_relay(self) -> None:
        """One journal relay cycle: business figures from ``domain_events`` (leased; collectors/relay.py)."""
        if self.relay is None:
            return
        try:
            out = self.relay.run_once()
            if out.events:
                log.info("relay: %d event(s), %d point(s), cursor %d, lag %.1f s",
                         out.events, out.points, out.cursor, out.lag_s or 0.0)
        except Exception:
            log.exception("relay cycle failed")

    def once(self) -> dict[str, Any]:
        """One relay cycle, one evaluation cycle and one delivery round (``tradeguard worker --once``);
        with a leader lease, only if no other worker leads (``{"leader": false}`` otherwise)."""
        if self.leader is not None and self.tick() != "leader":
            return {"leader": False, "role": "standby"}  # the leader's relay runs; not this one's
        self.run_relay()
        out = self.engine.cycle()
        out["deliver"] = self.engine.deliver()
        return out

    def leader_only(self, job: Callable[[], Any]) -> Callable[[], None]:
        """``job`` run only while this worker leads (standbys skip it); a failing run is logged."""

        def run() -> None:
            if not self.leading:
                return
            try:
                job()
            except Exception:
                log.exception("worker job %s failed", getattr(job, "__qualname__", job))

        return run

    def jobs(self) -> dict[str, tuple[Callable[[], None], float]]:
        """The scheduled jobs: id → (function, interval in seconds)."""
        jobs: dict[str, tuple[Callable[[], None], float]] = {}
        if self.leader is not None:
            jobs["lease"] = (self.tick, self.lease_renew_s)
        jobs.update({
            "evaluate": (self.evaluate, self.interval_s),
            "breakers": (self.poll_breakers, self.breaker_poll_s),
            "deliver": (self.deliver, self.deliver_s),
        })
        if self.relay is not None:
            jobs["relay"] = (self.run_relay, RELAY_INTERVAL_S)
        jobs.update(self.extra_jobs)  # e.g. the canary check (build_worker)
        return jobs

    def start(self) -> None:
        sched = BackgroundScheduler(timezone=UTC)
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}
        first_now = "lease" if self.leader is not None else "evaluate"
        for job_id, (job, seconds) in self.jobs().items():
            first = {"next_run_time": datetime.now(UTC)} if job_id == first_now else {}
            sched.add_job(job, "interval", seconds=seconds, id=job_id, **first, **common)
        sched.start()
        self._scheduler = sched
        log.info(
            "worker started: evaluate every %ss, breakers every %ss, deliver every %ss%s",
            self.interval_s,
            self.breaker_poll_s,
            self.deliver_s,
            f", leader lease {self.leader.name!r} every {self.lease_renew_s}s (TTL {self.leader.ttl_s}s)"
            if self.leader is not None else "",
        )

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        log.info("worker stopped")

    def close(self) -> None:
        """Stop the jobs, hand the leader and relay leases over at once, close the stores."""
        self.stop()
        if self.leader is not None:
            try:
                self.leader.release()
                if self.beats is not None:
                    self.beats.beat(holder=self.leader.holder, instance=self.instance, role="stopped",
                                    token=None, started_at=self._started_at)
            except Exception:
                log.exception("releasing the worker leader lease failed")
        if self.relay is not None:
            try:
                self.relay.close()
            except Exception:
                log.exception("closing the journal relay failed")
        for close in self._closers:
            try:
                close()
            except Exception:
                log.exception("closing %s failed", getattr(close, "__qualname__", close))


CANARY_CHECK_S = 5.0  # how often the leading worker compares a running canary with the rest


def build_worker(
    settings: Settings,
    *,
    clock: Clock | None = None,
    interval_s: float | None = None,
    breaker_poll_s: float = 2.0,
    deliver_s: float = 2.0,
    relay: bool = True,
    ha: bool = True,
    lease_ttl_s: float = WORKER_LEASE_TTL_S,
    lease_renew_s: float = WORKER_LEASE_RENEW_S,
    holder: str | None = None,
) -> Worker:
    """Wire the worker: the journal relay, alert store (control DB), metric store, node heartbeats,
    channels, and (``ha``) the leader lease and worker heartbeats in the control DB.

    Installs the default alert rules when the control DB has none. Nothing is started: call
    ``Worker.start()`` (``tradeguard worker`` does) or ``Worker.once()``.
    """
    import uuid

    from alerts.engine import AlertEngine, ensure_default_rules
    from alerts.store import AlertStore
    from collectors.lease import Lease, WorkerBeats

    settings.ensure_var_dir()
    store = AlertStore(settings.control_db)
    metrics = open_metric_store(settings)
    nodes = _node_source(settings.control_db)
    instance = settings.instance_id()
    leader = None
    beats = None
    if ha:
        leader = Lease(store.engine, name=WORKER_LEASE, holder=holder or f"{instance}-{uuid.uuid4().hex[:8]}",
                       ttl_s=lease_ttl_s, clock=clock)
        beats = WorkerBeats(store.engine, clock=clock)
    guard_rules = open_rule_store(settings, clock=clock)
    engine = AlertEngine(
        store,
        metrics,
        clock=clock,
        nodes=nodes,
        webhook_url=settings.alert_webhook_url,
        smtp_url=settings.smtp_url,
        external_url=console_url(settings),
        lease=leader,
        guard_rules=guard_rules,  # an alert resolving reverts its applied proposal when asked
        guard_app=settings.app,
    )
    if ensure_default_rules(store, engine.clock.now()):
        log.info("no alert rules in the control DB: installed the defaults (alerts/default_rules.yaml)")
    closers: list[Callable[[], None]] = [store.close, metrics.close, guard_rules.close]
    if nodes is not None:
        closers.append(nodes.close)
    from tradeguard.canary import worker_job  # canary auto-rollback (issue 17): one job, see Worker.jobs

    canary_job = worker_job(guard_rules, metrics, settings.app, engine.clock)
    worker = Worker(
        engine,
        interval_s=settings.alert_interval_s if interval_s is None else interval_s,
        breaker_poll_s=breaker_poll_s,
        deliver_s=deliver_s,
        relay=build_relay(settings, clock=clock, store=metrics) if relay else None,
        closers=tuple(closers),
        leader=leader,
        beats=beats,
        instance=instance,
        lease_renew_s=lease_renew_s,
    )
    worker.extra_jobs["canary"] = (worker.leader_only(canary_job), CANARY_CHECK_S)
    return worker


def _node_source(control_db: str) -> Any:
    """Node heartbeats for heartbeat alert rules, or None when the control DB's fleet table cannot
    be read at start (the worker runs; heartbeat rules see no data)."""
    from alerts.nodes import FleetNodes

    try:
        return FleetNodes.from_url(control_db)
    except Exception as exc:
        log.warning("node heartbeats unavailable (control DB %s: %s); heartbeat alert rules will see no data",
                    redact_url(control_db), redact_text(f"{type(exc).__name__}: {exc}"))
        return None


def worker_status(settings: Settings, *, clock: Clock | None = None) -> dict[str, Any]:
    """``tradeguard worker status``: the leader lease and every worker from its heartbeat
    (instance, host, pid, role leader/standby/stopped, last beat); a beat older than 3 renewals
    reads as ``gone`` whatever role it last wrote."""
    from alerts.store import build_engine
    from collectors.lease import Lease, WorkerBeats

    engine = build_engine(settings.control_db)
    try:
        lease = Lease(engine, name=WORKER_LEASE, holder="status-probe", clock=clock).status()
        workers = WorkerBeats(engine, clock=clock).workers()
    finally:
        engine.dispose()
    out = []
    for w in workers:
        role = w["role"]
        if role in ("leader", "standby") and w["age_s"] > 3 * WORKER_LEASE_RENEW_S + 1:
            role = "gone"
        if role == "leader" and lease["leader"] != w["holder"]:
            role = "standby"  # its lease ran out or was taken over since its last beat
        out.append({**w, "role": role, "last_beat": w["last_beat"].isoformat(),
                    "started_at": w["started_at"].isoformat()})
    return {"leader": lease["leader"], "token": lease["token"], "workers": out}


def worker_health(
    settings: Settings, interval_s: float, *, clock: Clock | None = None
) -> tuple[int, dict[str, Any]]:
    """``tradeguard worker --health``: (0 if the last evaluation is within 3 intervals else 1, report);
    ``role`` is this host's worker's role (``leader``/``standby``), ``leader`` the lease holder."""
    import socket

    from alerts.store import AlertStore

    store = AlertStore(settings.control_db)
    try:
        status = store.status()
        times = store.status_times()
    finally:
        store.close()
    now = (clock or SystemClock()).now()
    last = times.get("evaluate")
    age = (now - last).total_seconds() if last else None
    ok = age is not None and age <= 3 * interval_s
    relay = relay_health(settings)
    try:
        ha = worker_status(settings, clock=clock)
    except Exception as exc:
        ha = {"leader": None, "workers": [], "error": f"worker status unreadable: {type(exc).__name__}"}
    host = socket.gethostname()
    mine = [w for w in ha["workers"] if w["host"] == host and w["role"] in ("leader", "standby")]
    role = "leader" if any(w["role"] == "leader" for w in mine) else ("standby" if mine else None)
    return (0 if ok else 1), {"ok": ok, "last_cycle_age_s": age, "interval_s": interval_s, "jobs": status,
                              "relay": relay, "relay_lag_s": relay.get("lag_s"), "role": role,
                              "leader": ha.get("leader"), "workers": ha["workers"]}


# ============================================================================ the journal relay
RELAY_INTERVAL_S = 1.0
RELAY_LEASE_TTL_S = 10.0


def build_relay(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Any = None,
    broker: Any = None,
    holder: str | None = None,
    ttl_s: float = RELAY_LEASE_TTL_S,
) -> JournalRelay:
    """The journal relay on the settings' trading DB, control DB (lease + cursor), metric store and
    broker (``TRADEGUARD_BROKER_URL``; unset: in-process).

    Who runs it, and why the worker: the relay is fleet-wide work with exactly one writer, like alert
    evaluation, so it belongs to the process kind that exists once per fleet and is not on the
    request path. Nodes scale with traffic and are SIGKILLed in drills; running the relay there
    would put a lease contest and a journal scan on every request host. Several workers may still
    run: the relay's lease (control DB, fencing token) lets exactly one of them write.
    """
    import uuid

    from collectors.broker import open_broker
    from collectors.relay import JournalRelay, RelayControl
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
        store = open_metric_store(settings, clock=clock)
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


def relay_health(settings: Settings) -> dict[str, Any]:
    """The relay's last cycle as the control DB has it (works from any process)."""
    from collectors.relay import RelayControl

    try:
        control = RelayControl.from_url(settings.control_db, holder="health-probe")
        try:
            return control.status()
        finally:
            control.engine.dispose()
    except Exception as exc:
        return {"error": f"relay status unreadable: {type(exc).__name__}"}


# ============================================================================ helpers
def _ping(engine: Any, url: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        error = redact_text(f"{type(exc).__name__}: {exc}")
        return {"status": "error", "url": redact_url(url), "error": error}
    return {
        "status": "ok",
        "url": redact_url(url),
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def _status_dict(value: dict[str, Any]) -> dict[str, Any]:
    """A part's status dict, JSON-ready, with a ``status`` key ("ok" unless it says otherwise)."""
    out = dict(value)
    out.setdefault("status", "ok")
    return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _watcher_health(status: dict[str, Any]) -> dict[str, Any]:
    out = _status_dict(status)
    if status.get("ok") is False:
        out["status"] = "degraded"  # the store is unreachable: the last good rules stay in force
    return out


def _rule_version(ctx: NodeContext) -> int | None:
    """The rules version in force: the engine's, else the one the watcher last read."""
    if ctx.engine is None:
        return None
    if ctx.engine.rule_version is not None:
        return int(ctx.engine.rule_version)
    if ctx.rule_watcher is None:
        return None
    version = ctx.rule_watcher.status().get("version")
    return version if isinstance(version, int) else None


def _last_snapshot_at(ctx: NodeContext) -> datetime | None:
    return ctx.collection.last_tick_at if ctx.collection is not None else None


# === console wiring

def build_console_services(settings: Settings, *, clock: Clock | None = None) -> ConsoleServices:
    """The console's ``ConsoleServices`` on the stores of ``settings``: the metric store, the control
    DB's rule store, fleet and alerts, and chaos through a live node. Opened once per console process
    (``tradeguard/console_main.py`` caches the result); ``close()`` closes every store it opened."""
    from alerts.store import AlertStore
    from console.nodes import NodeChaos
    from console.services import ConsoleServices
    from domain.adapters.sku_sales import SkuSalesModel
    from domain.adapters.unit_of_work import build_trading_db

    clock = clock or SystemClock()
    settings.ensure_var_dir()
    closers: list[Callable[[], None]] = []
    try:
        metrics = open_metric_store(settings)
        closers.append(metrics.close)
        accounts = build_account_service(settings, clock=clock)
        closers.append(accounts.close)
        trading = build_trading_db(settings.trading_db, pool_size=2, max_overflow=2)
        closers.append(trading.engine.dispose)
        rules = open_rule_store(settings, clock=clock)
        closers.append(rules.close)
        fleet = open_fleet(settings, clock=clock)
        closers.append(fleet.close)
        alert_store = AlertStore(settings.control_db)
        closers.append(alert_store.close)
        from collectors.lease import WorkerBeats

        workers = WorkerBeats(alert_store.engine, clock=clock)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    # alert proposals are applied to (and reverted in) the rules in force
    alerts = build_alert_service(settings, alert_store, clock=clock, metrics=metrics, guard_rules=rules)
    log.info(
        "console services: app %s, control DB %s, metrics %s",
        settings.app,
        redact_url(settings.control_db),
        redact_url(settings.metrics_url),
    )
    traces = console_traces(settings)
    if traces is not None:
        closers.append(traces.close)
    return ConsoleServices(
        app=settings.app,
        metrics=metrics,
        rules=rules,
        fleet=fleet,
        chaos=NodeChaos(fleet, clock=clock, timeout_s=settings.console_node_timeout_s,
                        token=settings.ops_token_value()),
        alerts=alerts,
        clock=clock,
        currency=settings.console_currency,
        accounts=accounts,
        skus=SkuSalesModel(trading.engine),
        closers=closers,
        workers=workers,
        relay=console_relay(alert_store.engine),
        traces=traces,
    )


def console_relay(control_engine: Any) -> Any:
    """The Instances page's relay block (``status()`` → lag, cursor, leader), or None."""
    from collectors.relay import RelayControl

    try:
        return RelayControl(control_engine, holder="console-probe")
    except Exception:
        log.exception("relay status unavailable: the Instances page shows no relay block")
        return None


def console_traces(settings: Settings) -> Any:
    """The Traces page's reader on the embedded span store ``var/traces.db``, or None (the page says
    so) when the store cannot be opened."""
    from tradeguard.tracing import TraceReader

    try:
        return TraceReader(open_span_store(settings))
    except Exception:
        log.exception("span store %s unavailable: the Traces page is empty", span_store_path(settings))
        return None


# === accounts wiring
# The node's control token (TRADEGUARD_OPS_TOKEN) and the account service (users in the control DB,
# throttled sign-in, sessions) with the first admin from TRADEGUARD_BOOTSTRAP_ADMIN.
OPS_TOKEN_HOW_TO = (
    "set TRADEGUARD_OPS_TOKEN on the node to enable it, and give the same token to its callers "
    "(console, traffic simulator)"
)


def ops_auth(settings: Settings) -> Any:
    """The bearer-token check of the node's control routes and merchant actions."""
    from domain.api.auth import BearerAuth

    return BearerAuth(settings.ops_token_value(), how_to_enable=OPS_TOKEN_HOW_TO)


def build_account_service(settings: Settings, clock: Any = None) -> Any:
    """``accounts.service.AccountService`` over the control DB; sign-in throttling in Redis when
    ``TRADEGUARD_REDIS_URL`` is set (shared by every console), else in this process's memory."""
    from accounts.service import AccountService
    from accounts.store import UserStore
    from accounts.throttle import SignInThrottle

    settings.ensure_var_dir()
    throttle = None
    if settings.redis_url:
        try:
            throttle = SignInThrottle(settings.redis_url)
        except ValueError:
            log.exception("sign-in throttling in Redis (%s) unavailable: per process",
                          redact_url(settings.redis_url))
    return AccountService(
        UserStore(settings.control_db),
        clock=clock,
        throttle=throttle or SignInThrottle(),
        session_idle=timedelta(minutes=settings.console_session_idle_min),
        session_max_age=timedelta(hours=settings.console_session_max_hours),
    )


def console_cookie_policy(settings: Settings) -> Any:
    """The console's session cookie (``console.session_cookie.CookiePolicy``) from the settings: the
    entry script (reading it) and the Streamlit server's cookie routes (setting it) share it."""
    from console.session_cookie import CookiePolicy

    return CookiePolicy(
        name=settings.console_session_cookie,
        max_age_s=int(settings.console_session_max_hours * 3600),
        secure=settings.console_cookie_secure,
    )


def apply_bootstrap_admin(settings: Settings, service: Any = None) -> str | None:
    """Create the first admin from ``TRADEGUARD_BOOTSTRAP_ADMIN`` when no admin exists (console,
    worker and ``users`` commands call it once at start); ignored with a warning otherwise.
    Returns the admin created. A bad value or an unreachable control DB is logged, never raised,
    and the password is never logged."""
    from accounts.errors import AccountError

    if settings.bootstrap_admin is None:
        return None
    own = service is None
    try:
        service = service or build_account_service(settings)
    except Exception as exc:
        log.error("TRADEGUARD_BOOTSTRAP_ADMIN not applied: control DB %s unavailable (%s)",
                  redact_url(settings.control_db), type(exc).__name__)
        return None
    try:
        return service.ensure_bootstrap_admin(settings.bootstrap_admin.get_secret_value())
    except AccountError as exc:
        log.error("%s", exc)  # names the variable and what is wrong, never the value
        return None
    finally:
        if own:
            service.close()
