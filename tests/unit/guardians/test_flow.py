import asyncio
import itertools

import pytest

from guardians import Blocked, FlowBlocked

from .helpers import T0, attempt, call_with_rt, engine


def test_qps_reject_at_threshold_and_next_window_passes():
    eng, clock = engine({"flow": [{"resource": "order.place", "grade": "qps", "threshold": 5}]})
    assert attempt(eng, "order.place", 8) == (5, 3)
    clock.advance(1.0)
    assert attempt(eng, "order.place", 6) == (5, 1)


def test_blocked_carries_rule_resource_and_retry_after():
    eng, _clock = engine({"flow": [{"resource": "r", "threshold": 1, "name": "tight"}]})
    eng.guard("r", lambda: None)
    with pytest.raises(FlowBlocked) as info:
        eng.guard("r", lambda: None, args={"sku": "A"})
    exc = info.value
    assert exc.resource == "r" and exc.rule.name == "tight" and exc.rule.threshold == 1
    assert 0 < exc.retry_after_s <= 1.0
    assert exc.args_ == {"sku": "A"}
    assert isinstance(exc, Blocked)


def test_concurrency_grade_rejects_beyond_threshold():
    eng, _clock = engine({"flow": [{"resource": "r", "grade": "concurrency", "threshold": 2}]})
    results = []

    def inner():
        results.append(attempt(eng, "r"))

    def outer():
        eng.guard("r", inner)

    eng.guard("r", outer)  # outer + inner hold 2, the third is rejected
    assert results == [(0, 1)]
    assert attempt(eng, "r") == (1, 0)


def test_warm_up_starts_cold_and_ramps_to_threshold():
    eng, clock = engine(
        {"flow": [{"resource": "r", "threshold": 100, "behavior": "warm_up", "warm_up_s": 10}]}
    )
    passed_per_second = []
    for _ in range(25):
        ok, _ = attempt(eng, "r", 150)  # saturating traffic
        passed_per_second.append(ok)
        clock.advance(1.0)
    assert passed_per_second[0] <= 100 / 3 + 1  # cold: threshold / cold_factor
    assert passed_per_second[-1] == 100  # warm after ~warm_up_s
    # the ramp is monotonic (never drops while traffic stays high)
    assert all(b >= a for a, b in itertools.pairwise(passed_per_second))
    assert any(40 < p < 100 for p in passed_per_second)  # and gradual


def test_warm_up_cools_down_after_idle():
    eng, clock = engine({"flow": [{"resource": "r", "threshold": 60, "behavior": "warm_up", "warm_up_s": 5}]})
    for _ in range(15):
        attempt(eng, "r", 100)
        clock.advance(1.0)
    assert attempt(eng, "r", 100)[0] == 60
    clock.advance(60.0)  # idle: tokens refill, cold again
    assert attempt(eng, "r", 100)[0] <= 21


def test_queue_spaces_calls_and_blocks_beyond_max_queue():
    eng, clock = engine(
        {"flow": [{"resource": "r", "threshold": 10, "behavior": "queue", "max_queue_ms": 250}]}
    )
    start = clock.time()
    stamps = []
    blocked = 0
    for _ in range(6):  # arriving all at once
        try:
            eng.guard("r", lambda: stamps.append(clock.time()))
        except FlowBlocked as exc:
            blocked += 1
            assert exc.retry_after_s > 0.25
        clock.set(start)  # every caller arrives at the same instant
    # 100 ms spacing: waits 0, 100, 200 ms pass; 300 ms > 250 ms blocks
    assert [round(s - start, 3) for s in stamps] == [0.0, 0.1, 0.2]
    assert blocked == 3
    assert [round(w, 3) for w in clock.slept] == [0.1, 0.2]


def test_warm_up_queue_spaces_at_the_cold_rate_first():
    eng, clock = engine(
        {"flow": [{"resource": "r", "threshold": 30, "behavior": "warm_up_queue", "max_queue_ms": 1000}]}
    )
    eng.guard("r", lambda: None)
    start = clock.time()
    eng.guard("r", lambda: None)
    # cold rate is 30 / 3 = 10/s -> the second call waits ~100 ms
    assert clock.time() - start == pytest.approx(0.1, abs=0.01)


