"""The composition root: the ONLY place that wires concrete adapters together.

``build_node(settings, host=…, port=…)`` returns a ``Node``: the trading core (trading DB,
simulated payment gateway, EventBus, TradingService), its FastAPI app, and the optional
parts plugged around it, each wired by one function below:

- ``wire_guardians``  — guardians Engine as the core's Guard port, GuardMiddleware, the
  ``Blocked`` → 429/503 problem+json handler, RuleWatcher, Fleet heartbeats, ``/ops/stats``,
  ``/ops/rules``;
- ``wire_trading_core`` — trading DB, gateway, bus, service;
- ``wire_collectors`` — collectors ``Collection`` subscribed to the EventBus (metrics);
- ``wire_chaos`` — payment-gateway chaos settings polled from the control DB;
- ``wire_timeouts`` — the scheduled cancellation of unpaid orders;
- ``wire_ops_routes`` — ``GET /ops/health`` and ``GET|PUT /ops/chaos/payment``.

An optional package that is missing (or not finished) is skipped with a log line and shows
up in ``/ops/health`` as ``absent``: the node runs with what is there. Nothing here runs at
import time; ``Node.start()`` starts the scheduler and the background parts, ``Node.stop()``
stops them.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import make_url

from common.clock import Clock, SystemClock
from domain.ports import EventBus, Guard, NoopGuard
from tradeguard.chaos import ChaosError, ChaosPoller, ChaosStore
from tradeguard.settings import Settings

log = logging.getLogger(__name__)

HealthCheck = Callable[[], dict[str, Any]]
PROBLEM_JSON = "application/problem+json"


def tradeguard_version() -> str:
    try:
        return metadata.version("tradeguard")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def masked_url(url: str) -> str:
    """A store URL safe to show: password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def optional_module(name: str, *attrs: str) -> Any | None:
    """Import ``name`` if it exists and has ``attrs``; else None (logged). Never raises."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        log.info("optional part %s is not available (%s): skipping it", name, exc)
        return None
    except Exception:
        log.exception("optional part %s failed to import: skipping it", name)
        return None
    missing = [a for a in attrs if not hasattr(module, a)]
    if missing:
        log.info("optional part %s lacks %s: skipping it", name, ", ".join(missing))
        return None
    return module


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


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
    on_start: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)  # part -> "on" | "absent" | "error: …"
    # set by the wiring functions
    trading_db: Any = None
    gateway: Any = None
    service: Any = None
    engine: Any = None  # guardians.Engine
    rule_watcher: Any = None
    fleet: Any = None
    collection: Any = None
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
def fallbacks() -> dict[str, Callable[[Any], Any]]:
    """Named fallbacks that degrade rules may choose (``degrade: [{resource, fallback: NAME}]``)."""
    from domain.ports import ChargeResult

    def queue_payment(exc: Any) -> ChargeResult:
        # payment.charge is blocked (breaker open): do not call the gateway; the payment waits in
        # state "queued" (order pending_payment, stock reserved, POST /orders/{id}/pay → 202) and the
        # node's "payment-retry" job (TradingService.retry_queued_payments) charges it later.
        return ChargeResult(ok=False, queued=True,
                            reason=f"payment queued: the gateway is degraded ({type(exc).__name__})")

    return {"queue_payment": queue_payment}


def wire_guardians(ctx: NodeContext) -> None:
    """guardians Engine as Guard port, middleware, Blocked handler, rule watcher, heartbeats, routes."""
    guardians = optional_module("guardians", "Engine", "Blocked")
    if guardians is None:
        ctx.parts["guardians"] = "absent"
        return
    s = ctx.settings
    engine = guardians.Engine(clock=None)
    ctx.engine = engine
    ctx.guard = engine
    http = optional_module("guardians.http", "GuardMiddleware", "blocked_problem")
    if http is not None:
        from guardians.starlette_routes import starlette_route_resolver

        def install_middleware(app: FastAPI) -> None:
            resolve = starlette_route_resolver(app)

            def route_resource(scope: Any) -> str | None:
                if str(scope.get("path", "")).startswith("/ops/"):
                    return None  # the node's own ops endpoints are never guarded
                return resolve(scope)

            app.add_middleware(http.GuardMiddleware, engine=engine, route_resolver=route_resource)

        ctx.app_hooks.append(install_middleware)
        to_problem = http.blocked_problem
    else:
        ctx.parts["guard_middleware"] = "absent"
        to_problem = _blocked_problem

    def on_blocked(request: Request, exc: Exception) -> JSONResponse:
        status, headers, body = to_problem(exc)
        return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)

    ctx.exception_handlers[guardians.Blocked] = on_blocked
    for name, fn in fallbacks().items():
        engine.register_fallback(name, fn)

    watcher_mod = optional_module("guardians.watcher", "RuleWatcher")
    store_mod = optional_module("guardians.store", "RuleStore")
    store = None
    if watcher_mod and store_mod:
        try:
            store = store_mod.RuleStore(s.control_db)
        except Exception as exc:  # the node serves without rules rather than not at all
            log.exception("rule store %s unavailable: no rules on this node", masked_url(s.control_db))
            error = f"{type(exc).__name__}: {exc}"
            ctx.health_checks["rule_watcher"] = lambda: {"status": "error", "error": error}
    if watcher_mod and store_mod and store is not None:
        watcher = watcher_mod.RuleWatcher(store, engine, s.app, interval_s=s.rules_poll_s)
        ctx.rule_watcher = watcher
        ctx.on_start.append(watcher.start)
        ctx.on_stop.append(store.close)  # hooks run in reverse: the watcher stops before its store closes
        ctx.on_stop.append(watcher.stop)
        ctx.health_checks["rule_watcher"] = lambda: _watcher_health(watcher.status())
    elif "rule_watcher" not in ctx.health_checks:
        ctx.health_checks["rule_watcher"] = lambda: {"status": "absent"}

    fleet_mod = optional_module("guardians.fleet", "Fleet")
    fleet = None
    if fleet_mod:
        try:
            fleet = fleet_mod.Fleet(s.control_db)
        except Exception:
            log.exception("fleet heartbeats unavailable (control DB %s)", masked_url(s.control_db))
    if fleet is not None:
        ctx.fleet = fleet
        address = f"http://{ctx.host}:{ctx.port}"
        version = tradeguard_version()

        def beat() -> None:
            fleet.beat(ctx.instance, address, version, _rule_version(ctx), _last_snapshot_at(ctx))

        ctx.every(s.heartbeat_s, beat, "heartbeat")
        ctx.on_stop.append(fleet.close)

    cluster_mod = optional_module("guardians.cluster", "connect") if s.redis_url else None
    if cluster_mod is not None and s.redis_url:  # cluster-wide limits and shared breakers (H8)
        try:
            live = fleet.live_count if fleet is not None else None
            cluster = cluster_mod.connect(s.redis_url, live_nodes=live, namespace=f"tradeguard:{s.app}")
            engine.enable_cluster(cluster)
            ctx.on_start.append(cluster.start)
            ctx.on_stop.append(cluster.close)
        except Exception:
            log.exception("cluster mode unavailable (redis %s): per-node limits", masked_url(s.redis_url))
    if hasattr(engine, "cluster_status"):
        ctx.health_checks["cluster"] = engine.cluster_status

    router = APIRouter(tags=["ops"])

    @router.get("/ops/stats")
    def ops_stats() -> dict[str, Any]:
        return engine.stats()

    @router.get("/ops/rules")
    def ops_rules() -> dict[str, Any]:
        watcher_status = _status_dict(ctx.rule_watcher.status()) if ctx.rule_watcher else {}
        ruleset = getattr(engine, "ruleset", None)
        as_doc = getattr(ruleset, "to_document", None)
        return {
            "app": s.app,
            "instance": ctx.instance,
            "version": _rule_version(ctx),
            "watcher": watcher_status,
            "rules": as_doc() if callable(as_doc) else None,
        }

    ctx.routers.append(router)
    ctx.parts["guardians"] = "on"


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
    )
    db_engine = ctx.trading_db.engine
    ctx.health_checks["trading_db"] = lambda: _ping(db_engine, s.trading_db)
    ctx.on_stop.append(db_engine.dispose)
    ctx.parts["trading_core"] = "on"


def wire_collectors(ctx: NodeContext) -> None:
    """Metrics: collectors ``Collection`` fed by the EventBus and the guardians' snapshots."""
    runtime = optional_module("collectors.runtime", "Collection")
    if runtime is None:
        ctx.parts["collectors"] = "absent"
        ctx.health_checks["metrics"] = lambda: {"status": "absent"}
        return
    s = ctx.settings
    try:
        collection = _build_collection(runtime, ctx)
    except Exception as exc:
        log.exception("collectors could not be wired: metrics are off on this node")
        error = f"{type(exc).__name__}: {exc}"
        ctx.parts["collectors"] = f"error: {error}"
        ctx.health_checks["metrics"] = lambda: {
            "status": "error",
            "error": error,
            "url": masked_url(s.metrics_url),
        }
        return
    ctx.collection = collection
    ctx.bus.subscribe(collection.on_event)
    ctx.on_start.append(collection.start)
    ctx.on_stop.append(collection.stop)
    ctx.health_checks["metrics"] = lambda: _status_dict(collection.health())
    ctx.parts["collectors"] = "on"


