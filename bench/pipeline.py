"""``tradeguard bench pipeline``: the metric pipeline (outbox → store) under load and through an outage.

For each store (the embedded SQLite store, and InfluxDB when ``--influx-url`` is given or a local
``influxd`` can be started in a temp dir):

1. **baseline**: direct ``store.write`` of the same points in batches, no outbox (points/s);
2. **throughput**: ``--throughput-points`` points enqueued into the durable outbox, then drained
   by the flusher into the store → ``points_per_s`` (outbox → store, sustained);
3. **steady load**: a real ``Collection`` on its APScheduler jobs with a synthetic guardians
   engine of ``--resources`` resources (1 point per resource per second) — ``node_cpu_pct`` is
   the CPU time of this process per wall second
   (percent of one core) while the store is up;
4. **outage**: the store is made unavailable for ``--outage-s`` seconds under the same load
   (InfluxDB: influxd is stopped and later restarted on the same data dir and port; embedded: the
   store refuses writes — a simulated outage, since an embedded file cannot go away), then
   restored. ``drain_x_realtime`` = outage duration / time from restore until the backlog is gone
   (the load continues meanwhile);
5. **lost**: after a final flush, every resource point is looked up in the store; ``lost`` =
   expected − found (must be 0). Business figures are the journal relay's (``bench relay``).

Progress goes to stderr; ``run`` returns the result dict (printed as the last JSON line by the CLI).
Top-level numbers are the worst over the stores measured; per-store details under ``stores``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from collectors.errors import StoreUnavailable
from collectors.outbox import Flusher, Outbox
from collectors.points import make_point
from collectors.query import Query
from collectors.registry import open_store
from collectors.runtime import Collection
from common.clock import SystemClock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outage-s", type=float, default=60.0, help="store outage duration (default 60)")
    parser.add_argument(
        "--steady-s", type=float, default=10.0, help="steady-load CPU measurement (default 10)"
    )
    parser.add_argument("--resources", type=int, default=1000, help="guarded resources, 1 point/s each")
    parser.add_argument(
        "--throughput-points", type=int, default=200_000, help="points for the throughput phase"
    )
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--stores", default="embedded,influxdb", help="comma list: embedded, influxdb")
    parser.add_argument("--influx-url", default=None, help="use this InfluxDB instead of a local influxd")
    parser.add_argument("--influx-token", default=None)


def say(msg: str) -> None:
    print(f"[bench pipeline] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Snap:
    resource: str
    second: int
    passed: int
    block_flow: int
    block_breaker: int
    block_system: int
    block_param: int
    success: int
    error: int
    rt_avg_ms: float
    rt_max_ms: float
    rt_min_ms: float
    concurrency: int


class SyntheticEngine:
    """Stands in for guardians.Engine: ``n`` resources, one completed bucket per resource per second."""

    def __init__(self, n: int) -> None:
        self.names = [f"bench.res.{i:04d}" for i in range(n)]
        self.first_second: int | None = None
        self.last_second = 0
        self.stop_at: int | None = None
        self._lock = threading.Lock()

    def add_breaker_listener(self, fn) -> None:
        pass

    def metrics_since(self, after_second: int) -> list[_Snap]:
        now = int(time.time())
        with self._lock:
            if self.first_second is None:
                self.first_second = now  # the first completed bucket is this second, next time
                return []
            hi = now - 1 if self.stop_at is None else min(now - 1, self.stop_at)
            lo = max(after_second + 1, self.first_second, now - 60)
            out = [
                _Snap(name, s, 10 + i % 7, i % 3, 0, 0, 0, 9 + i % 7, 1, 2.5, 9.0, 0.5, i % 5)
                for s in range(lo, hi + 1)
                for i, name in enumerate(self.names)
            ]
            if hi >= lo:
                self.last_second = max(self.last_second, hi)
            return out


class Switch:
    """A store proxy that can be switched off (simulated outage for the embedded store)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False

    def write(self, points) -> None:
        if self.down:
            raise StoreUnavailable("simulated outage")
        self.inner.write(points)

    def query(self, q):
        return self.inner.query(q)

    def health(self) -> dict:
        h = dict(self.inner.health())
        if self.down:
            h.update(reachable=False, error="simulated outage")
        return h

    def maintain(self, now=None):
        return None  # rollups are not part of this benchmark's node cost

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"Switch({self.inner!r})"


