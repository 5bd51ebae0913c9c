"""A bounded property run over the new endpoints' request bodies: never a 5xx, always problem+json."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.api.app import create_app
from domain.api.auth import BearerAuth
from tests.unit.domain.helpers import ADDRESS
from tests.unit.domain.test_api import MERCHANT, MERCHANT_TOKEN
from tests.unit.domain.txtype_helpers import START, TxEnv

TX = TxEnv()
CLIENT = TestClient(create_app(TX.service, merchant_auth=BearerAuth(MERCHANT_TOKEN)),
                    raise_server_exceptions=False)
AUCTION = TX.service.create_auction(sku="N1", start_price_cents=100, increment_cents=10, reserve_cents=0,
                                    starts_at=START, ends_at=START + timedelta(days=1)).id
json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**13, 10**13) | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                      inner, max_size=3),
                           max_leaves=6)


def _ok(resp) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith("application/problem+json")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buyer=st.one_of(st.text(max_size=70), json_values), amount=json_values | st.integers(-5, 10**13),
       address=st.none() | st.just(dict(ADDRESS)) | json_values)
def test_bids_never_5xx(buyer, amount, address):
    body = {"buyer_id": buyer, "amount_cents": amount}
    if address is not None:
        body["address"] = address
    _ok(CLIENT.post(f"/auctions/{AUCTION}/bids", json=body))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sku=st.sampled_from(["N1", "C1", "zz"]) | st.text(max_size=5),
       prices=st.lists(json_values | st.integers(-5, 10**13), min_size=3, max_size=3),
       starts=st.sampled_from([START.isoformat(), "2026-01-01T00:00:00", "x", None]),
       ends=st.sampled_from([(START + timedelta(hours=1)).isoformat(), START.isoformat(), "bad", None]))
def test_create_auction_never_5xx(sku, prices, starts, ends):
    body = {"sku": sku, "start_price_cents": prices[0], "increment_cents": prices[1],
            "reserve_cents": prices[2], "starts_at": starts, "ends_at": ends}
    _ok(CLIENT.post("/auctions", json=body, headers=MERCHANT))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx_type=st.sampled_from(["presale", "cod", "auction", "fixed_price"]) | st.text(max_size=8),
       stage=st.sampled_from(["deposit", "balance", None, "x"]) | json_values,
       sku=st.sampled_from(["P1", "C1", "C2", "N1"]), qty=st.integers(-2, 1200) | json_values,
       key=st.text(min_size=1, max_size=10), collected=json_values)
def test_orders_pay_deliver_never_5xx(tx_type, stage, sku, qty, key, collected):
    body = {"buyer_id": "prop", "tx_type": tx_type, "channel": "app", "lines": [{"sku": sku, "qty": qty}],
            "address": dict(ADDRESS), "idempotency_key": key, "stage": stage}
    resp = CLIENT.post("/orders", json=body)
    _ok(resp)
    if resp.status_code == 201:
        order = resp.json()
        _ok(CLIENT.post(f"/orders/{order['id']}/pay", json={"stage": stage}))
        sub = order["sub_orders"][0]["id"]
        _ok(CLIENT.post(f"/sub-orders/{sub}/deliver", json={"collected": collected}, headers=MERCHANT))
        _ok(CLIENT.post(f"/orders/{order['id']}/cancel"))
