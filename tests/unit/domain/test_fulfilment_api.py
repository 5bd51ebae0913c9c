"""HTTP contract of delivery, after-sale, warehouses and address refusals (SQLite file)."""

from __future__ import annotations

import pytest

from domain.api.auth import BearerAuth
from tests.unit.domain.product_helpers import HZ, warehouse_catalog
from tests.unit.domain.test_api import MERCHANT, MERCHANT_TOKEN, Api, assert_problem


@pytest.fixture
def api(tmp_path):
    a = Api(tmp_path, merchant_auth=BearerAuth(MERCHANT_TOKEN))
    a.client.headers.update(MERCHANT)  # the merchant side's control token on every call here
    a.service.seed(warehouse_catalog())
    yield a
    a.client.close()
    a.db.dispose()


def place(api, address=HZ, lines=(("W1", 1),), key="k1"):
    body = {"buyer_id": "u1", "tx_type": "fixed_price", "channel": "app",
            "lines": [{"sku": s, "qty": q} for s, q in lines], "address": dict(address),
            "idempotency_key": key}
    return api.client.post("/orders", json=body)


@pytest.mark.parametrize(("change", "field"), [
    ({"province": "Atlantis"}, "address.province"), ({"city": "Chengdu"}, "address.city"),
    ({"district": "Nanshan"}, "address.district"), ({"postal_code": "100000"}, "address.postal_code"),
])
def test_refused_address_is_422_naming_the_level(api, change, field):
    assert_problem(place(api, {**HZ, **change}), 422, field=field)


def test_delivery_and_after_sale_over_http(api):
    r = place(api, {**HZ, "postal_code": "310013"})
    assert r.status_code == 201, r.text
    order = r.json()
    sub = order["sub_orders"][0]
    assert sub["warehouse_id"] == "hz" and sub["delivery_status"] == "not_shipped"
    assert order["address_normalized"]["district_code"] == "330106"
    assert api.client.post(f"/orders/{order['id']}/pay").status_code == 200
    assert_problem(api.client.post(f"/sub-orders/{sub['id']}/ship", json={"carrier": ""}), 422)
    r = api.client.post(f"/sub-orders/{sub['id']}/ship", json={"carrier": "SF", "tracking_no": "SF1"})
    assert r.status_code == 200 and r.json()["sub_orders"][0]["delivery_status"] == "shipped"
    again = {"carrier": "SF", "tracking_no": "2"}
    assert_problem(api.client.post(f"/sub-orders/{sub['id']}/ship", json=again),
                   409, rule="delivery.not_shipped")
    assert api.client.post(f"/sub-orders/{sub['id']}/deliver", json={}).status_code == 200
    got = api.client.get(f"/orders/{order['id']}").json()["sub_orders"][0]
    assert got["delivery_status"] == "delivered" and got["tracking_no"] == "SF1"
    r = api.client.post(f"/orders/{order['id']}/refunds", json={"lines": [{"sku": "W1", "qty": 1}],
                                                                "kind": "return"})
    assert r.status_code == 201 and r.json()["kind"] == "return"
    rid = r.json()["id"]
    assert api.client.post(f"/refunds/{rid}/approve").json()["status"] == "approved"
    r = api.client.post(f"/refunds/{rid}/goods-received")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert_problem(api.client.post(f"/refunds/{rid}/reject", json={"reason": "late"}), 409)
    assert_problem(api.client.post("/sub-orders/so_nope/receive"), 404)
    assert_problem(api.client.post(f"/refunds/{rid}/reject", json={}), 422, field="reason")


def test_products_say_their_tx_types_and_warehouse_stock(api):
    products = {p["sku"]: p for p in api.client.get("/shops/w1/products").json()}
    assert products["W1"]["tx_types"] == ["fixed_price"]
    assert products["W1"]["available"] == 13 and products["W1"]["warehouses"] == {"hz": 5, "sz": 8}
    flash = {p["sku"]: p for p in api.client.get("/shops/s2/products").json()}["B2"]
    assert "flash_sale" in flash["tx_types"]


def test_merchant_actions_need_the_control_token(tmp_path):
    a = Api(tmp_path, merchant_auth=BearerAuth(MERCHANT_TOKEN))
    try:
        a.service.seed(warehouse_catalog())
        order = place(a).json()
        sub = order["sub_orders"][0]["id"]
        a.client.post(f"/orders/{order['id']}/pay")
        body = {"carrier": "SF", "tracking_no": "1"}
        assert_problem(a.client.post(f"/sub-orders/{sub}/ship", json=body), 401)
        wrong = {"Authorization": "Bearer nope"}
        assert_problem(a.client.post(f"/sub-orders/{sub}/ship", json=body, headers=wrong), 401)
        ok = a.client.post(f"/sub-orders/{sub}/ship", json=body, headers=MERCHANT)
        assert ok.status_code == 200
    finally:
        a.client.close()
        a.db.dispose()
