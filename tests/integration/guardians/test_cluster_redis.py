"""Cluster mode against a real Redis (db 15): leases through limits' RedisStorage, shared breakers."""

from __future__ import annotations

import uuid

import pytest

from common.clock import FakeClock
from guardians import Engine, parse_document
from guardians.cluster import CLUSTER, FALLBACK, connect
from guardians.system.probe import FixedProbe
from tests.services import free_port, need_redis

T0 = 1_700_000_000.0


@pytest.fixture
def namespace():
    url = need_redis()
    ns = f"tgtest-{uuid.uuid4().hex[:8]}"
    yield url, ns
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(f"{ns}*"))
    if keys:
        r.delete(*keys)
    r.close()


def _engines(url: str, ns: str, n: int, doc: dict, clock: FakeClock):
    out = []
    for _ in range(n):
        eng = Engine(clock, probe=FixedProbe())
        cl = connect(url, clock=clock, live_nodes=lambda: n, namespace=ns)
        eng.enable_cluster(cl)
        eng.apply(parse_document(doc))
        cl.maintain()
        out.append((eng, cl))
    return out


def test_three_engines_share_one_redis_counter(namespace):
    url, ns = namespace
    clock = FakeClock(T0)
    nodes = _engines(url, ns, 3, {"flow": [{"resource": "r", "threshold": 900, "cluster": True}]}, clock)
    totals = []
    for _ in range(3):
        passed = 0
        for _i in range(600):
            for eng, cl in nodes:
                try:
                    eng.guard("r", lambda: None)
                    passed += 1
                except Exception as exc:
                    assert type(exc).__name__ == "FlowBlocked"
                cl.run_pending()
            clock.advance(1 / 600)
        totals.append(passed)
    assert all(0.95 * 900 <= t <= 900 for t in totals), totals
    assert all(cl.mode == CLUSTER for _, cl in nodes)
    leases = sum(cl.leases for _, cl in nodes)
    assert leases < 3 * 600 * 3 / 4, leases  # several tokens per round trip


def test_unreachable_redis_falls_back_without_errors():
    port = free_port()  # nothing listens there
    clock = FakeClock(T0)
    eng = Engine(clock, probe=FixedProbe())
    cl = connect(f"redis://127.0.0.1:{port}/0", clock=clock, live_nodes=lambda: 2)
    eng.enable_cluster(cl)
    eng.apply(parse_document({"flow": [{"resource": "r", "threshold": 10, "cluster": True}]}))
    cl.maintain()
    passed = blocked = 0
    for _ in range(8):
        try:
            eng.guard("r", lambda: None)
            passed += 1
        except Exception as exc:
            assert type(exc).__name__ == "FlowBlocked"
            blocked += 1
    assert (passed, blocked) == (5, 3)  # 10 / 2 live nodes
    assert cl.mode == FALLBACK and "Connection" in (cl.status()["last_error"] or "")


def test_shared_breaker_state_travels_through_redis(namespace):
    url, ns = namespace
    clock = FakeClock(T0)
    doc = {
        "breaker": [
            {"resource": "pay", "strategy": "error_count", "threshold": 2, "min_requests": 1, "shared": True}
        ]
    }
    (a, ca), (b, cb) = _engines(url, ns, 2, doc, clock)

    def boom() -> None:
        raise RuntimeError("down")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            a.guard("pay", boom)
    assert a.breaker_states()["pay"] == "open"
    ca.run_pending()
    clock.advance(1.5)
    cb.maintain()
    assert b.breaker_states()["pay"] == "open"
