"""The impact preview against hand-computed cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collectors.query import Row
from dashboards.impact import FlowProposal, ParamProposal, TrafficSample, replay, samples_from_rows
from dashboards.queries import BLOCK_FIELDS

# second: passed + blocked = offered, rt
SAMPLES = [
    TrafficSample(second=100, passed=8, blocked=2, rt_avg_ms=50.0, instance="a"),  # offered 10
    TrafficSample(second=101, passed=3, blocked=0, rt_avg_ms=100.0, instance="a"),  # offered 3
    TrafficSample(second=102, passed=12, blocked=3, rt_avg_ms=200.0, instance="a"),  # offered 15
]


def test_qps_threshold_caps_each_second():
    r = replay(SAMPLES, FlowProposal(threshold=5))
    assert [(s.offered, s.would_pass, s.would_block) for s in r.seconds] == [
        (10, 5, 5),
        (3, 3, 0),
        (15, 5, 10),
    ]
    assert (r.offered, r.would_pass, r.would_block) == (28, 13, 15)
    assert (r.passed_now, r.blocked_now) == (23, 5)
    assert r.block_share == pytest.approx(15 / 28)
    assert r.seconds_blocking == 2
    assert r.peak_offered_qps == 15


def test_fractional_qps_threshold_is_floored():
    r = replay(SAMPLES, FlowProposal(threshold=5.9))
    assert r.would_pass == 13


def test_concurrency_threshold_uses_littles_law():
    # threshold 1 concurrent call: 1 / rt_s calls per second = 20, 10, 5
    r = replay(SAMPLES, FlowProposal(threshold=1, grade="concurrency"))
    assert [s.would_pass for s in r.seconds] == [10, 3, 5]
    assert r.would_block == 10


def test_concurrency_without_rt_is_not_limited_and_says_so():
    r = replay(
        [TrafficSample(second=1, passed=50, blocked=0)], FlowProposal(threshold=1, grade="concurrency")
    )
    assert r.would_block == 0
    assert r.unknown_rt_s == 1
    assert r.notes


def test_per_node_rule_replays_each_instance_cluster_rule_the_sum():
    two = [
        TrafficSample(second=7, passed=6, blocked=0, instance="a"),
        TrafficSample(second=7, passed=4, blocked=2, instance="b"),
    ]
    per_node = replay(two, FlowProposal(threshold=5))
    assert (per_node.offered, per_node.would_pass, per_node.would_block) == (12, 10, 2)
    assert len(per_node.seconds) == 1
    cluster = replay(two, FlowProposal(threshold=5, cluster=True))
    assert (cluster.would_pass, cluster.would_block) == (5, 7)


def test_param_rule_limits_the_hot_value():
    # budget 2 + 1 = 3 per second on the hot value carrying half the load (rounded up): 5, 2, 8
    r = replay(SAMPLES, ParamProposal(threshold=2, burst=1, hot_share=0.5))
    assert [s.would_block for s in r.seconds] == [2, 0, 5]
    assert r.would_pass == 21


def test_no_traffic():
    r = replay([], FlowProposal(threshold=1))
    assert not r.has_traffic
    assert r.block_share == 0.0
    assert r.seconds == ()


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlowProposal(threshold=-1),
        lambda: FlowProposal(threshold=1, grade="bogus"),  # type: ignore[arg-type]
        lambda: ParamProposal(threshold=1, hot_share=0),
        lambda: ParamProposal(threshold=1, burst=-2),
    ],
)
def test_invalid_proposals_name_the_field(make):
    with pytest.raises(ValueError, match=r"threshold|grade|hot_share|burst"):
        make()


def test_samples_from_rows_sums_every_block_reason():
    t = datetime.fromtimestamp(100, tz=UTC)
    rows = [
        Row(t, {"instance": "a"}, {"pass": 4.0, "block_flow": 1.0, "block_param": 2.0, "rt_avg_ms": 12.5}),
        Row(t, {"instance": "b"}, {"pass": 0.0, "block_flow": None, "block_system": None}),
    ]
    samples = samples_from_rows(rows, BLOCK_FIELDS)
    assert samples == [TrafficSample(second=100, passed=4, blocked=3, rt_avg_ms=12.5, instance="a")]


def test_an_unlimited_proposal_replays_the_recorded_traffic_without_blocking():
    from dashboards.impact import FlowProposal, TrafficSample, replay

    samples = [TrafficSample(second=s, passed=40, blocked=0, rt_avg_ms=10.0) for s in range(10)]
    for grade in ("qps", "concurrency"):
        r = replay(samples, FlowProposal(float("inf"), grade))
        assert r.offered == 400 and r.would_block == 0, grade
