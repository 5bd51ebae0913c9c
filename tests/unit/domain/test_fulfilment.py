"""Address library, warehouse split, delivery + auto-receive, after-sale approval/rejection/return.

Runs on the in-memory fakes here and, through tests/integration/domain/test_sql_fulfilment.py,
on SQLite and PostgreSQL (the ``env`` fixture is replaced there).
"""

from __future__ import annotations

import pytest

from domain import errors
from tests.unit.domain.helpers import order_cmd
from tests.unit.domain.product_helpers import BJ, HZ, SZ, warehouse_catalog


@pytest.fixture
def wenv(env):
    env.service.seed(warehouse_catalog())
    return env


def paid(env, lines, address, key="k"):
    view = env.service.place_order(order_cmd(lines, key=key, address=dict(address)))
    return env.service.pay_order(view.id)


# ------------------------------------------------------------------ addresses
def test_address_is_normalized_with_codes_next_to_what_was_typed(wenv):
    typed = {**HZ, "province": "浙江省", "city": "杭州", "district": "西湖区", "postal_code": "310013"}
    view = wenv.service.place_order(order_cmd([("W1", 1)], address=typed))
    assert view.address["province"] == "浙江省" and view.address["postal_code"] == "310013"
    norm = view.address_normalized
    assert (norm["country_code"], norm["province_code"], norm["city_code"], norm["district_code"]) == \
        ("CN", "CN-ZJ", "330100", "330106")
    assert (norm["province"], norm["city"], norm["district"]) == ("Zhejiang", "Hangzhou", "Xihu")
    again = wenv.service.get_order(view.id)
    assert again.address_normalized == norm and again.address == view.address


@pytest.mark.parametrize(("change", "field", "rule"), [
    ({"country": "Atlantis"}, "address.country", "address.country_known"),
    ({"province": "Nowhere"}, "address.province", "address.province_known"),
    ({"city": "Shenzhen"}, "address.city", "address.city_in_province"),
    ({"district": "Futian"}, "address.district", "address.district_in_city"),
    ({"postal_code": "518000"}, "address.postal_code", "address.postal_code_matches"),
    ({"postal_code": "31A"}, "address.postal_code", "address.postal_code_format"),
])
def test_address_refusals_name_the_level(wenv, change, field, rule):
    with pytest.raises(errors.InvalidRequest) as exc:
        wenv.service.place_order(order_cmd([("W1", 1)], address={**HZ, **change}))
    assert exc.value.field == field and exc.value.rule == rule
    assert wenv.stock("W1", "wh:hz") == (5, 0)


def test_country_without_a_data_file_is_checked_to_its_iso_subdivision(wenv):
    us = {**HZ, "country": "US", "province": "California", "city": "San Jose", "district": "Downtown"}
    view = wenv.service.place_order(order_cmd([("W1", 1)], address=us))
    assert view.address_normalized["province_code"] == "US-CA"
    assert view.address_normalized["city_code"] is None
    with pytest.raises(errors.InvalidRequest) as exc:
        wenv.service.place_order(order_cmd([("W1", 1)], key="k2", address={**us, "province": "Zhejiang"}))
    assert exc.value.field == "address.province"


# ----------------------------------------------------------------- warehouses
def test_nearest_warehouse_with_stock_serves_the_line(wenv):
    hz = wenv.service.place_order(order_cmd([("W1", 2)], key="a", address=HZ))
    sz = wenv.service.place_order(order_cmd([("W1", 2)], key="b", address=SZ))
    assert [s.warehouse_id for s in hz.sub_orders] == ["hz"]
    assert [s.warehouse_id for s in sz.sub_orders] == ["sz"]
    assert wenv.stock("W1", "wh:hz") == (5, 2) and wenv.stock("W1", "wh:sz") == (8, 2)


def test_nearest_without_enough_stock_falls_to_the_next(wenv):
    view = wenv.service.place_order(order_cmd([("W1", 6)], address=HZ))  # hz has 5
    assert [s.warehouse_id for s in view.sub_orders] == ["sz"]


def test_unknown_distance_picks_the_largest_stock(wenv):
    view = wenv.service.place_order(order_cmd([("W1", 1)], address=BJ))  # Beijing: hz is nearer
    assert view.sub_orders[0].warehouse_id == "hz"
    us = {**HZ, "country": "US", "province": "California", "city": "San Jose", "district": "x"}
    view = wenv.service.place_order(order_cmd([("W1", 1)], key="us", address=us))  # no distance known
    assert view.sub_orders[0].warehouse_id == "sz"  # 8 > 5


def test_order_splits_by_warehouse_within_a_shop(wenv):
    view = wenv.service.place_order(order_cmd([("W1", 1), ("W2", 1)], address=HZ))
    assert sorted((s.shop_id, s.warehouse_id, [li.sku for li in s.lines]) for s in view.sub_orders) == [
        ("w1", "hz", ["W1"]), ("w1", "sz", ["W2"])]
    assert view.amount_cents == 12000
    wenv.service.pay_order(view.id)
    assert wenv.stock("W1", "wh:hz") == (4, 0) and wenv.stock("W2", "wh:sz") == (3, 0)


def test_out_of_stock_in_every_warehouse_is_refused(wenv):
    with pytest.raises(errors.OutOfStock):
        wenv.service.place_order(order_cmd([("W1", 9)], address=HZ))
    assert wenv.stock("W1", "wh:sz") == (8, 0)


