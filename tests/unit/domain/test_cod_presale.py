"""Cash on delivery and presale: full lives on a fake clock (happy, timeout, refund paths)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import errors
from tests.unit.domain.txtype_helpers import BALANCE_CLOSES, BALANCE_OPENS, TxEnv


@pytest.fixture
def tx() -> TxEnv:
    return TxEnv()


# ------------------------------------------------------------------ cash on delivery
def test_cod_confirmed_at_once_and_paid_when_collected(tx):
    view = tx.place([("C1", 2)], "cod")
    assert view.status == "confirmed" and view.expires_at is None and view.cash_on_delivery
    assert tx.stock("C1") == (10, 2) and tx.gateway.charges == []
    assert [e.name for e in tx.publisher.events][:2] == ["OrderPlaced", "StockReserved"]
    assert len(tx.events("OrderConfirmed")) == 1
    with pytest.raises(errors.Conflict):
        tx.service.pay_order(view.id)
    sub = view.sub_orders[0].id
    tx.service.ship(sub, "SF", "T1")
    with pytest.raises(errors.InvalidRequest) as exc:
        tx.service.deliver(sub)
    assert exc.value.field == "collected"
    done = tx.service.deliver(sub, collected=True)
    assert done.status == "paid" and done.payments[0].status == "succeeded"
    assert done.payments[0].amount_cents == 2000 and tx.stock("C1") == (8, 0)
    paid = tx.events("OrderPaid")
    assert len(paid) == 1 and paid[0].tx_type == "cod" and paid[0].amount_cents == 2000
    assert tx.gateway.charges == []  # never charged online
    # the refund follows the usual after-sale path
    refund = tx.service.request_refund(view.id, [("C1", 1)], kind="return")
    tx.service.approve_refund(refund.id)
    assert tx.service.receive_returned_goods(refund.id).status == "completed"
    assert tx.stock("C1") == (9, 0)


def test_cod_delivery_failed_returns_the_stock(tx):
    view = tx.place([("C1", 3)], "cod")
    sub = view.sub_orders[0].id
    tx.service.ship(sub, "SF", "T1")
    done = tx.service.deliver(sub, collected=False)
    assert done.status == "cancelled" and done.sub_orders[0].delivery_status == "failed"
    assert tx.stock("C1") == (10, 0)
    assert len(tx.events("DeliveryFailed")) == 1
    assert tx.events("OrderCancelled")[0].reason == "delivery_failed"
    # the quota came back too: 3 more units today are allowed
    assert tx.place([("C1", 3)], "cod", key="k2").status == "confirmed"


def test_cod_cancel_before_shipping_and_no_timeout(tx):
    view = tx.place([("C1", 1)], "cod")
    tx.clock.advance(days=30)
    assert tx.service.cancel_expired() == 0
    assert tx.service.cancel_order(view.id).status == "cancelled"
    assert tx.stock("C1") == (10, 0)


def test_cod_shop_rules(tx):
    with pytest.raises(errors.InvalidRequest) as exc:
        tx.place([("N1", 1)], "cod")
    assert exc.value.rule == "cod.accepted" and exc.value.field == "tx_type"
    with pytest.raises(errors.InvalidRequest) as exc:
        tx.place([("C2", 2)], "cod")  # 60.00 > the 50.00 cap
    assert exc.value.rule == "cod.order_value_cap" and exc.value.extra["cap_cents"] == 5000
    assert tx.stock("C2") == (10, 0)
    tx.place([("C1", 2)], "cod")
    with pytest.raises(errors.PurchaseLimitExceeded) as exc2:
        tx.place([("C1", 2)], "cod", key="k2")
    assert exc2.value.rule == "cod.per_buyer_day"
    tx.clock.advance(days=1)
    assert tx.place([("C1", 2)], "cod", key="k3").status == "confirmed"
    # the same SKU online is not capped by the COD rules
    assert tx.place([("C2", 2)], "fixed_price", key="k4").status == "pending_payment"


# ------------------------------------------------------------------------- presale
def test_presale_deposit_then_balance_in_its_window(tx):
    view = tx.place([("P1", 2)], "presale", stage="deposit")
    assert view.status == "pending_payment" and view.amount_cents == 90000
    pre = view.presale
    assert (pre.stage, pre.deposit_cents, pre.balance_cents) == ("deposit", 10000, 80000)
    assert (pre.balance_starts_at, pre.balance_ends_at) == (BALANCE_OPENS, BALANCE_CLOSES)
    assert tx.stock("P1") == (3, 2)
    paid = tx.service.pay_order(view.id, stage="deposit")
    assert paid.status == "deposit_paid" and paid.presale.stage == "balance"
    assert paid.expires_at == BALANCE_CLOSES and tx.gateway.charges[-1][2] == 10000
    assert tx.stock("P1") == (3, 2)  # still reserved, not sold
    with pytest.raises(errors.Conflict) as exc:
        tx.service.pay_order(view.id, stage="balance")
    assert exc.value.rule == "presale.balance_window"
    tx.clock.t = BALANCE_OPENS + timedelta(hours=1)
    with pytest.raises(errors.Conflict) as exc:
        tx.service.pay_order(view.id, stage="deposit")
    assert exc.value.rule == "presale.stage"
    assert tx.service.cancel_expired() == 0 and tx.service.forfeit_presales() == 0
    done = tx.service.pay_order(view.id, stage="balance")
    assert done.status == "paid" and tx.gateway.charges[-1][2] == 80000
    assert [p.stage for p in done.payments] == ["deposit", "balance"]
    assert tx.stock("P1") == (1, 0)
    stages = [(e.stage, e.amount_cents) for e in tx.events("OrderPaid")]
    assert stages == [("deposit", 10000), ("balance", 80000)]


def test_presale_order_needs_the_deposit_stage(tx):
    for stage in (None, "balance"):
        with pytest.raises(errors.InvalidRequest) as exc:
            tx.place([("P1", 1)], "presale", stage=stage)
        assert exc.value.field == "stage" and exc.value.rule == "presale.stage"
    with pytest.raises(errors.InvalidRequest) as exc:
        tx.place([("C1", 1)], "presale", stage="deposit")
    assert exc.value.rule == "presale.sku_on_presale"
    assert tx.stock("P1") == (3, 0)


def test_presale_deposit_timeout_releases_stock(tx):
    view = tx.place([("P1", 1)], "presale", stage="deposit")
    tx.clock.advance(minutes=16)
    assert tx.service.cancel_expired() == 1
    assert tx.service.get_order(view.id).status == "cancelled" and tx.stock("P1") == (3, 0)


def test_presale_unpaid_balance_forfeits_the_deposit(tx):
    view = tx.place([("P1", 1)], "presale", stage="deposit")
    tx.service.pay_order(view.id)
    tx.clock.t = BALANCE_CLOSES
    assert tx.service.forfeit_presales() == 1
    after = tx.service.get_order(view.id)
    assert after.status == "cancelled" and after.presale.deposit_outcome == "forfeited"
    assert tx.stock("P1") == (3, 0) and tx.gateway.refunds == []
    assert tx.events("DepositForfeited")[0].amount_cents == 5000
    with pytest.raises(errors.Conflict):
        tx.service.pay_order(view.id, stage="balance")
    # the per-buyer quota is back
    assert tx.place([("P1", 2)], "presale", key="k2", stage="deposit").presale.deposit_cents == 10000


def test_presale_refundable_deposit_returned_on_lapse_and_cancel():
    tx = TxEnv(refundable=True)
    a = tx.place([("P1", 1)], "presale", stage="deposit")
    tx.service.pay_order(a.id)
    b = tx.place([("P1", 1)], "presale", key="k2", stage="deposit")
    tx.service.pay_order(b.id)
    assert tx.service.cancel_order(b.id).presale.deposit_outcome == "refunded"
    tx.clock.t = BALANCE_CLOSES + timedelta(seconds=1)
    assert tx.service.forfeit_presales() == 1
    assert sorted(r[2] for r in tx.gateway.refunds) == [5000, 5000]
    assert len(tx.events("DepositRefunded")) == 2 and tx.stock("P1") == (3, 0)


@pytest.mark.parametrize("refundable, expected", [(False, 40000), (True, 45000)])
def test_presale_refund_follows_the_shops_deposit_rule(refundable, expected):
    tx = TxEnv(refundable=refundable)
    view = tx.place([("P1", 1)], "presale", stage="deposit")
    tx.service.pay_order(view.id)
    tx.clock.t = BALANCE_OPENS
    tx.service.pay_order(view.id, stage="balance")
    refund = tx.service.request_refund(view.id, [("P1", 1)])
    assert refund.amount_cents == expected
    assert tx.service.approve_refund(refund.id).status == "completed"
    assert tx.gateway.refunds[-1][2] == expected


def test_presale_cancel_after_deposit_forfeits_by_default(tx):
    view = tx.place([("P1", 1)], "presale", stage="deposit")
    tx.service.pay_order(view.id)
    with pytest.raises(errors.Conflict):
        tx.service.request_refund(view.id, [("P1", 1)])
    done = tx.service.cancel_order(view.id)
    assert done.status == "cancelled" and done.presale.deposit_outcome == "forfeited"
    assert tx.stock("P1") == (3, 0) and tx.gateway.refunds == []
