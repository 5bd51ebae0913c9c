import pytest

from guardians import ParamBlocked, SystemBlocked, parse_document
from guardians.param.storage import ClockedMemoryStorage
from guardians.system.probe import FixedProbe

from .helpers import T0, attempt, engine


def inbound(eng, clock, rt_s=0.0, inner=None):
    with eng.entry("GET /x", inbound=True):
        if rt_s:
            clock.advance(rt_s)
        if inner:
            inner()


def test_system_rules_apply_to_inbound_entries_only():
    eng, clock = engine({"system": [{"metric": "qps", "threshold": 3}]})
    for _ in range(3):
        inbound(eng, clock)
    with pytest.raises(SystemBlocked) as info:
        inbound(eng, clock)
    assert info.value.rule.metric == "qps"
    assert attempt(eng, "order.place", 10) == (10, 0)  # not inbound: system rules do not apply
    clock.advance(1)
    inbound(eng, clock)
    assert eng.stats()["inbound"]["block_system_qps"] == 0


def test_system_concurrency_and_avg_rt():
    eng, clock = engine({"system": [{"metric": "concurrency", "threshold": 2}]})
    with pytest.raises(SystemBlocked):
        inbound(eng, clock, inner=lambda: inbound(eng, clock, inner=lambda: inbound(eng, clock)))
    eng2, clock2 = engine({"system": [{"metric": "avg_rt", "threshold": 50}]})
    inbound(eng2, clock2, rt_s=0.2)
    with pytest.raises(SystemBlocked):
        inbound(eng2, clock2)
    clock2.advance(1.0)
    inbound(eng2, clock2)  # the slow second slid out


def test_cpu_plain_threshold_reads_the_probe():
    probe = FixedProbe(cpu=0.5)
    eng, clock = engine({"system": [{"metric": "cpu", "threshold": 0.8}]}, probe=probe)
    inbound(eng, clock)
    probe.cpu = 0.95
    clock.advance(1.0)  # the probe is read at most once a second
    with pytest.raises(SystemBlocked):
        inbound(eng, clock)


def test_bbr_load_blocks_only_when_concurrency_exceeds_capacity():
    probe = FixedProbe(load=10.0)  # load far above the threshold the whole time
    eng, clock = engine({"system": [{"metric": "load", "threshold": 2.0}]}, probe=probe)
    assert eng.ruleset.system[0].strategy == "bbr"
    # history: 100 successes per second at 20 ms -> capacity = 100 * 0.020 = 2 concurrent calls
    for sec in range(3):
        base = T0 + sec
        for i in range(100):
            clock.set(base + i * 0.009)
            with eng.entry("GET /x", inbound=True):
                clock.advance(0.020)
    clock.set(T0 + 4)

    def nest(n):
        inbound(eng, clock, inner=(lambda: nest(n - 1)) if n > 1 else None)

    # a call arriving while 2 are in flight: 2 does not exceed capacity 2, passes despite the high load
    nest(3)
    # a call arriving while 3 are in flight: 3 > 2, blocked
    with pytest.raises(SystemBlocked) as info:
        nest(4)
    assert info.value.rule.metric == "load"
    # the same concurrency with a low load passes
    probe.load = 0.5
    clock.advance(1.0)
    nest(4)


def test_param_limits_each_value_separately_with_exceptions():
    eng, clock = engine(
        {
            "param": [
                {
                    "resource": "order.place",
                    "param": "sku",
                    "threshold": 2,
                    "exceptions": {"HOT": 5, "BANNED": 0},
                }
            ]
        }
    )
    assert attempt(eng, "order.place", 4, args={"sku": "A"}) == (2, 2)
    assert attempt(eng, "order.place", 3, args={"sku": "B"}) == (2, 1)
    assert attempt(eng, "order.place", 7, args={"sku": "HOT"}) == (5, 2)
    assert attempt(eng, "order.place", 1, args={"sku": "BANNED"}) == (0, 1)
    assert attempt(eng, "order.place", 3, args={"buyer": "x"}) == (3, 0)  # no sku: the rule does not apply
    assert attempt(eng, "order.place", 3) == (3, 0)
    clock.advance(1.0)
    assert attempt(eng, "order.place", 3, args={"sku": "A"}) == (2, 1)


def test_param_blocked_names_value_and_rule():
    eng, clock = engine({"param": [{"resource": "r", "param": "buyer", "threshold": 1, "duration_s": 10}]})
    eng.guard("r", lambda: None, args={"buyer": "b1"})
    with pytest.raises(ParamBlocked) as info:
        eng.guard("r", lambda: None, args={"buyer": "b1"})
    assert "buyer=b1" in str(info.value) and info.value.retry_after_s == 10
    clock.advance(9.9)
    assert attempt(eng, "r", 1, args={"buyer": "b1"}) == (0, 1)
    clock.advance(0.2)
    assert attempt(eng, "r", 1, args={"buyer": "b1"}) == (1, 0)


def test_param_burst_is_a_pool_above_the_threshold():
    eng, clock = engine({"param": [{"resource": "r", "param": "sku", "threshold": 3, "burst": 4}]})
    assert attempt(eng, "r", 10, args={"sku": "A"}) == (7, 3)  # 3 + a burst of 4
    clock.advance(1.0)
    assert attempt(eng, "r", 10, args={"sku": "A"}) == (3, 7)  # burst pool spent: threshold only
    clock.advance(10.0)
    assert attempt(eng, "r", 10, args={"sku": "A"}) == (7, 3)  # refilled after 10 windows


def test_param_counts_as_param_blocks():
    eng, clock = engine({"param": [{"resource": "r", "param": "sku", "threshold": 1}]})
    attempt(eng, "r", 3, args={"sku": "A"})
    clock.advance(1.0)
    (s,) = eng.metrics_since(0)
    assert s.block_param == 2 and s.passed == 1


def test_clocked_storage_sweeps_expired_values():
    from common.clock import FakeClock

    clock = FakeClock()
    st = ClockedMemoryStorage(clock, sweep_every=100)
    for i in range(1000):
        st.incr(f"k{i}", 1)
        clock.advance(0.01)
    assert len(st) < 250
    assert st.get("k999") == 1 and st.get("k0") == 0


def test_param_windows_follow_the_active_values_and_never_move_back():
    from guardians.param.checker import _Windows

    w = _Windows(1.0, sweep_every=100)
    t = 1000.0
    for i in range(1000):  # a new value every 10 ms: each window ends after 1 s
        assert w.hit(f"v{i}", t) == 1
        t += 0.01
    assert len(w) < 250  # ended windows are swept as new ones start
    assert w.hit("v999", t) == 2  # a running window counts on
    assert w.hit("v999", t - 5.0) == 3  # an older clock reading counts in the running window
    assert w.hit("v999", t + 1.0) == 1  # the window ended: a new one starts with this call


def test_param_rule_windows_restart_with_a_new_rule_and_count_per_value():
    eng, clock = engine({"param": [{"resource": "r", "param": "sku", "threshold": 2}]})
    assert attempt(eng, "r", 3, args={"sku": "A"}) == (2, 1)
    assert attempt(eng, "r", 3, args={"sku": "B"}) == (2, 1)  # per value
    eng.apply(parse_document({"param": [{"resource": "r", "param": "sku", "threshold": 3}]}))
    assert attempt(eng, "r", 4, args={"sku": "A"}) == (3, 1)  # the edited rule starts fresh windows
    clock.advance(1.0)
    assert attempt(eng, "r", 4, args={"sku": "A"}) == (3, 1)
