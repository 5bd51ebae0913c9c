"""Auctions: a SKU sold to the highest bid at or above its reserve price.

A bid must reach ``next_min_cents`` (the start price, then the leading bid + increment), between
``starts_at`` and ``ends_at``. Storage accepts a bid with one conditional UPDATE on
``next_min_cents`` (``AuctionStore.try_bid``), so concurrent bids are serialized without lost updates.

Status::

    open ──end, a bid ≥ reserve──▶ awarded (an order at that price, with a payment deadline)
      │                              │  └─order paid──▶ sold
      │                              └─order not paid: the next bidder ≥ reserve is offered it (awarded
      │                                again) or, none left, unsold
      └──end, no bid ≥ reserve──▶ unsold
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.errors import Conflict, InvalidRequest

OPEN = "open"
AWARDED = "awarded"
SOLD = "sold"
UNSOLD = "unsold"
MAX_PRICE_CENTS = 10**12


@dataclass
class Bid:
    id: str
    auction_id: str
    buyer_id: str
    amount_cents: int
    placed_at: datetime
    address: dict | None = None  # where the buyer wants it shipped if they win (optional)


@dataclass
class Auction:
    id: str
    shop_id: str
    sku: str
    start_price_cents: int
    increment_cents: int
    reserve_cents: int
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    status: str = OPEN
    current_cents: int = 0  # the leading bid (0: none yet)
    leader_buyer_id: str | None = None
    next_min_cents: int = 0  # the smallest acceptable next bid
    bids: int = 0
    version: int = 0
    order_id: str | None = None  # the order of the current award
    offered: list[str] = field(default_factory=list)  # buyers offered it so far, in order

    def __post_init__(self) -> None:
        for name in ("start_price_cents", "increment_cents", "reserve_cents"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRICE_CENTS:
                raise InvalidRequest(f"{name} must be an integer from 0 to {MAX_PRICE_CENTS}", field=name)
        if self.increment_cents < 1:
            raise InvalidRequest("increment_cents must be at least 1", field="increment_cents")
        if self.start_price_cents < 1:
            raise InvalidRequest("start_price_cents must be at least 1", field="start_price_cents")
        if self.ends_at <= self.starts_at:
            raise InvalidRequest("ends_at must be after starts_at", field="ends_at")
        if self.next_min_cents == 0:
            self.next_min_cents = self.start_price_cents

    def phase(self, now: datetime) -> str:
        """``scheduled`` | ``running`` | ``ended`` (by the clock) while open; else the status."""
        if self.status != OPEN:
            return self.status
        if now < self.starts_at:
            return "scheduled"
        return "running" if now < self.ends_at else "ended"

    def check_bid(self, amount_cents: int, now: datetime) -> None:
        """Refuse a bid that cannot win now (the store re-checks the price atomically)."""
        if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) \
                or not 1 <= amount_cents <= MAX_PRICE_CENTS:
            raise InvalidRequest(f"amount_cents must be an integer from 1 to {MAX_PRICE_CENTS}",
                                 field="amount_cents", rule="auction.amount")
        if now < self.starts_at:
            raise Conflict(f"auction {self.id} starts at {self.starts_at.isoformat()}; bids before the start "
                           "are refused", field="amount_cents", rule="auction.not_started",
                           extra={"starts_at": self.starts_at.isoformat()})
        if now >= self.ends_at or self.status != OPEN:
            raise Conflict(f"auction {self.id} ended at {self.ends_at.isoformat()}; bids after the end are "
                           "refused", field="amount_cents", rule="auction.ended",
                           extra={"ends_at": self.ends_at.isoformat()})
        if amount_cents < self.next_min_cents:
            self.refuse_low(amount_cents)

    def refuse_low(self, amount_cents: int) -> None:
        what = (f"the current price {self.current_cents} + increment {self.increment_cents}"
                if self.bids else f"the start price {self.start_price_cents}")
        raise Conflict(f"a bid of {amount_cents} cents is below {what}: bid at least {self.next_min_cents}",
                       field="amount_cents", rule="auction.bid_too_low",
                       extra={"minimum_cents": self.next_min_cents, "current_cents": self.current_cents})
