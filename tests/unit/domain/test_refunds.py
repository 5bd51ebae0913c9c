from __future__ import annotations

import pytest

from domain import errors
from tests.unit.domain.helpers import order_cmd


def paid_order(env, lines=(("A1", 3), ("B1", 2))):
    view = env.service.place_order(order_cmd(list(lines)))
    return env.service.pay_order(view.id)


def test_partial_refund_then_rest(env):
    order = paid_order(env)  # A1: 3×1000 -10% = 2700; B1: 2×3000 = 6000
    assert env.stock("A1") == (7, 0)
    r1 = env.service.request_refund(order.id, [{"sku": "A1", "qty": 1}])
    assert r1.status == "requested" and r1.amount_cents == 900
    assert env.stock("A1") == (7, 0)  # stock only comes back when the refund completes
    done = env.service.complete_refund(r1.id)
    assert done.status == "completed" and env.gateway.refunds[-1][2] == 900
    assert env.stock("A1") == (8, 0)
    view = env.service.get_order(order.id)
    assert view.status == "partially_refunded"
    assert [s.status for s in view.sub_orders] == ["partially_refunded", "paid"]
    r2 = env.service.request_refund(order.id, [("A1", 2), ("B1", 2)])
    assert r2.amount_cents == 1800 + 6000
    assert {rl.shop_id for rl in r2.lines} == {"s1", "s2"}
    env.service.complete_refund(r2.id)
    view = env.service.get_order(order.id)
    assert view.status == "refunded" and all(s.status == "refunded" for s in view.sub_orders)
    assert sum(a for _, _, a in env.gateway.refunds) == order.amount_cents
    assert env.stock("A1") == (10, 0) and env.stock("B1") == (3, 0)


def test_refund_amounts_never_lose_a_cent(env):
    order = paid_order(env, lines=(("A1", 3), ("A2", 1), ("A3", 7)))  # spend-save allocation makes odd cents
    total = 0
    for sku, qty in (("A1", 1), ("A1", 1), ("A1", 1), ("A2", 1), ("A3", 3), ("A3", 4)):
        refund = env.service.request_refund(order.id, [(sku, qty)])
        total += env.service.complete_refund(refund.id).amount_cents
    assert total == order.amount_cents


def test_over_refund_is_rejected_counting_pending_requests(env):
    order = paid_order(env)
    env.service.request_refund(order.id, [("B1", 1)])
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.request_refund(order.id, [("B1", 2)])
    assert exc.value.rule == "refund.qty_within_paid" and exc.value.extra["refundable"] == 1


def test_refund_needs_paid_order_and_known_line(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    with pytest.raises(errors.Conflict):
        env.service.request_refund(view.id, [("A1", 1)])
    env.service.pay_order(view.id)
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.request_refund(view.id, [("B1", 1)])
    assert exc.value.rule == "refund.line_in_order"
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.request_refund(view.id, [("A1", 0)])
    assert exc.value.field == "lines[0].qty"
    with pytest.raises(errors.InvalidRequest):
        env.service.request_refund(view.id, [])


def test_refund_events(env):
    order = paid_order(env)
    env.publisher.events.clear()
    r = env.service.request_refund(order.id, [("A1", 1), ("B1", 1)])
    requested = [e for e in env.publisher.events if e.name == "RefundRequested"]
    assert {e.shop_id for e in requested} == {"s1", "s2"} and all(e.refund_id == r.id for e in requested)
    env.service.complete_refund(r.id)
    names = env.event_names()
    assert names.count("RefundCompleted") == 2 and names.count("StockReleased") == 2


def test_failed_payout_keeps_refund_requested_and_retryable(env):
    order = paid_order(env)
    r = env.service.request_refund(order.id, [("A1", 1)])
    env.gateway.refund_ok = False
    with pytest.raises(errors.PaymentFailed):
        env.service.complete_refund(r.id)
    again = env.service.get_refund(r.id)
    assert again.status == "requested" and again.last_error == "refund declined"
    assert env.stock("A1") == (7, 0)
    env.gateway.refund_ok = True
    assert env.service.complete_refund(r.id).status == "completed"
    with pytest.raises(errors.Conflict):
        env.service.complete_refund(r.id)
    with pytest.raises(errors.NotFound):
        env.service.complete_refund("rf_nope")


def test_flash_refund_returns_units_to_regular_stock(env):
    view = env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale"))
    env.service.pay_order(view.id)
    assert env.stock("B2", "flash") == (2, 0)
    r = env.service.request_refund(view.id, [("B2", 1)])
    assert r.amount_cents == 1999
    env.service.complete_refund(r.id)
    assert env.stock("B2") == (1, 0) and env.stock("B2", "flash") == (2, 0)
