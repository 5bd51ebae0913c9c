from common.clock import FakeClock
from guardians.stat import RING, ResourceNode

from .helpers import T0, attempt, call_with_rt, engine


def test_pass_count_slides_over_two_half_second_buckets():
    node = ResourceNode("r")
    t = T0
    node.roll(t)
    node.passed += 3
    t += 0.5
    node.roll(t)
    node.passed += 2
    assert node.current_pass_count() == 5
    t += 0.5  # the first bucket slides out
    node.roll(t)
    assert node.current_pass_count() == 2
    assert node.pass_count(int(t * 2)) == 2 and node.ring[int((t - 0.5) * 2) % RING].passed == 2
    t += 1.0
    node.roll(t)
    assert node.current_pass_count() == 0


def test_metrics_since_returns_every_completed_second_once_even_when_read_late():
    eng, clock = engine({})
    for sec in range(5):
        for _ in range(sec + 1):
            call_with_rt(eng, clock, "r", 0.010)
        clock.set(T0 + sec + 1)
    # read 5 s late: all five seconds are still there, the current one is not
    snaps = eng.metrics_since(0)
    assert [s.second for s in snaps] == [int(T0) + i for i in range(5)]
    assert [s.passed for s in snaps] == [1, 2, 3, 4, 5]
    assert all(s.success == s.passed and s.error == 0 for s in snaps)
    assert abs(snaps[2].rt_avg_ms - 10.0) < 0.01 and abs(snaps[2].rt_max_ms - 10.0) < 0.01
    # incremental: after the last second read, nothing new
    assert eng.metrics_since(snaps[-1].second) == []


def test_minute_window_is_bounded():
    eng, clock = engine({})
    for _ in range(200):
        attempt(eng, "r")
        clock.advance(1.0)
    node = eng._nodes["r"]
    assert len(node.ring) == RING and len([r for r in node.ring if r is not None]) <= RING
    snaps = eng.metrics_since(0)
    assert len(snaps) <= 60
    assert snaps[-1].second == int(clock.time()) - 1


def test_errors_rt_min_max_and_blocks_by_reason():
    eng, clock = engine({"flow": [{"resource": "r", "threshold": 3}]})
    call_with_rt(eng, clock, "r", 0.005)
    try:
        call_with_rt(eng, clock, "r", 0.020, fail=True)
    except RuntimeError:
        pass
    call_with_rt(eng, clock, "r", 0.001)
    assert attempt(eng, "r", 2) == (0, 2)
    clock.advance(1.0)
    (s,) = eng.metrics_since(0)
    assert (s.passed, s.success, s.error, s.block_flow, s.blocked) == (3, 2, 1, 2, 2)
    assert abs(s.rt_min_ms - 1.0) < 0.01 and abs(s.rt_max_ms - 20.0) < 0.01
    assert abs(s.rt_avg_ms - 26.0 / 3) < 0.01


def test_stats_reports_sliding_window_and_concurrency():
    eng, _clock = engine({})
    seen = {}

    def work():
        seen.update(eng.stats()["resources"]["r"])

    eng.guard("r", work)
    assert seen["concurrency"] == 1 and seen["pass_qps"] == 1
    st = eng.stats()
    assert st["resources"]["r"]["concurrency"] == 0
    assert st["resources"]["r"]["success_qps"] == 1


def test_fake_clock_sleep_advances():
    c = FakeClock(10.0)
    c.sleep(0.25)
    assert c.time() == 10.25 and c.slept == [0.25]
