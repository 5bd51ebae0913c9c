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
guard_ns_10k, plus entry_ns (the ``with engine.entry(...)`` form), composed_ns_10k,
bare_ns, the targets and whether they were met.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

TARGET_GUARD_NS = 1000
TARGET_RATIO = 2.5
TARGET_10K_DRIFT = 0.20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds (median taken), default 15")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round, default 20000")
    parser.add_argument("--resources", type=int, default=10_000, help="resources of the many-resource case")


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


def _measure(
    variants: dict[str, Callable[[list[str]], None]], names: list[str], rounds: int
) -> dict[str, float]:
    """Median over rounds of (variant − bare) per call, variants interleaved within each round."""
    added: dict[str, list[float]] = {k: [] for k in variants if k != "bare"}
    bare_all: list[float] = []
    for loop in variants.values():  # warm up every path (creates nodes, fills caches)
        loop(names[: min(len(names), 2000)])
    for _ in range(rounds):
        bare = _timed(variants["bare"], names)
        bare_all.append(bare)
        for k, loop in variants.items():
            if k != "bare":
                added[k].append(_timed(loop, names) - bare)
    out = {k: statistics.median(v) for k, v in added.items()}
    out["bare"] = statistics.median(bare_all)
    return out


def _variants(resources: list[str]) -> dict[str, Callable[[list[str]], None]]:
    import pybreaker
    from limits import RateLimitItemPerSecond
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    from guardians import Engine, parse_document

    engine = Engine()
    engine.apply(parse_document(_rules(resources)))
    guard = engine.guard
    entry = engine.entry
    limiter = FixedWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(10**9)
    hit = limiter.hit
    breakers = {n: pybreaker.CircuitBreaker(fail_max=5, reset_timeout=10, name=n) for n in resources}

    def fn() -> None:
        return None

    def bare(names: list[str]) -> None:
        for _n in names:
            fn()

    def guarded(names: list[str]) -> None:
        for n in names:
            guard(n, fn)

    def entered(names: list[str]) -> None:
        for n in names:
            with entry(n):
                fn()

    def composed(names: list[str]) -> None:
        for n in names:
            if hit(item, n):
                breakers[n].call(fn)

    return {"bare": bare, "guard": guarded, "entry": entered, "composed": composed}


def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds, calls, many = args.rounds, args.calls, args.resources
    _progress(f"1 resource: {rounds} rounds x {calls} calls per variant")
    one = ["order.place"]
    r1 = _measure(_variants(one), one * calls, rounds)
    _progress(
        f"1 resource: guard {r1['guard']:.0f} ns, entry {r1['entry']:.0f} ns, "
        f"composed {r1['composed']:.0f} ns"
    )
    _progress(f"{many} resources: building rules and breakers")
    names = [f"resource.{i}" for i in range(many)]
    seq = (names * (calls // many + 1))[: max(calls, many)]
    rk = _measure(_variants(names), seq, rounds)
    _progress(f"{many} resources: guard {rk['guard']:.0f} ns, composed {rk['composed']:.0f} ns")
    guard_ns = round(r1["guard"], 1)
    composed_ns = round(r1["composed"], 1)
    ratio = round(composed_ns / guard_ns, 2) if guard_ns > 0 else None
    guard_10k = round(rk["guard"], 1)
    drift = round(guard_10k / guard_ns - 1, 3) if guard_ns > 0 else None
    return {
        "guard_ns": guard_ns,
        "composed_ns": composed_ns,
        "ratio_vs_composed": ratio,
        "guard_ns_10k": guard_10k,
        "entry_ns": round(r1["entry"], 1),
        "composed_ns_10k": round(rk["composed"], 1),
        "bare_ns": round(r1["bare"], 1),
        "drift_10k": drift,
        "rounds": rounds,
        "calls_per_round": calls,
        "resources_many": many,
        "python": sys.version.split()[0],
        "targets": {
            "guard_ns_max": TARGET_GUARD_NS,
            "ratio_min": TARGET_RATIO,
            "drift_10k_max": TARGET_10K_DRIFT,
        },
        "meets_targets": {
            "guard_ns": guard_ns <= TARGET_GUARD_NS,
            "ratio_vs_composed": ratio is not None and ratio >= TARGET_RATIO,
            "guard_ns_10k": drift is not None and abs(drift) <= TARGET_10K_DRIFT,
        },
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    import json

    print(json.dumps(run(p.parse_args())))
