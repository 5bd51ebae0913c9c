"""``tradeguard bench guard --json``: the added cost of a guarded call.

Measures, in one run, the median cost a guard adds to a call (entry + exit, one
flow rule + one breaker rule on the resource) over the bare call, against the
same protection composed from ``limits.FixedWindowRateLimiter`` (memory storage)
+ ``pybreaker.CircuitBreaker.call``, with 1 and with 10,000 resources.

Method: R rounds; in each, N calls of the bare function and N calls through each
guard, in the same loop shape (iterating over a list of resource names), with the
GC paused while timing; per round, added cost = (guarded − bare) / N; the result
is the median over rounds. Rules never block here (the flow threshold is far
above the rate), so it is the pass path — the one every request takes.

Last line JSON: guard_ns, composed_ns, ratio_vs_composed (composed ÷ guard),
guard_ns_10k (10,000 resources with their rules, each round calling all of them in
turn, ``--passes`` times: in the order of the rule document, which is the order their nodes lie
in memory), plus entry_ns (the ``with engine.entry(...)`` form),
composed_ns_10k (the baseline in the same case), guard_ns_10k_shuffled (the same calls
in a fixed random order, as traffic over many resources arrives: no help from memory order; not a
target), guard_ns_10k_sparse (a single pass
per round: every call is its resource's first in a new 500 ms window, so it pays the
window rotation and cold memory — the worst case), guard_ns_10k_hot (10,000
resources loaded, traffic on 100 of them), bare_ns, the targets and whether they
were met; guard_ns_origin (a ``limit_app`` flow rule, called inside a request's caller context),
guard_ns_param_http (a ``client_ip`` param rule on a route: the middleware's door,
``GuardMiddleware.enter`` — the value read from the ASGI scope behind a trusted proxy + the entry —
and the exit), threads_64_overshoot_pct (64 threads
on one QPS-limited resource on a fake clock: passes over threshold × seconds, %);
``compiled`` (whether the guard's hot path runs compiled by mypyc: ``guardians.COMPILED``; false
in a pure-Python install, see ``guardians/_native.py``) and ``compiled_modules``;
and cluster_guard_ns: the added cost of guard() under a ``cluster: true``
flow rule (+ the breaker) whose tokens are leased from Redis — TRADEGUARD_REDIS_URL,
else 127.0.0.1:6379 db 15 — with refills on the cluster's background worker as in a
node (null plus ``cluster_note`` when no Redis answers; its keys are deleted after).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

TARGET_GUARD_NS = 1000
TARGET_RATIO = 2.5
TARGET_10K_DRIFT = 0.20
TARGET_OVERSHOOT_PCT = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=21, help="timing rounds (median taken), default 21")
    parser.add_argument("--calls", type=int, default=10_000, help="calls per case and variant per round")
    parser.add_argument("--resources", type=int, default=10_000, help="resources of the many-resource case")
    parser.add_argument(
        "--passes", type=int, default=5, help="passes over all resources per round (10k case)"
    )


def _progress(msg: str) -> None:
    print(f"[bench guard] {msg}", file=sys.stderr, flush=True)


def _rules(names: list[str]) -> dict[str, Any]:
    return {
        "flow": [{"resource": n, "grade": "qps", "threshold": 1e9} for n in names],
        "breaker": [
            {"resource": n, "strategy": "error_ratio", "threshold": 0.5, "min_requests": 5, "recovery_s": 10}
            for n in names
        ],
    }


def _timed(loop: Callable[[list[str]], None], names: list[str]) -> float:
    gc.disable()
    try:
        t = time.perf_counter_ns()
        loop(names)
        return (time.perf_counter_ns() - t) / len(names)
    finally:
        gc.enable()


Case = tuple[str, dict[str, Callable[[list[str]], None]], list[str]]


def _measure(cases: list[Case], rounds: int) -> dict[str, dict[str, float]]:
    """Per case and variant, the median over rounds of (variant − bare) ns per call.

    Every round runs every case and variant back to back, so a burst of load from
    other processes hits all of them alike instead of skewing one phase.
    """
    added: dict[str, dict[str, list[float]]] = {c: {k: [] for k in v if k != "bare"} for c, v, _ in cases}
    bare_all: dict[str, list[float]] = {c: [] for c, _, _ in cases}
    for _, variants, names in cases:  # warm up every path (creates nodes and records, fills caches)
        for loop in variants.values():
            loop(names)
    for r in range(rounds):
        for case, variants, names in cases:
            bare = _timed(variants["bare"], names)
            bare_all[case].append(bare)
            for k, loop in variants.items():
                if k != "bare":
                    added[case][k].append(_timed(loop, names) - bare)
        if (r + 1) % 5 == 0:
            _progress(f"round {r + 1}/{rounds}")
    out: dict[str, dict[str, float]] = {}
    for case, per in added.items():
        out[case] = {k: statistics.median(v) for k, v in per.items()}
        out[case]["bare"] = statistics.median(bare_all[case])
    return out


def _variants(resources: list[str], *, baseline: bool = True) -> dict[str, Callable[[list[str]], None]]:
    """bare, guard, entry and composed loops over ``resources`` (``baseline=False``: bare and guard)."""
    import pybreaker
    from limits import RateLimitItemPerSecond
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    from guardians import Engine, parse_document

    engine = Engine()
    engine.apply(parse_document(_rules(resources)))
    guard = engine.guard
    entry = engine.entry

    def fn() -> None:
        return None

    def bare(names: list[str]) -> None:
        for _n in names:
            fn()

    def guarded(names: list[str]) -> None:
        for n in names:
            guard(n, fn)

    if not baseline:
        return {"bare": bare, "guard": guarded}
    limiter = FixedWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(10**9)
    hit = limiter.hit
    breakers = {n: pybreaker.CircuitBreaker(fail_max=5, reset_timeout=10, name=n) for n in resources}

    def entered(names: list[str]) -> None:
        for n in names:
            with entry(n):
                fn()

    def composed(names: list[str]) -> None:
        for n in names:
            if hit(item, n):
                breakers[n].call(fn)

    return {"bare": bare, "guard": guarded, "entry": entered, "composed": composed}


def _door_variants() -> dict[str, Callable[[list[str]], None]]:
    """The door: an origin-aware flow rule (``limit_app``) on a core resource called inside a request's
    caller context, and a ``client_ip`` param rule on a route, its value read from the ASGI scope by
    the middleware's own door (``GuardMiddleware.enter``: ``request_args`` + the entry). Thresholds
    never block."""
    from guardians import Engine, parse_document
    from guardians.context import caller_context
    from guardians.http import GuardMiddleware

    engine = Engine()
    engine.apply(parse_document({
        "flow": [{"resource": "order.place", "threshold": 1e9, "limit_app": "batch"}],
        "param": [{"resource": "POST /orders", "param": "client_ip", "threshold": 10_000_000}],
    }))
    guard, exit_ = engine.guard, engine._exit
    # the middleware's door (its request parameters + the entry), as it runs before the app; no app
    enter = GuardMiddleware(None, engine, trusted_proxies="127.0.0.1").enter  # type: ignore[arg-type]
    needs = engine.request_params("POST /orders")
    scope = {"type": "http", "method": "POST", "path": "/orders", "client": ("127.0.0.1", 5000),
             "headers": [(b"x-forwarded-for", b"203.0.113.7"), (b"content-type", b"application/json")]}

    def fn() -> None:
        return None

    def bare(names: list[str]) -> None:
        for _n in names:
            fn()

    def origin(names: list[str]) -> None:
        with caller_context("batch", "POST /orders"):
            for n in names:
                guard(n, fn)

    def param_http(names: list[str]) -> None:
        for _n in names:
            slot, t0, _wait, held, _args = enter(scope, "POST /orders", needs, None, None)
            fn()
            exit_(slot, t0, False, True, held)

    return {"bare": bare, "origin": origin, "param_http": param_http}


def threads_overshoot(threads: int = 64, threshold: int = 50, seconds: int = 5) -> dict[str, Any]:
    """64 threads on one QPS-limited resource, the engine on a fake clock the main thread moves:
    passes in the window over threshold × seconds, in % (0 when the limit holds exactly)."""
    import threading

    from common.clock import FakeClock
    from guardians import Blocked, Engine, parse_document

    t0 = 1_700_000_000.0
    clock = FakeClock(t0)
    engine = Engine(clock)
    engine.apply(parse_document({"flow": [{"resource": "r", "threshold": threshold},
                                          {"resource": "r", "grade": "concurrency", "threshold": 1000}]}))
    end = t0 + seconds
    passed = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                engine.guard("r", lambda: None)
            except Blocked:
                continue
            if clock.time() < end:
                with lock:
                    passed[0] += 1

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for th in pool:
        th.start()
    for _ in range(seconds * 20):
        time.sleep(0.004)
        clock.advance(0.05)
    stop.set()
    for th in pool:
        th.join(10)
    limit = threshold * seconds
    return {
        "threads_64_overshoot_pct": round(max(0.0, passed[0] / limit - 1) * 100, 2),
        "threads_64_passes": passed[0],
        "threads_64_limit": limit,
        "threads_64_concurrency_after": engine.stats()["resources"]["r"]["concurrency"],
    }


def _redis_url() -> str | None:
    """The Redis of the cluster case: TRADEGUARD_REDIS_URL, else the local one (db 15) if it answers."""
    import os
    import socket
    from urllib.parse import urlparse

    url = os.environ.get("TRADEGUARD_REDIS_URL") or "redis://127.0.0.1:6379/15"
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=0.5):
            return url
    except OSError:
        return None


def _cluster_variants(url: str, namespace: str) -> tuple[dict[str, Callable[[list[str]], None]], Any]:
    """One ``cluster: true`` flow rule (never blocking) + one breaker, leases from Redis, refills in
    the background worker as in a node."""
    from guardians import Engine, parse_document
    from guardians.cluster import connect

    engine = Engine()
    cluster = connect(url, namespace=namespace)
    engine.enable_cluster(cluster)
    doc = _rules(["order.place"])
    doc["flow"][0]["cluster"] = True
    engine.apply(parse_document(doc))
    cluster.start()
    guard = engine.guard

    def fn() -> None:
        return None

    def bare(names: list[str]) -> None:
        for _n in names:
            fn()

    def guarded(names: list[str]) -> None:
        for n in names:
            guard(n, fn)

    return {"bare": bare, "guard": guarded}, cluster


def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds, calls, many = args.rounds, args.calls, args.resources
    one = ["order.place"]
    names = [f"resource.{i}" for i in range(many)]
    hot = names[:: max(1, many // 100)][:100]
    shuffled = names * args.passes
    random.Random(13).shuffle(shuffled)
    _progress(f"building rules and breakers for 1 and {many} resources")
    many_variants = _variants(names)
    cases: list[Case] = [
        ("one", _variants(one), one * calls),
        # every round: several passes over all resources back to back, so each resource sees a few
        # calls per window (the steady state of a node with 10k resources in use) ...
        ("many", many_variants, names * args.passes),
        # ... the same calls in a random order, on an engine of its own (its windows do not touch the
        # cases above)
        ("many_shuffled", _variants(names, baseline=False), shuffled),
        # ... and a single pass: every call is the first of its resource in a new 500 ms window
        ("many_sparse", many_variants, list(names)),
        ("many_hot", many_variants, (hot * (calls // len(hot) + 1))[:calls]),
        ("door", _door_variants(), one * calls),
    ]
    url = _redis_url()
    cluster = None
    namespace = f"tgbench-{time.time_ns()}"
    if url is not None:
        _progress(f"cluster case: a cluster rule leasing from {url.split('@')[-1]}")
        cluster_variants, cluster = _cluster_variants(url, namespace)
        cases.append(("cluster", cluster_variants, one * calls))
    else:
        _progress("cluster case skipped: no Redis (set TRADEGUARD_REDIS_URL or run one on 127.0.0.1:6379)")
    _progress(f"{rounds} rounds, each running every case and variant on {calls} calls")
    try:
        res = _measure(cases, rounds)
    finally:
        cluster_info = _close_cluster(cluster, namespace)
    r1, rk, rh, rs = res["one"], res["many"], res["many_hot"], res["many_sparse"]
    _progress(
        f"1 resource: guard {r1['guard']:.0f} ns, entry {r1['entry']:.0f} ns, "
        f"composed {r1['composed']:.0f} ns; "
        f"{many} cycling x{args.passes}: guard {rk['guard']:.0f} ns, composed {rk['composed']:.0f} ns; "
        f"{many} sparse: guard {rs['guard']:.0f} ns, composed {rs['composed']:.0f} ns; "
        f"{many} loaded, 100 hot: guard {rh['guard']:.0f} ns, composed {rh['composed']:.0f} ns"
    )
    _progress("64 threads on one limited resource (fake clock)")
    threads = threads_overshoot()
    door = res["door"]
    guard_ns_origin = round(door["origin"], 1)
    guard_ns_param_http = round(door["param_http"], 1)
    guard_ns = round(r1["guard"], 1)
    composed_ns = round(r1["composed"], 1)
    ratio = round(composed_ns / guard_ns, 2) if guard_ns > 0 else None
    guard_10k = round(rk["guard"], 1)
    drift = round(guard_10k / guard_ns - 1, 3) if guard_ns > 0 else None
    import guardians

    return {
        "compiled": guardians.COMPILED,
        "compiled_modules": list(guardians.COMPILED_MODULES),
        "guard_ns": guard_ns,
        "composed_ns": composed_ns,
        "ratio_vs_composed": ratio,
        "guard_ns_10k": guard_10k,
        "entry_ns": round(r1["entry"], 1),
        "composed_ns_10k": round(rk["composed"], 1),
        "guard_ns_10k_shuffled": round(res["many_shuffled"]["guard"], 1),
        "guard_ns_10k_sparse": round(rs["guard"], 1),
        "composed_ns_10k_sparse": round(rs["composed"], 1),
        "guard_ns_10k_hot": round(rh["guard"], 1),
        "composed_ns_10k_hot": round(rh["composed"], 1),
        "bare_ns": round(r1["bare"], 1),
        "guard_ns_origin": guard_ns_origin,
        "guard_ns_param_http": guard_ns_param_http,
        **threads,
        **_cluster_result(res.get("cluster"), cluster_info, url),
        "drift_10k": drift,
        "rounds": rounds,
        "calls_per_round": calls,
        "resources_many": many,
        "python": sys.version.split()[0],
        "targets": {
            "guard_ns_max": TARGET_GUARD_NS,
            "ratio_min": TARGET_RATIO,
            "drift_10k_max": TARGET_10K_DRIFT,
            "guard_ns_origin_max": TARGET_GUARD_NS,
            "guard_ns_param_http_max": TARGET_GUARD_NS,
            "threads_64_overshoot_pct_max": TARGET_OVERSHOOT_PCT,
        },
        "meets_targets": {
            "guard_ns": guard_ns <= TARGET_GUARD_NS,
            "ratio_vs_composed": ratio is not None and ratio >= TARGET_RATIO,
            "guard_ns_10k": drift is not None and abs(drift) <= TARGET_10K_DRIFT,
            "guard_ns_origin": guard_ns_origin <= TARGET_GUARD_NS,
            "guard_ns_param_http": guard_ns_param_http <= TARGET_GUARD_NS,
            "threads_64_overshoot_pct": threads["threads_64_overshoot_pct"] <= TARGET_OVERSHOOT_PCT
            and threads["threads_64_concurrency_after"] == 0,
        },
    }


def _close_cluster(cluster: Any, namespace: str) -> dict[str, Any]:
    if cluster is None:
        return {}
    info = cluster.status()
    cluster.stop()
    try:
        keys = list(cluster.redis.scan_iter(f"{namespace}*"))
        if keys:
            cluster.redis.delete(*keys)
    except Exception as exc:
        _progress(f"could not delete the bench's Redis keys: {exc}")
    cluster.close()
    return info


def _cluster_result(r: dict[str, float] | None, info: dict[str, Any], url: str | None) -> dict[str, Any]:
    if r is None or url is None:
        return {
            "cluster_guard_ns": None,
            "cluster_note": "skipped: Redis absent (set TRADEGUARD_REDIS_URL or run Redis on 127.0.0.1:6379)",
        }
    return {
        "cluster_guard_ns": round(r["guard"], 1),
        "cluster_mode": info.get("mode"),
        "cluster_leases": info.get("leases"),
        "cluster_note": "median added cost of guard() under a cluster: true flow rule + breaker, tokens "
        "leased from Redis (refills in the background), against the bare call",
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    import json

    print(json.dumps(run(p.parse_args())))
