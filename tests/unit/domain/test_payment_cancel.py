from __future__ import annotations

from datetime import timedelta

import pytest

from domain import errors
from tests.unit.domain.helpers import order_cmd


def test_pay_success_sells_reserved_stock_and_emits_per_sub_order(env):
    view = env.service.place_order(order_cmd([("A1", 2), ("B1", 1)]))
    env.publisher.events.clear()
    paid = env.service.pay_order(view.id)
    assert paid.status == "paid" and all(s.status == "paid" for s in paid.sub_orders)
    assert env.gateway.charges == [(paid.payments[0].id, "u1", 4800)]
    assert env.stock("A1") == (8, 0) and env.stock("B1") == (2, 0)
    names = env.event_names()
    assert names.count("OrderPaid") == 2 and names.count("PaymentSucceeded") == 1
    assert paid.payments[0].reference == f"ch_{paid.payments[0].id}"


def test_pay_failure_leaves_order_payable(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    env.gateway.fail_next = ["card declined"]
    with pytest.raises(errors.PaymentFailed) as exc:
        env.service.pay_order(view.id)
    assert exc.value.extra["reason"] == "card declined"
    order = env.service.get_order(view.id)
    assert order.status == "pending_payment" and order.payments[0].status == "failed"
    assert env.stock("A1") == (10, 1)
    assert "PaymentFailed" in env.event_names() and "OrderPaid" not in env.event_names()
    assert env.service.pay_order(view.id).status == "paid"


def test_gateway_exception_is_a_failed_payment(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    env.gateway.raise_next = True
    with pytest.raises(errors.PaymentFailed) as exc:
        env.service.pay_order(view.id)
    assert "gateway down" in exc.value.extra["reason"]
    assert env.service.get_order(view.id).status == "pending_payment"


def test_pay_twice_conflicts(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    env.service.pay_order(view.id)
    with pytest.raises(errors.Conflict) as exc:
        env.service.pay_order(view.id)
    assert exc.value.rule == "order.payable"
    assert len(env.gateway.charges) == 1


def test_pay_after_deadline_conflicts(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    env.clock.advance(minutes=16)
    with pytest.raises(errors.Conflict) as exc:
        env.service.pay_order(view.id)
    assert exc.value.rule == "order.payment_deadline"
    assert env.gateway.charges == []


def test_pay_unknown_order_is_not_found(env):
    with pytest.raises(errors.NotFound):
        env.service.pay_order("o_nope")


def test_concurrent_payment_in_progress_blocks_second_pay(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    service = env.service
    inner = []

    class ReentrantGateway:
        def charge(self, payment_id, buyer_id, amount_cents):
            with pytest.raises(errors.Conflict) as exc:  # a second pay while the first is at the gateway
                service.pay_order(view.id)
            inner.append(exc.value.rule)
            return env.gateway.charge(payment_id, buyer_id, amount_cents)

        def refund(self, *a):
            return env.gateway.refund(*a)

    service.gateway = ReentrantGateway()
    assert service.pay_order(view.id).status == "paid"
    assert inner == ["order.single_payment"]


def test_cancel_releases_stock_and_limits(env):
    view = env.service.place_order(order_cmd([("A2", 2), ("B1", 1)]))
    env.publisher.events.clear()
    cancelled = env.service.cancel_order(view.id)
    assert cancelled.status == "cancelled" and all(s.status == "cancelled" for s in cancelled.sub_orders)
    assert env.stock("A2") == (5, 0) and env.stock("B1") == (3, 0)
    assert env.event_names().count("OrderCancelled") == 2 and env.event_names().count("StockReleased") == 2
    env.service.place_order(order_cmd([("A2", 2)], key="k2"))  # limit was given back


def test_cancel_paid_order_conflicts_with_hint(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    env.service.pay_order(view.id)
    with pytest.raises(errors.Conflict) as exc:
        env.service.cancel_order(view.id)
    assert "refund" in exc.value.message


def test_cancel_expired_on_fake_clock(env):
    fixed = env.service.place_order(order_cmd([("A1", 3)]))
    flash = env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale", key="k2"))
    paid = env.service.place_order(order_cmd([("A3", 1)], key="k3"))
    env.service.pay_order(paid.id)
    assert env.service.cancel_expired() == 0
    env.clock.advance(minutes=5)  # flash sale orders time out after 5 minutes
    assert env.service.cancel_expired() == 1
    assert env.service.get_order(flash.id).status == "cancelled"
    assert env.stock("B2", "flash") == (3, 0)
    env.clock.advance(minutes=10)
    assert env.service.cancel_expired() == 1
    assert env.service.get_order(fixed.id).status == "cancelled" and env.stock("A1") == (10, 0)
    assert env.service.get_order(paid.id).status == "paid"
    cancelled = [e for e in env.publisher.events if e.name == "OrderCancelled"]
    assert {e.reason for e in cancelled} == {"timeout"}
    released = [e for e in env.publisher.events if e.name == "StockReleased"]
    assert {e.reason for e in released} == {"timeout"}
    assert env.service.cancel_expired() == 0


def test_cancel_expired_respects_limit(env):
    for i in range(5):
        env.service.place_order(order_cmd([("A3", 1)], key=f"k{i}"))
    env.clock.advance(minutes=20)
    assert env.service.cancel_expired(limit=2) == 2
    assert env.service.cancel_expired(limit=10) == 3


def test_custom_payment_timeout(env):
    env.service.payment_timeout = timedelta(minutes=1)
    view = env.service.place_order(order_cmd([("A1", 1)]))
    env.clock.advance(seconds=61)
    assert env.service.cancel_expired() == 1
    assert env.service.get_order(view.id).status == "cancelled"


def test_charge_landing_after_abandonment_is_reversed(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    service = env.service

    class SlowGateway:
        def charge(self, payment_id, buyer_id, amount_cents):
            env.clock.advance(minutes=20)  # the attempt goes stale and the order times out meanwhile
            assert service.cancel_expired() == 1
            return env.gateway.charge(payment_id, buyer_id, amount_cents)

        def refund(self, *a):
            return env.gateway.refund(*a)

    service.gateway = SlowGateway()
    with pytest.raises(errors.Conflict):
        service.pay_order(view.id)
    assert service.get_order(view.id).status == "cancelled"
    assert env.gateway.refunds and env.gateway.refunds[0][2] == env.gateway.charges[0][2]
