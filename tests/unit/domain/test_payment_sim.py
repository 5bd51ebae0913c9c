from __future__ import annotations

import threading

import pytest

from domain.adapters.payment_sim import GatewayUnavailable, SimulatedGateway


def test_latency_error_rate_outage_and_reset_at_runtime():
    slept: list[float] = []
    gw = SimulatedGateway(latency_ms=100, jitter=0.0, seed=1, sleeper=slept.append)
    assert gw.charge("p1", "u", 100).ok and slept == [0.1]
    gw.configure(error_rate=1.0, latency_ms=0)
    r = gw.charge("p2", "u", 100)
    assert not r.ok and "declined" in r.reason
    gw.configure(outage=True)
    with pytest.raises(GatewayUnavailable):
        gw.charge("p3", "u", 100)
    assert gw.settings()["outage"] is True
    assert gw.reset() == {"latency_ms": 100, "error_rate": 0.0, "outage": False, "jitter": 0.0}
    assert gw.charge("p4", "u", 100).ok
    assert gw.stats()["charge_failures"] == 1 and gw.stats()["outage_rejections"] == 1


def test_error_rate_is_roughly_respected_with_seed():
    gw = SimulatedGateway(latency_ms=0, error_rate=0.3, seed=42, sleeper=lambda s: None)
    fails = sum(not gw.charge(f"p{i}", "u", 1).ok for i in range(2000))
    # binomial(2000, 0.3): 600 failures, sd 20.5; the bounds (7 sd) say the rate is applied, not the draw
    assert 450 < fails < 750


def test_bad_settings_name_the_field():
    gw = SimulatedGateway(sleeper=lambda s: None)
    with pytest.raises(ValueError, match="error_rate"):
        gw.configure(error_rate=1.5)
    with pytest.raises(ValueError, match="latency_ms"):
        gw.configure(latency_ms=-1)
    assert gw.settings()["error_rate"] == 0.0


def test_refund_is_idempotent_by_refund_id():
    gw = SimulatedGateway(latency_ms=0, sleeper=lambda s: None)
    a = gw.refund("rf1", "ref", 100)
    b = gw.refund("rf1", "ref", 100)
    assert a == b and gw.stats()["refunds"] == 1


def test_thread_safe_configuration():
    gw = SimulatedGateway(latency_ms=0, sleeper=lambda s: None, seed=3)

    def hammer(i: int) -> None:
        for j in range(200):
            gw.configure(error_rate=(i + j) % 10 / 10)
            gw.charge(f"{i}-{j}", "u", 1)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gw.stats()["charges"] == 800