def _points(n: int, start: datetime):
    per_s = 1000
    return [
        make_point(
            "resource_stats",
            {"app": "bench", "instance": "tp", "resource": f"r{i % per_s}"},
            {"pass": float(i % 13), "success": 1.0, "error": 0.0, "rt_avg_ms": 2.5, "rt_max_ms": 9.0},
            start + timedelta(seconds=i // per_s),
        )
        for i in range(n)
    ]


def _throughput(store, workdir: str, n: int, batch: int) -> dict:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    pts = _points(n, start)
    t = time.perf_counter()
    for i in range(0, len(pts), batch):
        store.write(pts[i : i + batch])
    direct = n / (time.perf_counter() - t)
    say(f"  baseline direct store.write: {direct:,.0f} points/s")
    pts = _points(n, start + timedelta(minutes=30))
    outbox = Outbox(f"{workdir}/tp-outbox.db")
    t = time.perf_counter()
    for i in range(0, len(pts), batch):
        outbox.put(pts[i : i + batch])
    put_s = time.perf_counter() - t
    t = time.perf_counter()
    result = Flusher(outbox, store, clock=SystemClock(), batch_size=batch).flush()
    drain_s = time.perf_counter() - t
    outbox.close()
    assert result.error is None and result.sent == n, result
    say(f"  outbox put: {n / put_s:,.0f} points/s; outbox → store: {n / drain_s:,.0f} points/s")
    return {
        "baseline_direct_points_per_s": round(direct),
        "outbox_put_points_per_s": round(n / put_s),
        "points_per_s": round(n / drain_s),
    }


def _wait_depth(collection: Collection, below: int, timeout: float) -> float | None:
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        if collection.outbox.depth() <= below:
            return time.perf_counter() - t
        time.sleep(0.05)
    return None


def _pipeline(store_kind: str, store, make_unavailable, restore, args, workdir: str) -> dict:
    engine = SyntheticEngine(args.resources)
    collection = Collection(
        store,
        f"{workdir}/{store_kind}-outbox.db",
        app="bench",
        instance=store_kind,
        engine=engine,
        batch_size=args.batch_size,
        collect_host_metrics=False,
        host_interval_s=3600,
    )
    t_begin = datetime.now(UTC) - timedelta(seconds=1)
    collection.start()
    time.sleep(2.0)  # warm up
    say(
        f"  steady load: {args.resources} resources × 1 point/s"
        f" for {args.steady_s}s"
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(args.steady_s)
    cpu_pct = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    say(f"  node CPU at that load: {cpu_pct:.1f}% of one core (depth {collection.outbox.depth()})")

    say(f"  outage for {args.outage_s}s …")
    make_unavailable()
    time.sleep(args.outage_s)
    backlog = collection.outbox.depth()
    health = collection.health()
    say(
        f"  backlog {backlog} points; health during outage: status={health['status']} "
        f"store.reachable={health['store'].get('reachable')}"
    )
    restore()
    steady_depth = args.resources * 3
    drain_s = _wait_depth(collection, steady_depth, timeout=max(120.0, args.outage_s * 5))
    drain_x = round(args.outage_s / drain_s, 1) if drain_s else 0.0
    say(f"  drained in {drain_s if drain_s is None else round(drain_s, 2)}s → {drain_x}× real time")

    time.sleep(1.0)
    engine.stop_at = int(time.time()) - 1
    time.sleep(1.2)
    collection.stop(flush=False, close=False)
    result = collection.flush()
    while result.remaining and not result.error:
        result = collection.flush()
    assert collection.outbox.depth() == 0, "outbox not empty at the end"
    dropped, quarantined = collection.outbox.dropped(), collection.outbox.quarantined()

    # what should be in the store
    seconds = engine.last_second - engine.first_second + 1
    expected_rs = seconds * args.resources
    t_end = datetime.now(UTC) + timedelta(seconds=5)
    q = Query("resource_stats", ["pass"], t_begin, t_end, aggregate="count", where={"instance": store_kind})
    got_rs = int(sum(r.values["pass"] or 0 for r in store.query(q)))
    lost = expected_rs - got_rs
    say(
        f"  resource points expected {expected_rs} found {got_rs}; "
        f"dropped {dropped}, quarantined {quarantined} → lost {lost}"
    )
    collection.outbox.close()
    return {
        "node_cpu_pct": round(cpu_pct, 2),
        "outage_s": args.outage_s,
        "backlog_points": backlog,
        "drain_s": round(drain_s, 2) if drain_s else None,
        "drain_x_realtime": drain_x,
        "lost": lost,
        "dropped": dropped,
        "quarantined": quarantined,
        "expected_resource_points": expected_rs,
        "health_during_outage": {
            "status": health["status"],
            "store_reachable": health["store"].get("reachable"),
        },
    }


def _run_embedded(args, workdir: str) -> dict:
    say("embedded store (SQLite)")
    inner = open_store(f"sqlite:///{workdir}/metrics.db")
    out = _throughput(inner, workdir, args.throughput_points, args.batch_size)
    store = Switch(inner)

    def down():
        store.down = True

    def up():
        store.down = False

    out.update(_pipeline("embedded", store, down, up, args, workdir))
    out["outage"] = "simulated (the store refuses writes)"
    store.close()
    return out


def _run_influx(args, workdir: str) -> dict | None:
    from collectors.localserver import LocalInfluxd

    server = None
    if args.influx_url:
        url = args.influx_url
        say(f"InfluxDB store at {url.split('?')[0]}")
    else:
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        try:
            server = LocalInfluxd(binary, root=tempfile.mkdtemp(prefix="bench-influxd-", dir=workdir)).start()
        except (OSError, RuntimeError) as exc:
            say(f"no local influxd ({exc}); skipping InfluxDB")
            return None
        url = f"influxdb://127.0.0.1:{server.port}/bench?api=v1&timeout=2s"
        say(f"InfluxDB 1.x store: local influxd on port {server.port}")
    store = open_store(url, token=args.influx_token)
    try:
        out = _throughput(store, workdir, args.throughput_points, args.batch_size)
        if server is not None:
            out.update(
                _pipeline("influxdb", store, lambda: server.stop(keep_data=True), server.start, args, workdir)
            )
            out["outage"] = "influxd stopped, then restarted on the same data dir and port"
        else:
            switch = Switch(store)

            def down():
                switch.down = True

            def up():
                switch.down = False

            out.update(_pipeline("influxdb", switch, down, up, args, workdir))
            out["outage"] = "simulated (the store refuses writes)"
    finally:
        store.close()
        if server is not None:
            server.stop()
    return out


def run(args: argparse.Namespace) -> dict:
    wanted = [s.strip() for s in args.stores.split(",") if s.strip()]
    workdir = tempfile.mkdtemp(prefix="tradeguard-bench-pipeline-")
    stores: dict[str, Any] = {}
    try:
        if "embedded" in wanted:
            stores["embedded"] = _run_embedded(args, workdir)
        if "influxdb" in wanted:
            r = _run_influx(args, workdir)
            if r is not None:
                stores["influxdb"] = r
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not stores:
        return {"error": "no store measured"}
    vals = list(stores.values())
    return {
        "bench": "pipeline",
        "points_per_s": min(v["points_per_s"] for v in vals),
        "lost": sum(v["lost"] for v in vals),
        "drain_x_realtime": min(v["drain_x_realtime"] for v in vals),
        "node_cpu_pct": max(v["node_cpu_pct"] for v in vals),
        "load": {"resources": args.resources, "outage_s": args.outage_s},
        "targets": {"lost": 0, "drain_x_realtime": ">= 20", "node_cpu_pct": "<= 5"},
        "stores": stores,
    }


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="bench pipeline")
    add_arguments(parser)
    parser.add_argument("--json", action="store_true")
    result = run(parser.parse_args(argv))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
