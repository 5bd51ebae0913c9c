import importlib.metadata
import tomllib
from datetime import datetime
from pathlib import Path

import pybreaker
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from common.clock import FakeClock
from guardians import BreakerBlocked, BreakerStateChanged, parse_document
from guardians.breaker.checker import BreakerChecker
from guardians.stat import ResourceNode

from .helpers import T0, call_with_rt, engine


def _engine(**rule):
    eng, clock = engine({"breaker": [{"resource": "pay", **rule}]})
    events: list[BreakerStateChanged] = []
    eng.add_breaker_listener(events.append)
    return eng, clock, events


def ok(eng, clock, rt=0.001):
    return call_with_rt(eng, clock, "pay", rt)


def fail(eng, clock, rt=0.001):
    with pytest.raises(RuntimeError):
        call_with_rt(eng, clock, "pay", rt, fail=True)


def blocked(eng, clock):
    try:
        ok(eng, clock)
        return False
    except BreakerBlocked:
        return True


def test_error_ratio_waits_for_min_requests_then_opens():
    eng, clock, events = _engine(
        strategy="error_ratio", threshold=0.5, min_requests=4, stat_interval_ms=10_000, recovery_s=5
    )
    fail(eng, clock)
    fail(eng, clock)
    fail(eng, clock)  # 3 of 3 failed, but fewer than min_requests
    assert eng.breaker_states()["pay"] == "closed"
    fail(eng, clock)  # 4 calls, 100% errors > 50%
    assert eng.breaker_states()["pay"] == "open"
    assert blocked(eng, clock)
    assert [(e.previous, e.state) for e in events] == [("closed", "open")]
    assert events[0].resource == "pay" and events[0].rule.strategy == "error_ratio"
    assert events[0].at.tzinfo is not None


def test_error_ratio_at_threshold_does_not_open():
    eng, clock, _ = _engine(strategy="error_ratio", threshold=0.5, min_requests=4, stat_interval_ms=10_000)
    ok(eng, clock)
    ok(eng, clock)
    fail(eng, clock)
    fail(eng, clock)  # exactly 50%: not above the threshold
    assert eng.breaker_states()["pay"] == "closed"
    fail(eng, clock)  # 3/5 = 60%
    assert eng.breaker_states()["pay"] == "open"


def test_stat_interval_resets_the_window():
    eng, clock, _ = _engine(strategy="error_count", threshold=3, min_requests=1, stat_interval_ms=1000)
    fail(eng, clock)
    fail(eng, clock)
    clock.advance(1.0)  # new window: the two errors are forgotten
    fail(eng, clock)
    fail(eng, clock)
    assert eng.breaker_states()["pay"] == "closed"
    fail(eng, clock)
    assert eng.breaker_states()["pay"] == "open"


