"""--tx-mix carries presale, COD and auction traffic through: balances paid inside the window the order
answer gives, COD orders shipped then delivered with the cash collected (merchant token), bids of the
next minimum on a running auction. Against an httpx MockTransport node that refuses what a real node
would refuse (balance outside its window, delivery before shipping or without the token, a low bid)."""

from __future__ import annotations

import io
import itertools
import json
import random
from datetime import UTC, datetime, timedelta

import httpx

from common.clock import FakeClock
from tradeguard.traffic import (
    CodOrder,
    PresaleDue,
    ShopperState,
    TrafficConfig,
    TrafficRunner,
    choose_action,
    parse_tx_mix,
)

TOKEN = "ops-token-for-tests"
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
SHOPS = [{"id": "s1", "name": "One"}, {"id": "s2", "name": "Two"}]
PRODUCTS = {
    "s1": [
        {"sku": "A", "price_cents": 100, "tx_types": ["fixed_price"]},
        {"sku": "P", "price_cents": 900, "tx_types": ["fixed_price", "presale"]},
    ],
    "s2": [{"sku": "C", "price_cents": 200, "tx_types": ["fixed_price", "cod"]}],
}


class Node:
    """Just enough of a node: orders by tx type, presale windows (odd orders open, even ones not yet),
    delivery needing ship first and the ops token, an auction whose minimum rises with each bid."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.presales: dict[str, tuple[datetime, datetime]] = {}
        self.balances_paid: list[str] = []
        self.balance_refused: list[str] = []
        self.cod_subs: dict[str, str] = {}  # sub-order -> state
        self.delivered: list[tuple[str, bool]] = []
        self.out_of_order: list[str] = []
        self.next_min = 15000
        self.bids: list[int] = []
        self.low_bids = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        body = json.loads(request.content) if request.content else {}
        merchant = request.headers.get("authorization") == f"Bearer {TOKEN}"
        if path == "/shops":
            return httpx.Response(200, json=SHOPS)
        if path.startswith("/shops/"):
            return httpx.Response(200, json=PRODUCTS[path.split("/")[2]])
        if path == "/orders":
            n = next(self.ids)
            oid = f"o{n}"
            if body["tx_type"] == "presale":
                assert body["stage"] == "deposit"
                starts = NOW - timedelta(minutes=1) if n % 2 else NOW + timedelta(hours=1)
                self.presales[oid] = (starts, starts + timedelta(days=1))
                presale = {"stage": "balance", "deposit_cents": 500, "balance_cents": 400,
                           "balance_starts_at": starts.isoformat(),
                           "balance_ends_at": (starts + timedelta(days=1)).isoformat()}
                return httpx.Response(201, json={"id": oid, "status": "deposit_paid", "presale": presale,
                                                 "sub_orders": [{"id": f"{oid}-s1"}]})
            if body["tx_type"] == "cod":
                self.cod_subs[f"{oid}-s1"] = "confirmed"
                return httpx.Response(201, json={"id": oid, "status": "confirmed", "cash_on_delivery": True,
                                                 "sub_orders": [{"id": f"{oid}-s1"}]})
            return httpx.Response(201, json={"id": oid, "status": "pending_payment",
                                             "sub_orders": [{"id": f"{oid}-s1"}]})
        if path.endswith("/pay"):
            oid = path.split("/")[2]
            if oid in self.presales:
                starts, ends = self.presales[oid]
                if body.get("stage") != "balance" or not starts <= NOW < ends:
                    self.balance_refused.append(oid)
                    return httpx.Response(409, json={"code": "presale.balance_window"})
                self.balances_paid.append(oid)
            return httpx.Response(200, json={"id": oid, "status": "paid"})
        if path.startswith("/sub-orders/"):
            _, _, sub, step = path.split("/")
            if not merchant:
                return httpx.Response(401, json={"status": 401})
            if step == "ship":
                assert body["carrier"] and body["tracking_no"]
                self.cod_subs[sub] = "shipped"
                return httpx.Response(200, json={"id": sub})
            if step == "deliver":
                if self.cod_subs.get(sub) != "shipped":
                    self.out_of_order.append(sub)
                    return httpx.Response(409, json={"code": "order.not_shipped"})
                self.cod_subs[sub] = "delivered"
                self.delivered.append((sub, body.get("collected")))
                return httpx.Response(200, json={"id": sub})
        if path == "/auctions/auc-1" and method == "GET":
            auction = {"id": "auc-1", "phase": "running", "next_min_cents": self.next_min}
            return httpx.Response(200, json=auction)
        if path == "/auctions/auc-1/bids":
            if body["amount_cents"] < self.next_min:
                self.low_bids += 1
                return httpx.Response(409, json={"code": "auction.bid_too_low"})
            self.bids.append(body["amount_cents"])
            self.next_min = body["amount_cents"] + 500
            return httpx.Response(201, json={"id": f"b{len(self.bids)}"})
        if path.endswith("/cancel") or path.endswith("/refunds"):
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(404)


def run(node: Node, *, token: str | None = TOKEN, mix: str = "fixed_price=20,presale=30,cod=30,auction=20"):
    config = TrafficConfig(url="http://node", rate=200.0, duration=1.5, seed=9, concurrency=1,
                           ops_token=token, tx_mix=parse_tx_mix(mix), auction_ids=("auc-1",))
    runner = TrafficRunner(config, out=io.StringIO(), transport=httpx.MockTransport(node),
                           clock=FakeClock(NOW))
    return runner.run_sync()


def test_presale_balances_are_paid_only_inside_the_window_the_answer_gave():
    node = Node()
    summary = run(node)
    assert summary["presale_deposits"] == len(node.presales) > 4
    assert node.balance_refused == []  # never asked outside the window
    assert node.balances_paid and summary["presale_balances_paid"] == len(node.balances_paid)
    assert all(node.presales[o][0] <= NOW for o in node.balances_paid)
    assert all(int(o[1:]) % 2 == 1 for o in node.balances_paid)


def test_cod_orders_are_shipped_then_delivered_with_the_cash_collected():
    node = Node()
    summary = run(node)
    assert node.delivered and summary["cod_delivered"] == len(node.delivered)
    assert all(collected is True for _, collected in node.delivered)
    assert node.out_of_order == []


def test_cod_delivery_without_the_ops_token_is_refused_and_not_counted():
    node = Node()
    summary = run(node, token=None)
    assert summary["cod_delivered"] == 0 and node.delivered == []
    assert summary["http_4xx"] > 0


def test_bids_follow_the_running_auctions_next_minimum():
    node = Node()
    summary = run(node)
    assert len(node.bids) > 3 and summary["bids"] == len(node.bids)
    assert node.bids == sorted(node.bids) and node.low_bids == 0 and node.bids[0] == 15000
    assert summary["sent"] == sum(
        summary[k] for k in ("http_2xx", "http_4xx", "blocked_429", "blocked_503", "http_5xx", "timeouts",
                             "conn_errors")
    )


def test_without_those_types_in_the_mix_nothing_of_them_is_sent():
    node = Node()
    summary = run(node, mix="fixed_price=1")
    assert summary["presale_deposits"] == summary["cod_delivered"] == summary["bids"] == 0
    assert node.presales == {} and node.cod_subs == {} and node.bids == []


def test_settle_takes_half_the_pay_share_only_while_something_is_due():
    rng = random.Random(3)
    state = ShopperState()
    later = NOW + timedelta(hours=1)
    state.presales.append(PresaleDue("p1", [], later, later + timedelta(days=1)))
    assert {choose_action(rng, state, NOW) for _ in range(300)} <= {"place", "pay", "cancel", "refund"}
    assert "settle" in {choose_action(rng, state, later) for _ in range(300)}
    state.presales.clear()
    state.cod.append(CodOrder("c1", [], ["c1-s1"]))
    assert "settle" in {choose_action(rng, state, NOW) for _ in range(300)}
