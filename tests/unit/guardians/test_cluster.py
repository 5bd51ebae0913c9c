"""Cluster mode on a fake clock: leases from a shared counter, fallback shares, shared breakers."""

from __future__ import annotations

from typing import Any

import pybreaker
import pytest

from common.clock import FakeClock
from guardians import (
    BreakerStateChanged,
    Engine,
    FlowBlocked,
    ParamBlocked,
    RuleValidationError,
    parse_document,
)
from guardians.cluster import CLUSTER, FALLBACK, Cluster
from guardians.param.storage import ClockedMemoryStorage
from guardians.system.probe import FixedProbe

from .helpers import T0, attempt, call_with_rt


class FlakyStorage:
    """A limits storage on the fake clock that can be switched off (Redis down) and counts round trips."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = ClockedMemoryStorage(clock)
        self.up = True
        self.incrs = 0

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        if not self.up:
            raise ConnectionError("Connection refused (fake redis down)")
        self.incrs += 1
        return self.inner.incr(key, expiry, amount=amount)

    def check(self) -> bool:
        if not self.up:
            raise ConnectionError("Connection refused")
        return True


class FakeRedis:
    """The few redis-py calls pybreaker's CircuitRedisStorage and the shared breakers make."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.up = True

    def _ok(self) -> None:
        if not self.up:
            raise ConnectionError("fake redis down")

    def get(self, k: str) -> bytes | None:
        self._ok()
        return self.data.get(k)

    def set(self, k: str, v: Any) -> bool:
        self._ok()
        self.data[k] = str(v).encode()
        return True

    def setnx(self, k: str, v: Any) -> bool:
        self._ok()
        if k in self.data:
            return False
        self.data[k] = str(v).encode()
        return True

    def ping(self) -> bool:
        self._ok()
        return True


def _nodes(
    n: int, doc: dict[str, Any], *, live: int | None = None, redis: Any = None, start: float = T0
) -> tuple[FakeClock, FlakyStorage, list[Engine], list[Cluster]]:
    clock = FakeClock(start)
    storage = FlakyStorage(clock)
    engines, clusters = [], []
    for _ in range(n):
        eng = Engine(clock, probe=FixedProbe())
        cl = Cluster(storage, clock=clock, live_nodes=lambda: live or n, redis=redis)
        eng.enable_cluster(cl)
        eng.apply(parse_document(doc))
        cl.maintain()  # learns the live node count
        engines.append(eng)
        clusters.append(cl)
    return clock, storage, engines, clusters


def _surge(clock, engines, clusters, *, per_node: int, seconds: int, background: bool = True):
    """Each node offered ``per_node`` calls per second, interleaved; returns passes per whole second."""
    totals = []
    for _ in range(seconds):
        passed = 0
        step = 1.0 / per_node
        for _i in range(per_node):
            for eng in engines:
                passed += attempt(eng, "order.place")[0]
            if background:
                for cl in clusters:
                    cl.run_pending()
            clock.advance(step)
        totals.append(passed)
    return totals


def _doc(threshold: float) -> dict[str, Any]:
    return {"flow": [{"resource": "order.place", "threshold": threshold, "cluster": True}]}


def test_three_nodes_hold_the_global_threshold_within_five_percent():
    clock, _storage, engines, clusters = _nodes(3, _doc(600))
    totals = _surge(clock, engines, clusters, per_node=500, seconds=4)
    for total in totals:
        assert 0.95 * 600 <= total <= 600, totals


def test_leases_save_round_trips_at_a_high_threshold():
    clock, storage, engines, clusters = _nodes(3, _doc(6000))
    totals = _surge(clock, engines, clusters, per_node=3000, seconds=2)
    calls = 3 * 3000 * 2
    assert storage.incrs < calls / 10, storage.incrs  # leases of several tokens, not one trip per call
    for total in totals[1:]:  # the first window learns the rate
        assert 0.95 * 6000 <= total <= 6000, totals


def test_without_background_refills_the_hot_path_leases_itself_and_never_exceeds():
    clock, _storage, engines, clusters = _nodes(3, _doc(300))
    totals = _surge(clock, engines, clusters, per_node=400, seconds=3, background=False)
    assert all(0.95 * 300 <= t <= 300 for t in totals), totals


def test_lease_size_follows_the_rate_and_stays_within_the_budget():
    clock = FakeClock(T0)
    cl = Cluster(FlakyStorage(clock), clock=clock, budget=0.02, lease_s=0.05)
    assert cl.lease_size(10_000, rate=0) == 1  # idle: one token at a time
    assert cl.lease_size(10_000, rate=1000) == 50  # 50 ms of traffic
    assert cl.lease_size(10_000, rate=1e6) == 200  # capped at 2 % of the threshold
    cl.nodes = 4
    assert cl.lease_size(10_000, rate=1e6) == 50  # … shared by the live nodes
    assert cl.lease_size(50, rate=1e6) == 1


