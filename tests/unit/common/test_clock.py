import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.clock import Clock, FakeClock, SystemClock


def test_system_clock_reads_the_real_time_and_its_time_is_the_builtin():
    clock = SystemClock()
    assert clock.time is time.time and clock.time_ns is time.time_ns  # the hot path's one C call
    before = datetime.now(UTC)
    now = clock.now()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)
    assert abs(clock.time() - now.timestamp()) < 5
    assert isinstance(clock, Clock)


def test_system_clock_sleeps_only_for_positive_durations():
    clock = SystemClock()
    t0 = time.monotonic()
    clock.sleep(0)
    clock.sleep(-1)
    asyncio.run(clock.asleep(-1))  # time.sleep(-1) would raise: no error means no sleep was tried
    assert time.monotonic() - t0 < 1  # generous: a loaded CI machine may pause a thread for a while
    clock.sleep(0.02)
    assert time.monotonic() - t0 >= 0.02


def test_fake_clock_moves_only_when_told_and_its_readings_agree():
    clock = FakeClock(100.0)
    assert isinstance(clock, Clock)
    assert clock.time() == 100.0 and clock.time_ns() == 100_000_000_000
    clock.advance(1.5)
    assert clock.time_ns() == 101_500_000_000
    assert clock.now() == datetime.fromtimestamp(101.5, UTC)
    clock.sleep(2)
    asyncio.run(clock.asleep(0.5))
    assert clock.time() == 104.0 and clock.slept == [2, 0.5]


def test_fake_clock_takes_aware_datetimes_for_start_and_set():
    start = datetime(2026, 11, 11, 0, 0, 0, 250_000, tzinfo=UTC)
    clock = FakeClock(start)
    assert clock.now() == start
    clock.set(start + timedelta(minutes=5))
    assert clock.now() == start + timedelta(minutes=5)
    clock.set(10.0)
    assert clock.time() == 10.0
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))
