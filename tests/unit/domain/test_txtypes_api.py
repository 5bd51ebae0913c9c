"""HTTP contract of cod / presale / auction: bodies, stages, and problem+json refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from domain.api.app import create_app
from domain.api.auth import BearerAuth
from tests.unit.domain.helpers import ADDRESS
from tests.unit.domain.test_api import MERCHANT, MERCHANT_TOKEN, assert_problem
from tests.unit.domain.txtype_helpers import BALANCE_OPENS, START, TxEnv


@pytest.fixture
def api():
    tx = TxEnv()
    client = TestClient(create_app(tx.service, merchant_auth=BearerAuth(MERCHANT_TOKEN)),
                        raise_server_exceptions=False)
    yield tx, client
    client.close()


def order(client, sku, tx_type, key="k1", **extra):
    return client.post("/orders", json={"buyer_id": "u1", "tx_type": tx_type, "channel": "app",
                                        "lines": [{"sku": sku, "qty": 1}], "address": dict(ADDRESS),
                                        "idempotency_key": key, **extra})


def test_presale_over_http(api):
    tx, client = api
    assert_problem(order(client, "P1", "presale"), 422, field="stage", rule="presale.stage")
    r = order(client, "P1", "presale", stage="deposit")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["presale"]["deposit_cents"] == 5000 and body["presale"]["balance_cents"] == 40000
    assert body["presale"]["balance_starts_at"].startswith(BALANCE_OPENS.isoformat()[:19])
    paid = client.post(f"/orders/{body['id']}/pay", json={"stage": "deposit"})
    assert paid.status_code == 200 and paid.json()["status"] == "deposit_paid"
    assert_problem(client.post(f"/orders/{body['id']}/pay", json={"stage": "balance"}), 409, field="stage",
                   rule="presale.balance_window")
    tx.clock.t = BALANCE_OPENS
    done = client.post(f"/orders/{body['id']}/pay", json={"stage": "balance"})
    assert done.json()["status"] == "paid" and [p["stage"] for p in done.json()["payments"]] == [
        "deposit", "balance"]


def test_cod_over_http(api):
    _tx, client = api
    r = order(client, "C1", "cod")
    assert r.status_code == 201 and r.json()["status"] == "confirmed" and r.json()["cash_on_delivery"]
    assert_problem(order(client, "N1", "cod", key="k2"), 422, field="tx_type", rule="cod.accepted")
    sub = r.json()["sub_orders"][0]["id"]
    assert client.post(f"/sub-orders/{sub}/ship", json={"carrier": "SF", "tracking_no": "1"},
                       headers=MERCHANT).status_code == 200
    assert_problem(client.post(f"/sub-orders/{sub}/deliver", json={}, headers=MERCHANT), 422,
                   field="collected")
    done = client.post(f"/sub-orders/{sub}/deliver", json={"collected": True}, headers=MERCHANT)
    assert done.status_code == 200 and done.json()["status"] == "paid"


def test_auction_over_http(api):
    tx, client = api
    body = {"sku": "N1", "start_price_cents": 1000, "increment_cents": 100, "reserve_cents": 1000,
            "starts_at": (START + timedelta(minutes=1)).isoformat(),
            "ends_at": (START + timedelta(hours=1)).isoformat()}
    assert client.post("/auctions", json=body).status_code in (401, 403)
    r = client.post("/auctions", json=body, headers=MERCHANT)
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    assert r.headers["location"] == f"/auctions/{aid}"
    bid = {"buyer_id": "b1", "amount_cents": 1000}
    assert_problem(client.post(f"/auctions/{aid}/bids", json=bid), 409, rule="auction.not_started")
    tx.clock.advance(minutes=1)
    assert client.post(f"/auctions/{aid}/bids", json=bid).status_code == 201
    assert_problem(client.post(f"/auctions/{aid}/bids", json={**bid, "amount_cents": 1050}), 409,
                   field="amount_cents", rule="auction.bid_too_low")
    assert_problem(client.post(f"/auctions/{aid}/bids", json={**bid, "amount_cents": "x"}), 422)
    assert_problem(client.post("/auctions/au_x/bids", json=bid), 404)
    tx.clock.advance(hours=1)
    assert_problem(client.post(f"/auctions/{aid}/bids", json={**bid, "amount_cents": 9000}), 409,
                   rule="auction.ended")
    got = client.get(f"/auctions/{aid}").json()
    assert got["current_cents"] == 1000 and got["phase"] == "ended" and got["bids"][0]["buyer_id"] == "b1"
    assert_problem(order(client, "N1", "auction"), 422, field="tx_type", rule="auction.by_award")
    assert_problem(client.post("/auctions", json={**body, "starts_at": "2026-01-01T00:00:00"},
                               headers=MERCHANT), 422, field="starts_at")


def test_products_list_their_tx_types(api):
    _tx, client = api
    types = {p["sku"]: p["tx_types"] for s in ("c1", "p1", "n1")
             for p in client.get(f"/shops/{s}/products").json()}
    assert types == {"C1": ["fixed_price", "cod"], "C2": ["fixed_price", "cod"],
                     "P1": ["fixed_price", "presale"], "N1": ["fixed_price"]}