def test_under_the_threshold_nothing_is_blocked():
    clock, _storage, engines, clusters = _nodes(3, _doc(600))
    totals = _surge(clock, engines, clusters, per_node=150, seconds=2)
    assert totals == [450, 450]


def test_redis_down_falls_back_to_a_local_share_without_errors_then_recovers():
    clock, storage, engines, clusters = _nodes(3, _doc(600), live=3)
    _surge(clock, engines, clusters, per_node=300, seconds=1)
    storage.up = False
    clock.set(int(clock.time()) + 1)
    # no error reaches a caller: only FlowBlocked (the share is spent) or a pass
    totals = _surge(clock, engines, clusters, per_node=300, seconds=2)
    assert all(c.mode == FALLBACK for c in clusters)
    assert totals[-1] == 3 * 200  # each node admits 600 / 3 live nodes per second
    status = engines[0].cluster_status()
    assert status["mode"] == "fallback" and status["status"] == "degraded"
    assert "Connection refused" in status["last_error"] and status["live_nodes"] == 3
    # Redis back: the next probe (every probe_s on the injected clock) returns to cluster mode
    storage.up = True
    for cl in clusters:
        cl.maintain()
    clock.advance(1.0)
    for cl in clusters:
        cl.maintain()
    assert all(c.mode == CLUSTER for c in clusters)
    assert engines[0].cluster_status()["status"] == "ok"
    clock.set(int(clock.time()) + 1)
    totals = _surge(clock, engines, clusters, per_node=300, seconds=2)
    assert all(0.95 * 600 <= t <= 600 for t in totals), totals


def test_fallback_share_follows_the_live_node_count():
    _clock, storage, engines, _clusters = _nodes(1, _doc(600), live=4)
    storage.up = False
    ok, blocked = attempt(engines[0], "order.place", 400)
    assert ok == 150 and blocked == 250
    with pytest.raises(FlowBlocked) as exc:
        engines[0].guard("order.place", lambda: None)
    assert "fallback" in exc.value.detail and "4 live nodes" in exc.value.detail


def test_an_unchanged_rule_keeps_its_lease_state_across_apply():
    _clock, _storage, engines, _clusters = _nodes(1, _doc(10))
    eng = engines[0]
    assert attempt(eng, "order.place", 15) == (10, 5)
    eng.apply(
        parse_document({**_doc(10), "flow": [*_doc(10)["flow"], {"resource": "other", "threshold": 5}]})
    )
    assert attempt(eng, "order.place", 5) == (0, 5)


def test_cluster_rules_without_a_cluster_hold_per_node():
    eng = Engine(FakeClock(T0), probe=FixedProbe())
    eng.apply(parse_document(_doc(10)))
    assert attempt(eng, "order.place", 15) == (10, 5)
    st = eng.cluster_status()
    assert st["status"] == "absent" and st["cluster_rules"] == 1


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"grade": "concurrency"}, "grade"),
        ({"behavior": "warm_up"}, "behavior"),
        ({"strategy": "relate", "ref_resource": "x"}, "strategy"),
    ],
)
def test_cluster_allows_qps_reject_only(extra, field):
    with pytest.raises(RuleValidationError) as exc:
        parse_document({"flow": [{"resource": "r", "threshold": 5, "cluster": True, **extra}]})
    assert any(path.endswith(f".{field}") for path, _ in exc.value.errors)


def _breaker_doc() -> dict[str, Any]:
    return {
        "breaker": [
            {
                "resource": "pay",
                "strategy": "error_count",
                "threshold": 3,
                "min_requests": 1,
                "recovery_s": 5,
                "shared": True,
            }
        ]
    }


def test_shared_breaker_opens_and_closes_on_every_node():
    redis = FakeRedis()
    clock, _storage, (a, b), (ca, cb) = _nodes(2, _breaker_doc(), redis=redis)
    events: list[BreakerStateChanged] = []
    b.add_breaker_listener(events.append)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            call_with_rt(a, clock, "pay", 0.001, fail=True)
    assert a.breaker_states()["pay"] == "open"
    assert b.breaker_states()["pay"] == "closed"
    ca.run_pending()  # A writes its transition to Redis in the background
    # into pybreaker's own Redis storage: pybreaker reading that namespace sees the circuit open
    shared = ca.breaker_storage(a.ruleset.breaker[0])
    view = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, redis, namespace=shared.ns)
    assert view.state == "open"
    assert view.opened_at is None  # pybreaker's whole-second key is left alone (ours: NS:opened_t)
    clock.advance(1.0)
    cb.maintain()  # B syncs
    assert b.breaker_states()["pay"] == "open"
    assert [(e.previous, e.state) for e in events] == [("closed", "open")]
    # B's circuit reopens at A's time: recovery counts from A's opening
    clock.advance(4.1)
    call_with_rt(a, clock, "pay", 0.001)  # A's probe succeeds: closed
    assert a.breaker_states()["pay"] == "closed"
    ca.run_pending()
    clock.advance(1.0)
    cb.maintain()
    assert b.breaker_states()["pay"] == "closed"


