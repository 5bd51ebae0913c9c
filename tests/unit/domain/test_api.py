"""HTTP API over a real SQLite file: status codes, bodies, and RFC 9457 problems."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from domain.adapters.unit_of_work import build_trading_db
from domain.api.app import create_app
from domain.api.auth import BearerAuth
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway
from tests.unit.domain.helpers import ADDRESS, small_catalog


class Api:
    def __init__(self, tmp_path, **kw):
        self.db = build_trading_db(f"sqlite:///{tmp_path / 'api.db'}")
        self.gateway = FakeGateway()
        self.clock = FakeClock()
        self.publisher = CollectingPublisher()
        self.service = TradingService(self.db.uow_factory, self.gateway, clock=self.clock,
                                      publisher=self.publisher)
        self.service.seed(small_catalog())
        self.client = TestClient(create_app(self.service, **kw), raise_server_exceptions=False)

    def order(self, lines=(("A1", 1),), key="k1", buyer="u1", tx_type="fixed_price", **extra):
        body = {"buyer_id": buyer, "tx_type": tx_type, "channel": "app",
                "lines": [{"sku": s, "qty": q} for s, q in lines], "address": dict(ADDRESS),
                "idempotency_key": key, **extra}
        return self.client.post("/orders", json=body)


MERCHANT_TOKEN = "merchant-token-1"
MERCHANT = {"Authorization": f"Bearer {MERCHANT_TOKEN}"}


@pytest.fixture
def api(tmp_path):
    a = Api(tmp_path, merchant_auth=BearerAuth(MERCHANT_TOKEN, how_to_enable="set THE_TOKEN"))
    yield a
    a.client.close()
    a.db.dispose()


def assert_problem(resp, status, field=None, rule=None):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["type"].startswith("https://")
    assert body["title"] and body["detail"]
    if field is not None:
        assert body["field"] == field
    if rule is not None:
        assert body["rule"] == rule
    return body


def test_place_order_201_with_sub_orders_and_amounts(api):
    r = api.order(lines=[("A1", 2), ("B1", 1)])
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/orders/{body['id']}"
    assert body["status"] == "pending_payment" and body["amount_cents"] == 4800
    assert [(s["shop_id"], s["amount_cents"]) for s in body["sub_orders"]] == [("s1", 1800), ("s2", 3000)]
    assert api.client.get(f"/orders/{body['id']}").json() == body


def test_idempotent_replay_and_conflict(api):
    first = api.order()
    again = api.order()
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    body = assert_problem(api.order(lines=[("A1", 2)]), 409, field="idempotency_key",
                          rule="idempotency_key.same_body")
    assert body["order_id"] == first.json()["id"]


def test_problem_statuses(api):
    assert_problem(api.order(lines=[("ZZZ", 1)]), 422, field="lines[0].sku", rule="catalog.sku_exists")
    body = assert_problem(api.order(lines=[("B1", 4)]), 409, field="lines[0].qty", rule="inventory.available")
    assert body["available"] == 3
    api.order(lines=[("A2", 2)], key="a")
    assert_problem(api.order(lines=[("A2", 1)], key="b"), 409, rule="purchase_limit.day")
    assert_problem(api.order(lines=[("A1", 0)], key="c"), 422, field="lines[0].qty")
    assert_problem(api.order(lines=[("A1", "2")], key="c"), 422, field="lines[0].qty")
    assert_problem(api.order(key="d", tx_type="auction"), 422, field="tx_type")
    assert_problem(api.client.get("/orders/o_missing"), 404, rule="order.exists")
    assert_problem(api.client.get("/nope"), 404)


def test_request_validation_names_the_field(api):
    resp = api.client.post("/orders", json={"buyer_id": "u1", "tx_type": "fixed_price", "channel": "fax",
                                            "lines": [], "address": {}, "idempotency_key": "k"})
    body = assert_problem(resp, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"channel", "lines", "address.country"} <= fields
    assert_problem(api.client.post("/orders", content=b"{not json", headers={"content-type":
                                                                                  "application/json"}), 422)


def test_pay_cancel_refund_flow(api):
    oid = api.order(lines=[("A1", 3)]).json()["id"]
    api.gateway.fail_next = ["insufficient funds"]
    body = assert_problem(api.client.post(f"/orders/{oid}/pay"), 402, rule="payment.charge")
    assert body["reason"] == "insufficient funds"
    paid = api.client.post(f"/orders/{oid}/pay")
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    body = assert_problem(api.client.post(f"/orders/{oid}/cancel"), 409, rule="order.cancellable")
    assert body["current_status"] == "paid"
    r = api.client.post(f"/orders/{oid}/refunds", json={"lines": [{"sku": "A1", "qty": 1}]})
    assert r.status_code == 201 and r.json()["amount_cents"] == 900
    rid = r.json()["id"]
    assert_problem(api.client.post(f"/orders/{oid}/refunds", json={"lines": [{"sku": "A1", "qty": 3}]}),
                   422, rule="refund.qty_within_paid")
    anonymous = api.client.post(f"/refunds/{rid}/complete")  # a merchant action: the token is needed
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    wrong = api.client.post(f"/refunds/{rid}/complete", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and MERCHANT_TOKEN not in wrong.text
    assert api.client.get(f"/refunds/{rid}").json()["status"] != "completed"
    done = api.client.post(f"/refunds/{rid}/complete", headers=MERCHANT)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert api.client.get(f"/refunds/{rid}").json()["status"] == "completed"
    assert api.client.get(f"/orders/{oid}").json()["status"] == "partially_refunded"
    other = api.order(key="k2").json()["id"]
    c = api.client.post(f"/orders/{other}/cancel", json={"reason": "changed my mind"})
    assert c.status_code == 200 and c.json()["status"] == "cancelled"
    assert api.publisher.events[-1].name == "StockReleased"
    assert [e.reason for e in api.publisher.events if e.name == "OrderCancelled"] == ["changed my mind"]
    third = api.order(key="k3").json()["id"]
    assert api.client.post(f"/orders/{third}/cancel").json()["status"] == "cancelled"


def test_flash_sale_over_http(api):
    r = api.order(lines=[("B2", 1)], tx_type="flash_sale")
    assert r.status_code == 201 and r.json()["amount_cents"] == 1999
    assert_problem(api.order(lines=[("B2", 1)], tx_type="flash_sale", key="k2"), 409,
                   rule="flash_sale.per_buyer")


def test_catalog_endpoints(api):
    shops = api.client.get("/shops").json()
    assert [s["id"] for s in shops] == ["s1", "s2"]
    products = api.client.get("/shops/s2/products").json()
    flash = next(p for p in products if p["sku"] == "B2")["flash"]
    assert flash["price_cents"] == 1999 and flash["per_buyer_limit"] == 1
    assert_problem(api.client.get("/shops/nope/products"), 404, rule="shop.exists")


def test_routers_and_exception_handlers_are_plugged_in(tmp_path):
    class Blocked(Exception):
        pass

    extra = APIRouter()

    @extra.get("/ops/boom")
    def boom():
        raise Blocked()

    async def on_blocked(request, exc):
        from fastapi.responses import JSONResponse
        return JSONResponse({"status": 429}, status_code=429)

    a = Api(tmp_path, routers=[extra], exception_handlers={Blocked: on_blocked})
    assert a.client.get("/ops/boom").status_code == 429
    assert a.client.get("/ops/health").status_code == 404  # the node's /ops routes are tradeguard.ops_api's


def test_unexpected_error_is_a_500_problem(api):
    def explode(*a, **k):
        raise RuntimeError("boom")

    api.service.list_shops = explode
    assert_problem(api.client.get("/shops"), 500)


def test_merchant_actions_are_disabled_without_a_configured_token(tmp_path):
    a = Api(tmp_path)  # no merchant_auth given: no token configured
    try:
        r = a.client.post("/refunds/r_1/complete", headers=MERCHANT)
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        assert "none is configured" in r.json()["detail"]
        responses = a.client.get("/openapi.json").json()["paths"]["/refunds/{refund_id}/complete"]["post"]
        assert {"401", "403"} <= set(responses["responses"])
    finally:
        a.client.close()
        a.db.dispose()