def _build_collection(runtime: Any, ctx: NodeContext) -> Any:
    s = ctx.settings
    safe_instance = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in ctx.instance)
    outbox_dir = s.var_dir / "outbox"
    outbox_dir.mkdir(parents=True, exist_ok=True)
    return runtime.Collection.open(
        s.metrics_url,
        outbox_dir / f"{safe_instance}.db",
        app=s.app,
        instance=ctx.instance,
        engine=ctx.engine,
        **s.metrics_credentials(),
    )


def wire_chaos(ctx: NodeContext) -> None:
    """Payment-gateway chaos settings, read from the control DB every ``chaos_poll_s``."""
    s = ctx.settings
    try:
        store = ChaosStore(s.control_db)
    except Exception as exc:  # no chaos control rather than no node
        log.exception("control DB %s unavailable: payment chaos is off", masked_url(s.control_db))
        error = f"{type(exc).__name__}: {exc}"
        ctx.health_checks["control_db"] = lambda: {
            "status": "error",
            "url": masked_url(s.control_db),
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


def wire_timeouts(ctx: NodeContext) -> None:
    """Cancel unpaid orders past their deadline (stock released), every ``timeout_sweep_s``; charge
    queued payments again (``retry_queued_payments``, race-safe across nodes) every ``payment_retry_s``."""
    service = ctx.service
    ctx.every(ctx.settings.timeout_sweep_s, service.cancel_expired, "timeout-cancel")
    ctx.every(ctx.settings.payment_retry_s, service.retry_queued_payments, "payment-retry")
    ctx.parts["timeouts"] = "on"


class ChaosUpdate(BaseModel):
    latency_ms: int | None = None
    error_rate: float | None = None
    outage: bool | None = None
    reset: bool = False
    by: str = "api"


def wire_ops_routes(ctx: NodeContext, health: Callable[[], dict[str, Any]]) -> None:
    """``GET /ops/health``; ``GET|PUT /ops/chaos/payment`` (what the console's Chaos page calls)."""
    router = APIRouter(tags=["ops"])

    @router.get("/ops/health")
    def ops_health() -> JSONResponse:
        body = health()
        return JSONResponse(body, status_code=503 if body["status"] == "down" else 200)

    def no_chaos() -> JSONResponse:
        return problem(
            503, "Chaos control unavailable", "the control DB could not be opened; see /ops/health"
        )

    @router.get("/ops/chaos/payment", response_model=None)
    def get_chaos() -> dict[str, Any] | JSONResponse:
        if ctx.chaos_store is None:
            return no_chaos()
        settings, version = ctx.chaos_store.read("payment")
        applied = ctx.chaos_poller.status() if ctx.chaos_poller else None
        return {"target": "payment", **settings.as_dict(), "version": version, "applied": applied}

    @router.put("/ops/chaos/payment", response_model=None)
    def put_chaos(update: ChaosUpdate) -> dict[str, Any] | JSONResponse:
        if ctx.chaos_store is None:
            return no_chaos()
        try:
            if update.reset:
                settings = ctx.chaos_store.reset("payment", by=update.by)
            else:
                settings = ctx.chaos_store.set(
                    "payment",
                    latency_ms=update.latency_ms,
                    error_rate=update.error_rate,
                    outage=update.outage,
                    by=update.by,
                )
        except ChaosError as exc:
            field_name = str(exc).split(" ", 1)[0]
            return problem(422, "Invalid chaos setting", str(exc), field=field_name)
        if ctx.chaos_poller is not None:
            ctx.chaos_poller.poll()  # this node at once; the others within chaos_poll_s
        return {"target": "payment", **settings.as_dict()}

    ctx.routers.append(router)


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
                checks[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        statuses = {c.get("status", "ok") for c in checks.values()}
        if checks.get("trading_db", {}).get("status") not in (None, "ok"):
            overall = "down"
        elif statuses <= {"ok", "absent"}:
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
    wire_trading_core(ctx)
    if collectors:
        wire_collectors(ctx)
    else:
        ctx.parts["collectors"] = "off"
    wire_chaos(ctx)
    wire_timeouts(ctx)
    node_ref: list[Node] = []
    wire_ops_routes(ctx, lambda: node_ref[0].health())
    app = create_app(ctx.service, exception_handlers=ctx.exception_handlers, routers=tuple(ctx.routers))
    for hook in ctx.app_hooks:
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


def apply_demo_rules(settings: Settings, *, by: str = "demo", why: str = "tradeguard demo") -> int | None:
    """Store guardians' demo rules (``guardians/demo_rules.yaml``) for this app, if guardians is there.

    Returns the version in force, or None when guardians (or its demo rules) are absent.
    Applying the same document again does not make a new version.
    """
    store_mod = optional_module("guardians.store", "RuleStore")
    if store_mod is None:
        return None
    import yaml

    guardians_pkg = importlib.import_module("guardians")
    from pathlib import Path

    path = Path(guardians_pkg.__file__).with_name("demo_rules.yaml")
    if not path.exists():
        log.info("no %s: the demo runs without rules", path)
        return None
    document = yaml.safe_load(path.read_text()) or {}
    settings.ensure_var_dir()
    store = store_mod.RuleStore(settings.control_db)
    try:
        version = store.apply(settings.app, document, by, why)  # the same document: no new version
    finally:
        store.close()
    log.info("demo rules %s in force as version %s", path, version)
    return int(version)


# ============================================================================ helpers
def _blocked_problem(exc: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Fallback of ``guardians.http.blocked_problem``: 503 for an open breaker, else 429."""
    breaker = type(exc).__name__ == "BreakerBlocked"
    status = 503 if breaker else 429
    retry = max(1, round(float(getattr(exc, "retry_after_s", 1) or 1)))
    rule = getattr(exc, "rule", None)
    body = {
        "type": "about:blank",
        "title": "Service unavailable: breaker open" if breaker else "Too many requests",
        "status": status,
        "detail": str(exc),
        "resource": getattr(exc, "resource", None),
        "rule": _jsonable(getattr(rule, "__dict__", rule)),
    }
    return status, {"Retry-After": str(retry)}, body


def _ping(engine: Any, url: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return {"status": "error", "url": masked_url(url), "error": f"{type(exc).__name__}: {exc}"}
    return {
        "status": "ok",
        "url": masked_url(url),
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def _status_dict(value: Any) -> dict[str, Any]:
    """A part's status as a dict with a ``status`` key (accepts dicts, dataclasses, objects)."""
    if isinstance(value, dict):
        out = dict(value)
    elif hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        out = asdict(value)
    else:
        out = (
            {k: v for k, v in vars(value).items() if not k.startswith("_")}
            if hasattr(value, "__dict__")
            else {}
        )
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
    version = getattr(ctx.engine, "rule_version", None)
    if isinstance(version, int):
        return version
    if ctx.rule_watcher is None:
        return None
    try:
        status = _status_dict(ctx.rule_watcher.status())
    except Exception:
        return None
    v = status.get("version")
    return int(v) if isinstance(v, int) else None


def _last_snapshot_at(ctx: NodeContext) -> datetime | None:
    if ctx.collection is None:
        return None
    getter = getattr(ctx.collection, "last_tick_at", None)
    value = getter() if callable(getter) else getter
    return value if isinstance(value, datetime) else None