def test_shared_breaker_with_redis_down_stays_local_and_never_fails_a_call():
    redis = FakeRedis()
    redis.up = False
    clock, _storage, (a,), (ca,) = _nodes(1, _breaker_doc(), redis=redis)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            call_with_rt(a, clock, "pay", 0.001, fail=True)
    ca.run_pending()
    assert a.breaker_states()["pay"] == "open"


def test_threads_spending_leases_never_exceed_the_threshold():
    import threading

    _clock, _storage, (eng,), (cl,) = _nodes(1, _doc(5000))
    cl.lease_size = lambda threshold, rate: 37  # type: ignore[method-assign]  # leases of several tokens
    passed = [0] * 4
    stop = threading.Event()

    def worker(i: int) -> None:
        for _ in range(3000):
            passed[i] += attempt(eng, "order.place")[0]

    def refills() -> None:
        while not stop.is_set():
            cl.run_pending()

    bg = threading.Thread(target=refills)
    bg.start()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    bg.join()
    assert sum(passed) == 5000  # 12000 calls in one window: exactly the threshold passes


# ------------------------------------------------------------------ hot items (cluster param rules)
def _param_doc(threshold: int, **extra: Any) -> dict[str, Any]:
    return {"param": [{"name": "hot-sku-fleet", "resource": "order.place", "param": "sku",
                       "threshold": threshold, "cluster": True, **extra}]}


def _param_surge(clock, engines, clusters, *, per_node: int, seconds: int, skus=("HOT",), background=True):
    totals = []
    for _ in range(seconds):
        passed = 0
        step = 1.0 / per_node
        for _i in range(per_node):
            for eng in engines:
                passed += attempt(eng, "order.place", args={"sku": skus})[0]
            if background:
                for cl in clusters:
                    cl.run_pending()
            clock.advance(step)
        totals.append(passed)
    return totals


def test_a_hot_value_leases_tokens_and_holds_its_limit_across_nodes():
    clock, storage, engines, clusters = _nodes(3, _param_doc(3000))
    clock.set(int(clock.time()) + 1)
    totals = _param_surge(clock, engines, clusters, per_node=2000, seconds=3)
    for total in totals[1:]:  # the first window learns the rate
        assert 0.95 * 3000 <= total <= 3000, totals
    assert totals[0] <= 3000
    assert storage.incrs < 3 * 2000 * 3 / 10, storage.incrs  # leases, not an INCR per call


def test_a_hot_value_without_background_refills_never_exceeds():
    clock, _storage, engines, clusters = _nodes(2, _param_doc(30))
    clock.set(int(clock.time()) + 1)
    totals = _param_surge(clock, engines, clusters, per_node=100, seconds=3, background=False)
    assert all(t == 30 for t in totals), totals


def test_each_value_and_exception_has_its_own_fleet_limit():
    clock, _storage, engines, clusters = _nodes(2, _param_doc(10, exceptions={"VIP": 40, "BANNED": 0}))
    clock.set(int(clock.time()) + 1)
    hot = _param_surge(clock, engines, clusters, per_node=50, seconds=1, skus=("A",))
    vip = _param_surge(clock, engines, clusters, per_node=50, seconds=1, skus=("VIP",))
    assert hot == [10] and vip == [40]
    assert attempt(engines[0], "order.place", 3, args={"sku": ("BANNED",)}) == (0, 3)


def test_a_hot_value_falls_back_to_the_node_share_while_redis_is_down():
    clock, storage, engines, clusters = _nodes(2, _param_doc(100), live=2)
    clock.set(int(clock.time()) + 1)
    storage.up = False
    totals = _param_surge(clock, engines, clusters, per_node=200, seconds=2)
    assert all(c.mode == FALLBACK for c in clusters)
    assert totals[-1] == 2 * 50  # 100 / 2 live nodes each
    assert attempt(engines[0], "order.place", 60, args={"sku": ("HOT",)}) == (50, 10)
    with pytest.raises(ParamBlocked) as exc:
        engines[0].guard("order.place", lambda: None, args={"sku": ("HOT",)})
    assert "share 50/s" in exc.value.detail
    storage.up = True
    clock.advance(1.0)
    for cl in clusters:
        cl.maintain()
    clock.set(int(clock.time()) + 1)
    totals = _param_surge(clock, engines, clusters, per_node=200, seconds=2)
    assert all(95 <= t <= 100 for t in totals), totals