# ------------------------------------------------------------------- delivery
def test_ship_deliver_receive_with_events(wenv):
    order = paid(wenv, [("W1", 1)], HZ)
    sub = order.sub_orders[0].id
    v = wenv.service.ship(sub, "SF Express", "SF123")
    assert v.sub_orders[0].delivery_status == "shipped" and v.sub_orders[0].tracking_no == "SF123"
    with pytest.raises(errors.Conflict):
        wenv.service.ship(sub, "SF Express", "SF124")
    with pytest.raises(errors.Conflict):
        wenv.service.receive(sub)
    wenv.clock.advance(days=1)
    assert wenv.service.deliver(sub).sub_orders[0].delivery_status == "delivered"
    v = wenv.service.receive(sub)
    assert v.sub_orders[0].delivery_status == "received" and v.sub_orders[0].received_at == wenv.clock.now()
    names = wenv.event_names()
    assert names.index("SubOrderShipped") < names.index("SubOrderDelivered") < names.index("SubOrderReceived")


def test_unpaid_sub_order_cannot_ship_and_bad_inputs(wenv):
    view = wenv.service.place_order(order_cmd([("W1", 1)], address=HZ))
    with pytest.raises(errors.Conflict) as exc:
        wenv.service.ship(view.sub_orders[0].id, "SF", "1")
    assert exc.value.rule == "delivery.shippable"
    with pytest.raises(errors.InvalidRequest) as exc:
        wenv.service.ship(view.sub_orders[0].id, " ", "1")
    assert exc.value.field == "carrier"
    with pytest.raises(errors.NotFound):
        wenv.service.ship("so_nope", "SF", "1")


def test_auto_receive_after_the_shops_days(wenv):
    order = paid(wenv, [("W1", 1)], HZ)
    sub = order.sub_orders[0].id
    wenv.service.ship(sub, "SF", "1")
    wenv.service.deliver(sub)
    wenv.clock.advance(days=2, hours=23)
    assert wenv.service.auto_receive() == 0
    wenv.clock.advance(hours=1)
    assert wenv.service.auto_receive() == 1
    assert wenv.service.get_order(order.id).sub_orders[0].delivery_status == "received"
    assert wenv.service.auto_receive() == 0


# ----------------------------------------------------------------- after-sale
def test_refund_only_waits_for_approval_then_pays_out(wenv):
    order = paid(wenv, [("W1", 2)], HZ)
    rf = wenv.service.request_refund(order.id, [("W1", 1)])
    assert rf.status == "requested" and wenv.gateway.refunds == []
    done = wenv.service.approve_refund(rf.id)
    assert done.status == "completed" and wenv.gateway.refunds[0][2] == 10000
    assert wenv.stock("W1", "wh:hz") == (4, 0)  # not shipped: the unit goes back to its warehouse
    with pytest.raises(errors.Conflict):
        wenv.service.approve_refund(rf.id)


def test_rejection_with_reason_makes_the_units_refundable_again(wenv):
    order = paid(wenv, [("W1", 1)], HZ)
    rf = wenv.service.request_refund(order.id, [("W1", 1)])
    rej = wenv.service.reject_refund(rf.id, "item used")
    assert rej.status == "rejected" and rej.reason == "item used" and wenv.gateway.refunds == []
    with pytest.raises(errors.InvalidRequest):
        wenv.service.reject_refund(rf.id, " ")
    with pytest.raises(errors.Conflict):
        wenv.service.approve_refund(rf.id)
    again = wenv.service.request_refund(order.id, [("W1", 1)])
    assert again.status == "requested"
    assert "RefundRejected" in wenv.event_names()


def test_return_of_goods_completes_when_goods_are_back_to_their_warehouse(wenv):
    order = paid(wenv, [("W1", 2)], SZ)
    sub = order.sub_orders[0].id
    with pytest.raises(errors.Conflict) as exc:  # nothing shipped: nothing to return
        wenv.service.request_refund(order.id, [("W1", 1)], kind="return")
    assert exc.value.rule == "refund.return_needs_shipment"
    wenv.service.ship(sub, "SF", "1")
    wenv.service.deliver(sub)
    rf = wenv.service.request_refund(order.id, [("W1", 1)], kind="return")
    with pytest.raises(errors.Conflict):
        wenv.service.receive_returned_goods(rf.id)  # not approved yet
    with pytest.raises(errors.Conflict):
        wenv.service.complete_refund(rf.id)  # a return pays out only when the goods are back
    assert wenv.service.approve_refund(rf.id).status == "approved" and wenv.gateway.refunds == []
    done = wenv.service.receive_returned_goods(rf.id)
    assert done.status == "completed" and done.goods_received_at is not None
    assert wenv.stock("W1", "wh:sz") == (7, 0)  # 8 - 2 sold + 1 back
    assert wenv.stock("W1", "wh:hz") == (5, 0)


def test_refund_only_after_shipping_does_not_restock(wenv):
    order = paid(wenv, [("W1", 1)], HZ)
    wenv.service.ship(order.sub_orders[0].id, "SF", "1")
    rf = wenv.service.request_refund(order.id, [("W1", 1)])
    wenv.service.approve_refund(rf.id)
    assert wenv.stock("W1", "wh:hz") == (4, 0)


def test_refund_window_closes_after_receipt(wenv):
    order = paid(wenv, [("W1", 1)], HZ)
    sub = order.sub_orders[0].id
    wenv.service.ship(sub, "SF", "1")
    wenv.service.deliver(sub)
    wenv.service.receive(sub)
    wenv.clock.advance(days=7, seconds=1)
    with pytest.raises(errors.Conflict) as exc:
        wenv.service.request_refund(order.id, [("W1", 1)])
    assert exc.value.rule == "refund.window"


def test_bad_refund_kind(wenv):
    order = paid(wenv, [("W1", 1)], HZ)
    with pytest.raises(errors.InvalidRequest) as exc:
        wenv.service.request_refund(order.id, [("W1", 1)], kind="swap")
    assert exc.value.field == "kind"
