"""The ``deliveries`` figure: the event → point mapping, and on a real SQLite trading DB the relay's
sums equal the sub-orders and payments in the books, re-emitted seconds and replays included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from collectors.points import validate
from collectors.registry import open_store
from collectors.relay import business_points, carrier_tag
from domain.adapters import orm
from domain.adapters.journal import JournalRow
from domain.adapters.unit_of_work import build_trading_db
from tests.unit.collectors.relay_env import RelayEnv, crash_cursor_save_once, delivery_catalog

T = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _row(i: int, name: str, at: datetime, **payload) -> JournalRow:
    base = {"order_id": "o", "sub_order_id": f"so{i}", "shop_id": "s1", "tx_type": "fixed_price",
            "channel": "app", "warehouse_id": "w1"}
    return JournalRow(i, 0, name, at, "o", {**base, **payload})


def _deliveries(rows) -> dict:
    return {(p.time, p.tags["shop"], p.tags["tx_type"], p.tags["carrier"]): p.fields
            for p in business_points(rows, app="tg") if p.measurement == "deliveries"}


ZERO = {"shipped": 0.0, "delivered": 0.0, "received": 0.0, "auto_received": 0.0, "failed": 0.0,
        "cod_collected": 0.0, "cod_amount": 0.0}


def test_each_step_is_counted_per_second_shop_tx_type_and_carrier():
    t1 = T + timedelta(seconds=1, milliseconds=300)
    rows = [
        _row(1, "SubOrderShipped", T, carrier="SF", tracking_no="T1"),
        _row(2, "SubOrderShipped", T + timedelta(milliseconds=900), carrier="SF", tracking_no="T2"),
        _row(3, "SubOrderShipped", T, carrier="YTO", tracking_no="T3", shop_id="s2"),
        _row(1, "SubOrderDelivered", t1, collected=None),
        _row(2, "SubOrderReceived", t1, auto=False),
        _row(3, "SubOrderReceived", t1, auto=True),
        _row(4, "DeliveryFailed", t1, tx_type="cod", reason="cash not collected"),
    ]
    got = _deliveries(rows)
    assert got == {
        (T, "s1", "fixed_price", "SF"): {**ZERO, "shipped": 2.0},
        (T, "s2", "fixed_price", "YTO"): {**ZERO, "shipped": 1.0},
        # the later steps' events do not name the carrier
        (T + timedelta(seconds=1), "s1", "fixed_price", "-"): {**ZERO, "delivered": 1.0, "received": 2.0,
                                                               "auto_received": 1.0},
        (T + timedelta(seconds=1), "s1", "cod", "-"): {**ZERO, "failed": 1.0},
    }


def test_cash_on_delivery_is_collected_only_with_the_payment_of_that_sub_order_in_the_same_transaction():
    rows = [
        # COD: delivered, collected, and paid at the same instant (one transaction)
        _row(1, "SubOrderDelivered", T, tx_type="cod", collected=True),
        _row(1, "OrderPaid", T, tx_type="cod", amount_cents=2050, payment_id="p1"),
        _row(2, "SubOrderDelivered", T, tx_type="cod", collected=True),
        _row(2, "OrderPaid", T, tx_type="cod", amount_cents=999, payment_id="p2"),
        # a prepaid order delivered with collected: true sent by the caller is no cash collection
        _row(3, "SubOrderDelivered", T, collected=True),
        # an earlier payment of another sub-order in that second does not make it one either
        _row(4, "OrderPaid", T - timedelta(milliseconds=1), amount_cents=5000, payment_id="p4"),
        _row(4, "SubOrderDelivered", T, collected=True),
    ]
    got = _deliveries(rows)
    assert got[(T, "s1", "cod", "-")] == {**ZERO, "delivered": 2.0, "cod_collected": 2.0, "cod_amount": 30.49}
    assert got[(T, "s1", "fixed_price", "-")] == {**ZERO, "delivered": 2.0}


def test_carrier_names_become_valid_tags():
    assert carrier_tag("  SF  Express ") == "SF Express"
    assert carrier_tag("a\\b\nc\r") == "a b c"
    assert carrier_tag(None) == carrier_tag("  ") == "-"
    rows = [_row(1, "SubOrderShipped", T, carrier="Bad\\Name\nCo", tracking_no="x")]
    (point,) = [p for p in business_points(rows, app="tg") if p.measurement == "deliveries"]
    assert validate(point).tags["carrier"] == "Bad Name Co"


def test_points_of_other_measurements_are_unchanged_by_delivery_events():
    rows = [_row(1, "OrderPaid", T, amount_cents=100, payment_id="p"), _row(1, "SubOrderShipped", T,
                                                                             carrier="SF", tracking_no="1")]
    orders = [p for p in business_points(rows, app="tg") if p.measurement == "orders"]
    assert len(orders) == 1 and orders[0].fields["paid"] == 1.0 and orders[0].fields["paid_amount"] == 1.0


# ------------------------------------------------------------------ on a real trading DB


@pytest.fixture
def env(tmp_path):
    db = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    e = RelayEnv(db, tmp_path, catalog=delivery_catalog())
    yield e
    db.dispose()


def fulfil(env: RelayEnv) -> dict[str, str]:
    """Orders through every delivery step: prepaid shipped → delivered → received (by the buyer and by
    the auto-receive job), cash on delivery collected and failed, one left shipped, one never shipped."""
    svc = env.service
    two_shops = env.place([("A1", 1), ("B1", 1)], pay=True)
    a_sub, b_sub = env.sub_orders(two_shops)
    svc.ship(a_sub, "SF", "T-1")
    svc.ship(b_sub, "YTO", "T-2")
    env.clock.advance(seconds=1.2)
    svc.deliver(a_sub)
    svc.deliver(b_sub)
    env.clock.advance(seconds=0.5)
    svc.receive(a_sub)
    cod_ok = env.place([("C1", 3)], tx_type="cod")
    (cod_ok_sub,) = env.sub_orders(cod_ok)
    svc.ship(cod_ok_sub, "SF", "T-3")
    cod_bad = env.place([("C1", 1)], tx_type="cod")
    (cod_bad_sub,) = env.sub_orders(cod_bad)
    svc.ship(cod_bad_sub, "ZTO", "T-4")
    env.clock.advance(seconds=2)
    svc.deliver(cod_ok_sub, collected=True)
    svc.deliver(cod_bad_sub, collected=False)
    shipped_only = env.place([("A3", 2)], pay=True)
    svc.ship(env.sub_orders(shipped_only)[0], "SF", "T-5")
    env.place([("A3", 1)], pay=True)  # paid, never shipped
    env.clock.advance(days=8)
    assert svc.auto_receive() == 2  # b_sub and the collected COD sub-order
    return {"b_sub": b_sub, "cod_ok_sub": cod_ok_sub}


def test_relay_delivery_sums_equal_the_trading_db(env):
    fulfil(env)
    result = env.relay().run_once()
    assert result.leader and result.error is None
    env.assert_deliveries_equal()
    truth = env.delivery_truth()
    assert truth == {"shipped": 5.0, "delivered": 3.0, "received": 3.0, "failed": 1.0, "cod_collected": 1.0,
                     "cod_amount": 3000.0}
    assert env.delivery_sums()["auto_received"] == 2.0
    env.assert_equal()  # the orders/refunds/payments figures still equal the books
    by_carrier = env.delivery_sums(group_by=("carrier",))
    assert {k[0]: v["shipped"] for k, v in by_carrier.items() if v["shipped"]} == {
        "SF": 3.0, "YTO": 1.0, "ZTO": 1.0}
    by_shop = env.delivery_sums(group_by=("shop", "tx_type"))
    assert by_shop[("c1", "cod")]["cod_amount"] == 3000 and by_shop[("c1", "cod")]["failed"] == 1.0
    assert by_shop[("s2", "fixed_price")]["received"] == 1.0


def test_a_re_emitted_second_and_a_replay_count_no_delivery_twice(env, tmp_path):
    fulfil(env)
    relay = env.relay()
    crash_cursor_save_once(relay)
    assert "killed" in (relay.run_once().error or "")
    again = env.relay("r1").run_once()  # the restarted relay writes the same seconds again
    assert again.error is None and again.events > 0
    env.assert_deliveries_equal()
    expected = env.delivery_sums()
    env.store = relay.store = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", clock=env.clock)
    start, end = env.clock.now() - timedelta(days=30), env.clock.now() + timedelta(minutes=1)
    for _ in range(2):
        assert relay.replay(start, end) > 0
        assert env.delivery_sums() == expected


def test_a_delivery_event_committed_late_into_a_written_second_replaces_that_point(env):
    order = env.place([("A1", 1)], pay=True)
    env.service.ship(env.sub_orders(order)[0], "SF", "T-9")
    relay = env.relay()
    relay.run_once()
    assert env.delivery_sums()["shipped"] == 1.0
    last = env.journal.tail(name="SubOrderShipped", last=1)[0]
    with env.db.engine.begin() as conn:
        conn.execute(insert(orm.domain_events).values(
            occurred_at=last.occurred_at, name="SubOrderShipped", order_id="late",
            payload=json.dumps({**last.payload, "order_id": "late", "sub_order_id": "late-1"})))
    relay.run_once()
    assert env.delivery_sums()["shipped"] == 2.0  # the second's point holds both, not just the late one
