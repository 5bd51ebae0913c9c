"""Limits hold exactly with 64 threads on one resource, and concurrency returns to exactly 0.

The engine runs on a FakeClock that only the main thread advances, so 10 s of limited traffic
take well under a second of wall time and the window is exact: passes in [T0, T0 + 10 s) can
never exceed threshold × 10 (the sliding 1 s window of two half-seconds), with 2 % tolerance.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from common.clock import FakeClock
from guardians import Blocked, Engine, parse_document
from guardians.context import set_caller
from guardians.system.probe import FixedProbe

from .helpers import T0

THREADS = 64


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Switch threads every microsecond: a check-then-count race shows up within the run."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _hammer(eng: Engine, clock: FakeClock, resource: str, work: Any, steps: int, step_s: float,
            path: str = "guard", fallback: Any = None, args: Any = None,
            origin: str | None = None) -> dict[str, int]:
    """THREADS threads call ``resource`` as fast as they can while the main thread moves the clock
    ``steps`` × ``step_s``; returns pass/block/error counts (passes only inside the window).
    ``args``: the call's arguments; ``origin``: each thread runs in that caller context."""
    counts = {"passed": 0, "blocked": 0, "errors": 0, "fallback": 0}
    lock = threading.Lock()
    stop = threading.Event()
    end = T0 + steps * step_s

    def run() -> None:
        if origin is not None:
            set_caller(origin, None)  # this thread's own context
        while not stop.is_set():
            try:
                if path == "guard":
                    out = eng.guard(resource, work, args=args, fallback=fallback)
                else:
                    with eng.entry(resource, args):
                        out = work()
                key = "fallback" if out == "fallback" else "passed"
            except Blocked:
                key = "blocked"
            except RuntimeError:
                key = "errors"
            with lock:
                if clock.time() < end or key != "passed":
                    counts[key] += 1

    threads = [threading.Thread(target=run, daemon=True) for _ in range(THREADS)]
    for th in threads:
        th.start()
    for _ in range(steps):
        time.sleep(0.004)
        clock.advance(step_s)
    stop.set()
    for th in threads:
        th.join(10)
    return counts


def _engine(doc: dict[str, Any]) -> tuple[Engine, FakeClock]:
    clock = FakeClock(T0)
    eng = Engine(clock, probe=FixedProbe())
    eng.apply(parse_document(doc))
    return eng, clock


def test_qps_limit_holds_exactly_under_64_threads_on_both_paths():
    threshold, seconds = 50, 10
    for path in ("guard", "entry"):
        eng, clock = _engine({"flow": [{"resource": "r", "threshold": threshold},
                                       {"resource": "r", "grade": "concurrency", "threshold": 60}]})
        c = _hammer(eng, clock, "r", lambda: "ok", steps=seconds * 20, step_s=0.05, path=path)
        assert c["blocked"] > 0, c  # the limit was reached
        assert c["passed"] <= threshold * seconds * 1.02, (path, c)
        assert c["passed"] >= threshold * seconds * 0.5, (path, c)  # and the limit, not a stall, held it
        assert eng._nodes["r"].concurrency == 0


def test_concurrency_limit_holds_and_returns_to_zero_after_errors_and_fallbacks():
    limit = 4
    eng, clock = _engine({"flow": [{"resource": "r", "grade": "concurrency", "threshold": limit}],
                          "param": [{"resource": "r", "param": "sku", "threshold": 1000000}],
                          "degrade": [{"resource": "r"}]})
    in_flight = 0
    peak = 0
    calls = 0
    lock = threading.Lock()

    def work() -> str:
        nonlocal in_flight, peak, calls
        with lock:
            in_flight += 1
            calls += 1
            peak = max(peak, in_flight)
            n = calls
        try:
            time.sleep(0.0002)
            if n % 3 == 0:
                raise RuntimeError("boom")
            return "ok"
        finally:
            with lock:
                in_flight -= 1

    c = _hammer(eng, clock, "r", work, steps=50, step_s=0.1, fallback=lambda exc: "fallback")
    assert c["fallback"] > 0 and c["errors"] > 0 and c["passed"] > 0, c
    assert peak <= limit, peak
    assert eng._nodes["r"].concurrency == 0
    c = _hammer(eng, clock, "r", work, steps=20, step_s=0.1, path="entry")
    assert c["blocked"] > 0 and c["errors"] > 0, c
    assert peak <= limit, peak
    assert eng._nodes["r"].concurrency == 0


@pytest.mark.parametrize(
    ("doc", "args", "origin"),
    [
        # only a QPS rule: the compare is inlined and counted without the node's lock
        ({"flow": [{"resource": "r", "threshold": 50}]}, None, None),
        # an origin's own window (limit_app), checked without the node's lock
        ({"flow": [{"resource": "r", "threshold": 50, "limit_app": "batch"},
                   {"resource": "r", "threshold": 5, "limit_app": "web"}]}, None, "batch"),
        # a per-value param limit, counted in the param storage without the node's lock
        ({"param": [{"resource": "r", "param": "sku", "threshold": 50}]}, {"sku": "FLASH-1"}, None),
    ],
    ids=["qps-only", "limit-app", "param-value"],
)
def test_lock_free_limits_hold_exactly_under_64_threads_on_both_paths(doc, args, origin):
    threshold, seconds = 50, 10
    for path in ("guard", "entry"):
        eng, clock = _engine(doc)
        assert eng._slots["r"].inline  # the lock-free path is the one under test
        c = _hammer(eng, clock, "r", lambda: "ok", steps=seconds * 20, step_s=0.05, path=path,
                    args=args, origin=origin)
        assert c["blocked"] > 0, c
        # exact: the window [T0, T0 + 10 s) is ten whole 1 s windows (no tolerance needed here)
        assert c["passed"] <= threshold * seconds, (path, c)
        assert c["passed"] >= threshold * seconds * 0.5, (path, c)
        assert eng._nodes["r"].concurrency == 0