def test_slow_ratio_counts_slow_calls_even_when_they_succeed():
    eng, clock, events = _engine(
        strategy="slow_ratio",
        max_rt_ms=100,
        threshold=0.5,
        min_requests=3,
        stat_interval_ms=60_000,
        recovery_s=2,
    )
    ok(eng, clock, 0.050)
    ok(eng, clock, 0.200)
    assert eng.breaker_states()["pay"] == "closed"
    ok(eng, clock, 0.300)  # 2 of 3 slow > 50%
    assert eng.breaker_states()["pay"] == "open"
    # half-open probe that is slow re-opens
    clock.advance(2.0)
    ok(eng, clock, 0.500)
    assert eng.breaker_states()["pay"] == "open"
    clock.advance(2.0)
    ok(eng, clock, 0.010)
    assert eng.breaker_states()["pay"] == "closed"
    assert [(e.previous, e.state) for e in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_recovery_then_probes_all_succeed_closes():
    eng, clock, events = _engine(
        strategy="error_count", threshold=2, min_requests=2, recovery_s=10, probes=3, stat_interval_ms=1000
    )
    fail(eng, clock)
    fail(eng, clock)
    assert eng.breaker_states()["pay"] == "open"
    clock.advance(5)
    assert blocked(eng, clock)  # still recovering
    clock.advance(5)
    # half-open: exactly `probes` trial calls are let through while they are in flight
    admitted = []

    def nested(depth):
        try:
            eng.guard("pay", lambda: nested(depth - 1) if depth else None)
            admitted.append(True)
        except BreakerBlocked:
            admitted.append(False)

    nested(4)  # nested callers: the 4th arrives while 3 probes are in flight
    assert admitted == [False, True, True, True]
    assert eng.breaker_states()["pay"] == "closed"
    assert [(e.previous, e.state) for e in events][-2:] == [("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_reopens_and_restarts_recovery():
    eng, clock, _events = _engine(strategy="error_count", threshold=1, min_requests=1, recovery_s=3, probes=2)
    fail(eng, clock)
    clock.advance(3)
    ok(eng, clock)  # probe 1 succeeds
    assert eng.breaker_states()["pay"] == "half_open"
    fail(eng, clock)  # probe 2 fails
    assert eng.breaker_states()["pay"] == "open"
    clock.advance(2)
    assert blocked(eng, clock)
    exc = None
    try:
        ok(eng, clock)
    except BreakerBlocked as e:
        exc = e
    assert exc is not None and 0 < exc.retry_after_s <= 1.0 + 1e-6
    assert exc.rule.name == "breaker:pay:error_count"


def test_pybreaker_state_machine_follows():
    eng, clock, events = _engine(strategy="error_count", threshold=1, min_requests=1, recovery_s=1)
    (br,) = eng._breaker.breakers()
    assert br.cb.current_state == "closed"
    fail(eng, clock)
    assert br.cb.current_state == "open"
    assert br.storage.opened_at == clock.now()  # stamped with the injected clock
    clock.advance(1)
    ok(eng, clock)
    assert br.cb.current_state == "closed"
    # every transition went through pybreaker and came back through its listener
    assert [(e.previous, e.state) for e in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


class DictStorage(pybreaker.CircuitBreakerStorage):
    """A storage written against pybreaker's public storage interface only (as a Redis one would be)."""

    def __init__(self) -> None:
        super().__init__("dict")
        self.data: dict[str, object] = {"state": pybreaker.STATE_CLOSED, "fail": 0, "ok": 0, "at": None}
        self.writes: list[tuple[str, object]] = []

    @property
    def state(self) -> str:
        return str(self.data["state"])

    @state.setter
    def state(self, state: str) -> None:
        self.data["state"] = state
        self.writes.append(("state", state))

    def increment_counter(self) -> None:
        self.data["fail"] = int(self.data["fail"]) + 1  # type: ignore[call-overload]

    def reset_counter(self) -> None:
        self.data["fail"] = 0

    def increment_success_counter(self) -> None:
        self.data["ok"] = int(self.data["ok"]) + 1  # type: ignore[call-overload]

    def reset_success_counter(self) -> None:
        self.data["ok"] = 0

    @property
    def counter(self) -> int:
        return int(self.data["fail"])  # type: ignore[call-overload]

    @property
    def success_counter(self) -> int:
        return int(self.data["ok"])  # type: ignore[call-overload]

    @property
    def opened_at(self) -> datetime | None:
        return self.data["at"]  # type: ignore[return-value]

    @opened_at.setter
    def opened_at(self, at: datetime) -> None:
        self.data["at"] = at
        self.writes.append(("opened_at", at))


def test_any_pybreaker_storage_holds_the_state_through_its_public_interface():
    clock = FakeClock(T0)
    storage = DictStorage()
    events: list[BreakerStateChanged] = []
    rule = parse_document(
        {"breaker": [{"resource": "pay", "strategy": "error_ratio", "threshold": 0.5, "min_requests": 2}]}
    ).breaker[0]
    br = BreakerChecker(rule, clock, events.append, storage)
    node = ResourceNode("pay")
    node.roll(clock.time())
    node.error += 2
    br.on_exit(node, clock.time(), 1.0, True)
    assert storage.state == "open" and storage.opened_at == clock.now()
    assert ("opened_at", clock.now()) in storage.writes  # the injected clock's stamp is the last word
    assert storage.writes[-1] == ("opened_at", clock.now())
    clock.advance(rule.recovery_s)
    assert br.check(node, clock.time(), None, None) == 0.0  # the probe passes
    assert storage.state == "half-open"
    br.on_exit(node, clock.time(), 1.0, False)
    assert storage.state == "closed"
    assert [(e.previous, e.state) for e in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def _pinned_range() -> SpecifierSet:
    with open(Path(__file__).parents[3] / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    (spec,) = [Requirement(d) for d in deps if Requirement(d).name == "pybreaker"]
    return spec.specifier


def test_the_installed_pybreaker_is_inside_the_tested_range():
    """checker.py drives pybreaker through its public API, tested on the versions pinned in pyproject."""
    spec = _pinned_range()
    assert any(s.operator in (">", ">=", "~=", "==") for s in spec), f"pybreaker{spec} has no lower bound"
    assert any(s.operator in ("<", "<=", "~=", "==") for s in spec), f"pybreaker{spec} has no upper bound"
    installed = importlib.metadata.version("pybreaker")
    assert Version(installed) in spec, f"pybreaker {installed} is outside the tested range {spec}"


def test_blocked_calls_are_counted_as_breaker_blocks_and_degrade():
    eng, clock = engine(
        {
            "breaker": [{"resource": "pay", "strategy": "error_count", "threshold": 1, "min_requests": 1}],
            "degrade": [{"resource": "pay", "fallback": "queue_payment"}],
        }
    )
    eng.register_fallback("queue_payment", lambda exc: "queued")
    with pytest.raises(RuntimeError):
        call_with_rt(eng, clock, "pay", 0.001, fail=True)
    assert eng.guard("pay", lambda: "charged") == "queued"
    clock.advance(1)
    (s,) = eng.metrics_since(0)
    assert s.block_breaker == 1 and s.error == 1


def test_listener_failure_does_not_break_the_call():
    eng, clock, events = _engine(strategy="error_count", threshold=1, min_requests=1)

    def bad(event):
        raise RuntimeError("listener bug")

    eng.add_breaker_listener(bad)
    fail(eng, clock)
    assert events and eng.breaker_states()["pay"] == "open"
