from __future__ import annotations

import math
from datetime import timedelta

import pytest

from collectors.errors import ConfigError, PointError
from collectors.outbox import Flusher, Outbox
from collectors.points import make_point

from .fakes import FakeClock, FakeStore

CLOCK = FakeClock()


def pts(n: int, start: int = 0):
    return [
        make_point(
            "resource_stats",
            {"app": "tg", "instance": "n1", "resource": f"r{i % 7}"},
            {"pass": float(i)},
            CLOCK.now() + timedelta(seconds=start + i),
        )
        for i in range(n)
    ]


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.db", max_points=1000)
    yield box
    box.close()


def test_flush_moves_everything_and_empties_the_queue(outbox):
    store = FakeStore()
    outbox.put(pts(250))
    result = Flusher(outbox, store, clock=CLOCK, batch_size=100).flush()
    assert (result.sent, result.batches, result.error, result.remaining) == (250, 3, None, 0)
    assert len(store.points) == 250 and outbox.depth() == 0


def test_store_down_keeps_points_and_reports_error(outbox):
    store = FakeStore()
    store.down = True
    outbox.put(pts(10))
    flusher = Flusher(outbox, store, clock=CLOCK)
    result = flusher.flush()
    assert result.sent == 0 and "down" in result.error and outbox.depth() == 10
    assert flusher.state.last_success_at is None and flusher.state.consecutive_failures == 1
    store.down = False
    assert flusher.flush().sent == 10
    assert flusher.state.last_success_at == CLOCK.now() and flusher.state.last_error is None


def test_pending_points_survive_reopen(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put(pts(5))
    box.close()
    box = Outbox(tmp_path / "o.db")
    assert box.depth() == 5
    store = FakeStore()
    Flusher(box, store, clock=CLOCK).flush()
    assert sorted(p.fields["pass"] for p in store.points) == [0, 1, 2, 3, 4]
    box.close()


def test_invalid_point_rejects_the_whole_put(outbox):
    good = pts(3)
    bad = make_point("host", {"app": "tg", "instance": "n1"}, {"cpu": 1.0}, CLOCK.now())
    bad = type(bad)(bad.measurement, bad.tags, {"cpu": math.nan}, bad.time)
    with pytest.raises(PointError, match=r"host\.cpu"):
        outbox.put([*good, bad])
    assert outbox.depth() == 0


def test_cap_drops_oldest_counts_and_persists(tmp_path):
    box = Outbox(tmp_path / "o.db", max_points=100)
    box.put(pts(80))
    box.put(pts(50, start=80))
    assert box.depth() == 100 and box.dropped() == 30
    store = FakeStore()
    Flusher(box, store, clock=CLOCK).flush()
    offsets = sorted(int((p.time - CLOCK.now()).total_seconds()) for p in store.points)
    assert offsets == list(range(30, 130))
    box.close()
    assert Outbox(tmp_path / "o.db", max_points=100).dropped() == 30


def test_cap_keeps_the_newest(tmp_path):
    box = Outbox(tmp_path / "o.db", max_points=10)
    for i in range(5):
        box.put(pts(4, start=i * 4))
    store = FakeStore()
    Flusher(box, store, clock=CLOCK).flush()
    times = sorted(p.time for p in store.points)
    assert len(times) == 10 and times[0] == CLOCK.now() + timedelta(seconds=10)
    assert box.dropped() == 10


def test_malformed_point_is_quarantined_and_the_rest_flows(outbox):
    store = FakeStore()
    store.reject_if = lambda p: p.fields["pass"] in (13.0, 77.0)
    outbox.put(pts(100))
    result = Flusher(outbox, store, clock=CLOCK, batch_size=64).flush()
    assert result.quarantined == 2 and result.sent == 98 and result.error is None
    assert outbox.depth() == 0 and outbox.quarantined() == 2
    kept = outbox.quarantined_points()
    assert sorted(p.fields["pass"] for p, _ in kept) == [13.0, 77.0]
    assert all("400" in reason for _, reason in kept)
    # later points are not blocked
    outbox.put(pts(5, start=200))
    assert Flusher(outbox, store, clock=CLOCK).flush().sent == 5


def test_points_in_flight_are_not_dropped(tmp_path):
    box = Outbox(tmp_path / "o.db", max_points=10)
    box.put(pts(10))
    inflight = box.peek(4)
    box.put(pts(3, start=10))  # 3 over the cap: drop the 3 oldest not in flight
    assert box.dropped() == 3
    box.ack([rid for rid, _ in inflight])
    box.release()
    assert box.depth() == 6


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="durability"):
        Outbox(tmp_path / "o.db", durability="sometimes")
    with pytest.raises(ConfigError, match="max_points"):
        Outbox(tmp_path / "o.db", max_points=0)
