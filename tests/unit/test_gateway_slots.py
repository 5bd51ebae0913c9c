"""SimulatedGateway(concurrency=N): at most N calls inside the gateway; the rest wait for a slot."""

from __future__ import annotations

import threading

import pytest

from domain.adapters.payment_sim import SimulatedGateway


def test_calls_beyond_the_slots_wait_for_one() -> None:
    inside = threading.Semaphore(0)
    release = threading.Event()
    peak = {"now": 0, "max": 0}
    lock = threading.Lock()

    def sleeper(_seconds: float) -> None:
        with lock:
            peak["now"] += 1
            peak["max"] = max(peak["max"], peak["now"])
        inside.release()
        release.wait(5)
        with lock:
            peak["now"] -= 1

    gw = SimulatedGateway(latency_ms=10, jitter=0.0, sleeper=sleeper, concurrency=2)
    results = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(gw.charge(f"p{i}", "b", 100))) for i in range(3)
    ]
    for t in threads:
        t.start()
    assert inside.acquire(timeout=5) and inside.acquire(timeout=5)  # two calls are in
    assert not inside.acquire(timeout=0.2)  # the third is held back
    assert gw.stats()["waiting"] == 1
    release.set()
    for t in threads:
        t.join(5)
    assert len(results) == 3 and all(r.ok for r in results)
    stats = gw.stats()
    assert peak["max"] == 2
    assert stats["slot_waits"] == 1 and stats["max_waiting"] == 1 and stats["waiting"] == 0
    assert stats["concurrency"] == 2


def test_unlimited_by_default_and_negative_refused() -> None:
    gw = SimulatedGateway(latency_ms=0, sleeper=lambda s: None)
    assert gw.charge("p", "b", 1).ok and gw.stats()["concurrency"] == 0
    with pytest.raises(ValueError, match="concurrency"):
        SimulatedGateway(concurrency=-1)