def test_relate_limits_by_the_referenced_resource_traffic():
    eng, clock = engine(
        {
            "flow": [
                {"resource": "order.get", "threshold": 3, "strategy": "relate", "ref_resource": "order.place"}
            ]
        }
    )
    assert attempt(eng, "order.get", 5) == (5, 0)  # order.place is quiet
    attempt(eng, "order.place", 3)
    assert attempt(eng, "order.get", 2) == (0, 2)  # order.place is busy: reads give way
    clock.advance(1.0)
    assert attempt(eng, "order.get", 1) == (1, 0)


def test_chain_limits_only_the_named_origin():
    eng, clock = engine({"flow": [{"resource": "r", "threshold": 2, "strategy": "chain", "origin": "batch"}]})

    def hit(origin):
        try:
            with eng.entry("r", origin=origin):
                return True
        except Blocked:
            return False

    assert [hit("batch") for _ in range(4)] == [True, True, False, False]
    assert all(hit("web") for _ in range(10))
    clock.advance(1.0)
    assert hit("batch")


def test_adaptive_limit_shrinks_as_latency_grows():
    eng, _clock = engine(
        {"flow": [{"resource": "r", "grade": "concurrency", "threshold": 100, "behavior": "adaptive"}]}
    )
    chk = eng._flow._checkers[eng.ruleset.flow[0]]
    # healthy: 10 ms at high concurrency, the limit stays at the maximum
    for _ in range(200):
        chk.sample(10.0, 90)
    healthy = chk.limit
    assert healthy == pytest.approx(100)
    for rtt in (20.0, 40.0, 80.0, 160.0):
        for _ in range(30):
            chk.sample(rtt, 90)
    assert chk.limit < healthy / 2
    # and the check enforces the shrunken limit
    limit = int(chk.limit)
    held = []

    def nest(depth):
        if depth == 0:
            return
        try:
            eng.guard("r", lambda: nest(depth - 1))
            held.append(depth)
        except FlowBlocked:
            held.append("blocked")

    nest(limit + 3)
    assert held.count("blocked") == 1
    assert len([h for h in held if h != "blocked"]) == limit


def test_vegas_limit_shrinks_as_latency_grows():
    eng, _clock = engine(
        {
            "flow": [
                {
                    "resource": "r",
                    "grade": "concurrency",
                    "threshold": 200,
                    "behavior": "adaptive",
                    "algorithm": "vegas",
                    "min_limit": 5,
                }
            ]
        }
    )
    chk = eng._flow._checkers[eng.ruleset.flow[0]]
    chk.sample(10.0, 200)
    for _ in range(50):
        chk.sample(10.0, 200)
    before = chk.limit
    for _ in range(200):
        chk.sample(60.0, 200)
    assert chk.limit < before
    assert chk.limit >= 5


def test_adaptive_learns_from_real_calls():
    eng, clock = engine(
        {"flow": [{"resource": "r", "grade": "concurrency", "threshold": 50, "behavior": "adaptive"}]}
    )
    chk = eng._flow._checkers[eng.ruleset.flow[0]]
    for _ in range(50):
        call_with_rt(eng, clock, "r", 0.01)
    for ms in range(20, 400, 10):
        for _ in range(10):
            call_with_rt(eng, clock, "r", ms / 1000)
    assert chk.samples > 0


def test_entry_context_manager_decorator_and_async():
    eng, clock = engine({"flow": [{"resource": "r", "threshold": 2}]})

    @eng.entry("r")
    def f(x):
        return x * 2

    assert f(2) == 4

    async def main():
        async with eng.entry("r"):
            pass
        with pytest.raises(FlowBlocked):
            async with eng.entry("r"):
                pass

        @eng.entry("r2")
        async def g():
            return "g"

        return await g()

    assert asyncio.run(main()) == "g"
    clock.advance(1.0)
    s = {x.resource: x for x in eng.metrics_since(0)}
    assert s["r"].passed == 2 and s["r"].block_flow == 1 and s["r2"].passed == 1


def test_entry_records_errors():
    eng, clock = engine({})
    with pytest.raises(ValueError), eng.entry("r"):
        raise ValueError("x")
    clock.advance(1)
    (s,) = eng.metrics_since(0)
    assert s.error == 1 and s.success == 0


def test_rule_start_time_independent():
    eng, _clock = engine({"flow": [{"resource": "r", "threshold": 1}]}, start=T0 + 0.75)
    assert attempt(eng, "r", 2) == (1, 1)
