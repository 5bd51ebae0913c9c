"""Degraded charges: ``payment.charge`` blocked + a "queued" fallback → the payment waits in the queue;
``retry_queued_payments`` charges it later through the same guard. Fake UoW, fake clock, fake guard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from domain import errors
from domain.adapters.unit_of_work import build_trading_db
from domain.api.app import create_app
from domain.ports import PAYMENT_CHARGE, ChargeResult, CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway
from tests.unit.domain.helpers import ADDRESS, Env, order_cmd, small_catalog


class FakeBlocked(Exception):
    """What a guard raises when it blocks a call without a fallback (guardians.Blocked stand-in)."""


def queue_payment(exc: BaseException) -> ChargeResult:  # like bootstrap's degrade fallback
    return ChargeResult(ok=False, queued=True, reason="payment queued: the gateway is degraded")


class SwitchGuard:
    """Blocks the resources in ``blocked``; a blocked call answers with ``fallbacks[resource]`` if set
    (a degrade rule), else raises ``FakeBlocked``. Counts what it let through and what it blocked."""

    def __init__(self, *, blocked=(), fallbacks=None) -> None:
        self.blocked = set(blocked)
        self.fallbacks = dict(fallbacks or {})
        self.passed: list[str] = []
        self.blocks: list[str] = []

    def guard(self, resource, call, *, args=None, fallback=None):
        if resource in self.blocked:
            self.blocks.append(resource)
            exc = FakeBlocked(f"{resource} is blocked (breaker open)")
            if resource in self.fallbacks:
                return self.fallbacks[resource](exc)
            raise exc
        self.passed.append(resource)
        return call()


@pytest.fixture
def qenv() -> Env:
    env = Env()
    env.guard = SwitchGuard(blocked={PAYMENT_CHARGE}, fallbacks={PAYMENT_CHARGE: queue_payment})
    env.service.guard = env.guard
    return env


def queued_order(env: Env, key: str = "k1", lines=(("A1", 1),)):
    view = env.service.place_order(order_cmd(list(lines), key=key))
    paid = env.service.pay_order(view.id)
    return paid


def test_degraded_charge_queues_the_payment_and_keeps_the_reservation(qenv):
    view = queued_order(qenv, lines=[("A1", 2)])
    assert view.status == "pending_payment"
    assert [p.status for p in view.payments] == ["queued"]
    assert view.payments[0].reason == "payment queued: the gateway is degraded"
    assert qenv.gateway.charges == []
    assert qenv.stock("A1") == (10, 2)  # still reserved, not sold
    names = qenv.event_names()
    assert "PaymentQueued" in names and "PaymentFailed" not in names and "OrderPaid" not in names
    assert qenv.service.get_order(view.id).payments[0].status == "queued"


def test_retry_succeeds_once_the_guard_lets_it_through(qenv):
    view = queued_order(qenv)
    qenv.publisher.events.clear()
    qenv.guard.blocked.clear()
    assert qenv.service.retry_queued_payments() == 1
    order = qenv.service.get_order(view.id)
    assert order.status == "paid" and [p.status for p in order.payments] == ["succeeded"]
    pid = view.payments[0].id
    assert qenv.gateway.charges == [(pid, "u1", 900)]  # the queued payment, charged under its own id
    assert qenv.stock("A1") == (9, 0)
    names = qenv.event_names()
    assert names.count("PaymentSucceeded") == 1 and names.count("OrderPaid") == 1
    assert PAYMENT_CHARGE in qenv.guard.passed  # through the same guard
    assert qenv.service.retry_queued_payments() == 0  # idempotent: nothing left in the queue
    assert len(qenv.gateway.charges) == 1


def test_retry_declined_fails_the_payment_and_leaves_the_order_payable(qenv):
    view = queued_order(qenv)
    qenv.guard.blocked.clear()
    qenv.gateway.fail_next = ["card declined"]
    qenv.publisher.events.clear()
    assert qenv.service.retry_queued_payments() == 1
    order = qenv.service.get_order(view.id)
    assert order.status == "pending_payment" and order.payments[0].status == "failed"
    assert order.payments[0].reason == "card declined"
    assert qenv.event_names() == ["PaymentFailed"]
    assert qenv.stock("A1") == (10, 1)
    assert qenv.service.retry_queued_payments() == 0  # failed payments are not retried
    assert qenv.service.pay_order(view.id).status == "paid"  # the buyer can pay again


def test_retry_gateway_error_fails_the_payment(qenv):
    view = queued_order(qenv)
    qenv.guard.blocked.clear()
    qenv.gateway.raise_next = True
    assert qenv.service.retry_queued_payments() == 1
    p = qenv.service.get_order(view.id).payments[0]
    assert p.status == "failed" and "gateway down" in p.reason


def test_still_blocked_stays_queued_and_stops_the_run(qenv):
    first = queued_order(qenv, key="k1")
    qenv.clock.advance(seconds=1)  # the oldest queued payment is retried first
    second = queued_order(qenv, key="k2")
    qenv.guard.blocks.clear()
    assert qenv.service.retry_queued_payments() == 0
    assert qenv.guard.blocks == [PAYMENT_CHARGE]  # stopped after the first: the rest would be blocked too
    for view in (first, second):
        order = qenv.service.get_order(view.id)
        assert order.status == "pending_payment" and [p.status for p in order.payments] == ["queued"]
    assert qenv.gateway.charges == []
    # blocked *without* a fallback while retrying: still queued, not failed
    del qenv.guard.fallbacks[PAYMENT_CHARGE]
    assert qenv.service.retry_queued_payments() == 0
    payments = [qenv.service.get_order(v.id).payments[0] for v in (first, second)]
    assert [p.status for p in payments] == ["queued", "queued"]
    assert sum("still blocked" in (p.reason or "") for p in payments) == 1
    qenv.guard.blocked.clear()
    assert qenv.service.retry_queued_payments() == 2
    assert {qenv.service.get_order(v.id).status for v in (first, second)} == {"paid"}
    assert len(qenv.gateway.charges) == 2


def test_buyer_paying_again_takes_over_the_queued_payment(qenv):
    view = queued_order(qenv)
    again = qenv.service.pay_order(view.id)  # still blocked: the same payment stays queued
    assert [p.id for p in again.payments] == [view.payments[0].id]
    assert again.payments[0].status == "queued"
    qenv.guard.blocked.clear()
    paid = qenv.service.pay_order(view.id)
    assert paid.status == "paid" and [p.id for p in paid.payments] == [view.payments[0].id]
    assert qenv.service.retry_queued_payments() == 0
    assert len(qenv.gateway.charges) == 1


def test_no_double_charge_when_a_second_run_starts_during_the_charge(qenv):
    view = queued_order(qenv)
    qenv.guard.blocked.clear()
    service, gateway = qenv.service, qenv.gateway
    inner: list[int] = []
    conflicts: list[str] = []

    class ReentrantGateway:
        def charge(self, payment_id, buyer_id, amount_cents):
            inner.append(service.retry_queued_payments())  # another node's run while we are charging
            with pytest.raises(errors.Conflict) as exc:  # and the buyer pressing "pay" meanwhile
                service.pay_order(view.id)
            conflicts.append(exc.value.rule)
            return gateway.charge(payment_id, buyer_id, amount_cents)

        def refund(self, *a):
            return gateway.refund(*a)

    service.gateway = ReentrantGateway()
    assert service.retry_queued_payments() == 1
    assert inner == [0] and conflicts == ["order.single_payment"]
    assert len(gateway.charges) == 1
    assert service.get_order(view.id).status == "paid"


def test_deadline_waits_for_a_queued_payment_within_the_grace(qenv):
    view = queued_order(qenv)
    plain = qenv.service.place_order(order_cmd([("A3", 1)], key="k-plain"))
    qenv.clock.advance(minutes=16)  # past the 15-minute deadline, within the 5-minute grace
    assert qenv.service.cancel_expired() == 1  # only the order without a queued payment
    assert qenv.service.get_order(plain.id).status == "cancelled"
    assert qenv.service.get_order(view.id).status == "pending_payment"
    assert qenv.stock("A1") == (10, 1)
    qenv.guard.blocked.clear()
    assert qenv.service.retry_queued_payments() == 1
    assert qenv.service.get_order(view.id).status == "paid"
    assert qenv.service.cancel_expired() == 0


def test_deadline_plus_grace_cancels_and_drops_the_queued_payment(qenv):
    view = queued_order(qenv)
    qenv.clock.advance(minutes=15, seconds=30)
    assert qenv.service.cancel_expired() == 0
    qenv.clock.advance(minutes=5)  # now past deadline + grace
    qenv.guard.blocked.clear()
    assert qenv.service.retry_queued_payments() == 0  # not charged after the grace
    assert qenv.gateway.charges == []
    assert qenv.service.cancel_expired() == 1
    order = qenv.service.get_order(view.id)
    assert order.status == "cancelled" and order.payments[0].status == "failed"
    assert "dropped" in order.payments[0].reason
    assert qenv.stock("A1") == (10, 0)
    assert qenv.service.retry_queued_payments() == 0 and qenv.gateway.charges == []


def test_buyer_cancel_drops_the_queued_payment(qenv):
    view = queued_order(qenv)
    cancelled = qenv.service.cancel_order(view.id)
    assert cancelled.status == "cancelled" and cancelled.payments[0].status == "failed"
    qenv.guard.blocked.clear()
    assert qenv.service.retry_queued_payments() == 0 and qenv.gateway.charges == []


def test_fallback_without_queued_marker_still_fails_with_402(qenv):
    qenv.guard.fallbacks[PAYMENT_CHARGE] = lambda exc: ChargeResult(ok=False, reason="degraded")
    view = qenv.service.place_order(order_cmd([("A1", 1)]))
    with pytest.raises(errors.PaymentFailed):
        qenv.service.pay_order(view.id)
    assert qenv.service.get_order(view.id).payments[0].status == "failed"


def test_pay_answers_202_with_the_queued_payment(tmp_path):
    db = build_trading_db(f"sqlite:///{tmp_path / 'q.db'}")
    gateway, clock = FakeGateway(), FakeClock()
    guard = SwitchGuard(blocked={PAYMENT_CHARGE}, fallbacks={PAYMENT_CHARGE: queue_payment})
    service = TradingService(db.uow_factory, gateway, guard=guard, clock=clock,
                             publisher=CollectingPublisher())
    service.seed(small_catalog())
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            oid = client.post("/orders", json={
                "buyer_id": "u1", "tx_type": "fixed_price", "channel": "app",
                "lines": [{"sku": "A1", "qty": 1}], "address": dict(ADDRESS), "idempotency_key": "k1",
            }).json()["id"]
            r = client.post(f"/orders/{oid}/pay")
            assert r.status_code == 202, r.text
            assert r.headers["location"] == f"/orders/{oid}"
            body = r.json()
            assert body["status"] == "pending_payment"
            assert [p["status"] for p in body["payments"]] == ["queued"]
            guard.blocked.clear()
            assert service.retry_queued_payments() == 1
            assert client.get(f"/orders/{oid}").json()["status"] == "paid"
            # real failures keep their problem+json 402
            other = client.post("/orders", json={
                "buyer_id": "u1", "tx_type": "fixed_price", "channel": "app",
                "lines": [{"sku": "A1", "qty": 1}], "address": dict(ADDRESS), "idempotency_key": "k2",
            }).json()["id"]
            gateway.fail_next = ["card declined"]
            r = client.post(f"/orders/{other}/pay")
            assert r.status_code == 402 and r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["reason"] == "card declined"
            assert client.post(f"/orders/{other}/pay").status_code == 200
    finally:
        db.dispose()


def test_default_grace_is_bounded():
    assert TradingService(lambda **kw: None, FakeGateway()).queued_payment_grace == timedelta(minutes=5)  # type: ignore[arg-type]


def test_a_block_without_fallback_reaches_the_caller_and_leaves_the_order_payable():
    """No degrade rule: the guard's own refusal propagates (the node maps it to 429/503, never a 402
    or 500), the attempt is recorded as failed, and the order can be paid once the guard lets it."""
    env = Env()
    env.guard = SwitchGuard(blocked={PAYMENT_CHARGE})
    env.service.guard = env.guard
    view = env.service.place_order(order_cmd([("A1", 1)], key="blocked"))
    with pytest.raises(FakeBlocked):
        env.service.pay_order(view.id)
    order = env.service.get_order(view.id)
    assert order.status == "pending_payment"
    assert [p.status for p in order.payments] == ["failed"]
    assert env.gateway.charges == []
    env.guard.blocked.clear()
    assert env.service.pay_order(view.id).status == "paid"
