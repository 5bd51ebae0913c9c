"""Auctions on a fake clock: bids and their refusals, the award at the end, the next bidder when the
winner does not pay; and the HTTP contract with problem+json."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import errors
from tests.unit.domain.helpers import ADDRESS
from tests.unit.domain.txtype_helpers import START, TxEnv


@pytest.fixture
def tx() -> TxEnv:
    return TxEnv()


def make(tx, starts_in=timedelta(0), lasts=timedelta(hours=1), reserve=2000):
    return tx.service.create_auction(sku="N1", start_price_cents=1000, increment_cents=100,
                                     reserve_cents=reserve, starts_at=START + starts_in,
                                     ends_at=START + starts_in + lasts)


def test_bids_are_checked_against_start_price_increment_and_time(tx):
    a = make(tx, starts_in=timedelta(minutes=10))
    with pytest.raises(errors.Conflict) as exc:
        tx.service.place_bid(a.id, "b1", 1000)
    assert exc.value.rule == "auction.not_started"
    tx.clock.advance(minutes=10)
    with pytest.raises(errors.Conflict) as exc:
        tx.service.place_bid(a.id, "b1", 999)
    assert exc.value.rule == "auction.bid_too_low" and exc.value.extra["minimum_cents"] == 1000
    tx.service.place_bid(a.id, "b1", 1000)
    with pytest.raises(errors.Conflict) as exc:
        tx.service.place_bid(a.id, "b2", 1099)
    assert exc.value.rule == "auction.bid_too_low" and exc.value.extra["minimum_cents"] == 1100
    tx.service.place_bid(a.id, "b2", 1100)
    with pytest.raises(errors.InvalidRequest):
        tx.service.place_bid(a.id, "b2", 0)
    tx.clock.advance(hours=1)
    with pytest.raises(errors.Conflict) as exc:
        tx.service.place_bid(a.id, "b3", 5000)
    assert exc.value.rule == "auction.ended"
    view = tx.service.get_auction(a.id)
    assert (view.current_cents, view.leader_buyer_id, view.bid_count, view.phase) == (1100, "b2", 2, "ended")
    with pytest.raises(errors.NotFound):
        tx.service.get_auction("au_nope")


def test_award_pay_and_sold(tx):
    a = make(tx)
    tx.service.place_bid(a.id, "b1", 1500)
    tx.service.place_bid(a.id, "b2", 2500, address=ADDRESS)
    assert tx.service.close_auctions() == 0  # still running
    tx.clock.advance(hours=1)
    assert tx.service.close_auctions() == 1
    view = tx.service.get_auction(a.id)
    assert view.status == "awarded" and view.offered == ["b2"]
    order = tx.service.get_order(view.order_id)
    assert order.tx_type == "auction" and order.amount_cents == 2500 and order.buyer_id == "b2"
    assert order.expires_at == tx.clock.now() + timedelta(hours=24) and order.auction_id == a.id
    assert order.address["city"] == "Hangzhou" and tx.stock("N1") == (10, 1)
    assert tx.service.close_auctions() == 0  # the winner may still pay
    tx.service.pay_order(order.id)
    assert tx.service.close_auctions() == 1
    assert tx.service.get_auction(a.id).status == "sold" and tx.stock("N1") == (9, 0)
    assert [e.outcome for e in tx.events("AuctionClosed")] == ["sold"]


def test_unpaid_winner_passes_to_the_next_bidder_then_unsold(tx):
    a = make(tx, reserve=1200)
    tx.service.place_bid(a.id, "b1", 1000)  # below reserve: never offered
    tx.service.place_bid(a.id, "b2", 1300)
    tx.service.place_bid(a.id, "b3", 1400)
    tx.service.place_bid(a.id, "b2", 1500)
    tx.clock.advance(hours=1)
    tx.service.close_auctions()
    first = tx.service.get_auction(a.id)
    assert first.offered == ["b2"] and tx.service.get_order(first.order_id).amount_cents == 1500
    tx.clock.advance(hours=25)
    assert tx.service.cancel_expired() == 1  # the winner did not pay
    tx.service.close_auctions()
    second = tx.service.get_auction(a.id)
    assert second.offered == ["b2", "b3"] and second.status == "awarded"
    assert tx.service.get_order(second.order_id).amount_cents == 1400
    tx.clock.advance(hours=25)
    tx.service.cancel_expired()
    tx.service.close_auctions()
    assert tx.service.get_auction(a.id).status == "unsold" and tx.stock("N1") == (10, 0)
    assert [e.round for e in tx.events("AuctionAwarded")] == [1, 2]


def test_no_bid_at_reserve_is_unsold_and_buyers_cannot_order_auction(tx):
    a = make(tx)
    tx.service.place_bid(a.id, "b1", 1500)
    tx.clock.advance(hours=2)
    assert tx.service.close_auctions() == 1
    assert tx.service.get_auction(a.id).status == "unsold" and tx.store.state.orders == {}
    with pytest.raises(errors.InvalidRequest) as exc:
        tx.place([("N1", 1)], "auction")
    assert exc.value.rule == "auction.by_award"


def test_refund_of_an_auction_order(tx):
    a = make(tx)
    tx.service.place_bid(a.id, "b1", 3000)
    tx.clock.advance(hours=1)
    tx.service.close_auctions()
    order_id = tx.service.get_auction(a.id).order_id
    tx.service.pay_order(order_id)
    refund = tx.service.request_refund(order_id, [("N1", 1)])
    assert refund.amount_cents == 3000 and tx.service.approve_refund(refund.id).status == "completed"


def test_create_auction_refusals(tx):
    with pytest.raises(errors.NotFound):
        tx.service.create_auction(sku="ZZ", start_price_cents=1, increment_cents=1, reserve_cents=0,
                                  starts_at=START, ends_at=START + timedelta(hours=1))
    with pytest.raises(errors.InvalidRequest) as exc:
        tx.service.create_auction(sku="N1", start_price_cents=1, increment_cents=0, reserve_cents=0,
                                  starts_at=START, ends_at=START + timedelta(hours=1))
    assert exc.value.field == "increment_cents"
    with pytest.raises(errors.InvalidRequest) as exc:
        tx.service.create_auction(sku="N1", start_price_cents=1, increment_cents=1, reserve_cents=0,
                                  starts_at=START, ends_at=START - timedelta(hours=1))
    assert exc.value.field == "ends_at"


def test_tx_types_listed_per_product(tx):
    make(tx)
    by_sku = {p.sku: p.tx_types for s in ("c1", "p1", "n1") for p in tx.service.list_products(s)}
    assert by_sku["C1"] == ("fixed_price", "cod")
    assert by_sku["P1"] == ("fixed_price", "presale")
    assert by_sku["N1"] == ("fixed_price", "auction")


def test_new_types_only_register_overrides_and_leave_existing_types_alone():
    """cod / presale / auction add registrations naming their overrides; fixed_price and flash_sale keep
    the very same capability objects and classes as a registry without them."""
    from domain.capabilities.registry import CAPABILITIES, TxTypeRegistry, default_registry

    full = default_registry()
    plain = TxTypeRegistry()
    plain.register("fixed_price")
    for name in ("fixed_price", "flash_sale"):
        before = default_registry().get(name)
        after = full.get(name)
        assert all(type(getattr(before, c)) is type(getattr(after, c)) for c in CAPABILITIES)
    base = full.get("fixed_price")
    assert all(type(getattr(plain.get("fixed_price"), c)) is type(getattr(base, c)) for c in CAPABILITIES)
    overrides = {n: sorted(c for c in CAPABILITIES
                           if type(getattr(full.get(n), c)) is not type(getattr(base, c)))
                 for n in ("cod", "presale", "auction")}
    assert overrides == {
        "cod": ["payment", "purchase_limit", "timeout"],
        "presale": ["discount", "payment", "pricing", "purchase_limit", "refund"],
        "auction": ["discount", "payment", "pricing", "purchase_limit", "timeout"],
    }
