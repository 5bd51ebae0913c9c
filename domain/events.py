"""Domain events: the trading core's metric hooks.

Every state change records one of these. They are plain frozen values; the
application services hand them to an ``EventPublisher`` (``domain.ports``) only
after the unit of work has committed, so a subscriber never sees an event of a
change that was rolled back.

Money is in integer cents throughout the core. Events about an order are
recorded once per *sub-order* (one per shop), so per-shop business metrics are a
plain sum over events; ``order_id`` ties the sub-orders of one order together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    occurred_at: datetime

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(DomainEvent):
    order_id: str
    sub_order_id: str
    shop_id: str
    buyer_id: str
    tx_type: str
    channel: str
    gross_cents: int  # list price × qty, before any promotion
    discount_cents: int
    amount_cents: int  # what the buyer pays for this sub-order
    items: int  # units


@dataclass(frozen=True, kw_only=True)
class OrderPaid(DomainEvent):
    order_id: str
    sub_order_id: str
    shop_id: str
    buyer_id: str
    tx_type: str
    channel: str
    amount_cents: int
    payment_id: str
    stage: str | None = None  # presale: "deposit" | "balance" (amount_cents is that stage's share)


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(DomainEvent):
    order_id: str
    sub_order_id: str
    shop_id: str
    tx_type: str
    channel: str
    amount_cents: int
    reason: str  # "buyer" | "timeout" | "payment_failed" | ...


@dataclass(frozen=True, kw_only=True)
class PaymentSucceeded(DomainEvent):
    order_id: str
    payment_id: str
    buyer_id: str
    tx_type: str
    channel: str
    amount_cents: int
    latency_ms: float
    instance: str | None = None  # the node that charged (gateway latency is a node property)
    stage: str | None = None


@dataclass(frozen=True, kw_only=True)
class PaymentFailed(DomainEvent):
    order_id: str
    payment_id: str
    buyer_id: str
    tx_type: str
    channel: str
    amount_cents: int
    latency_ms: float
    reason: str
    instance: str | None = None  # the node that charged
    stage: str | None = None


@dataclass(frozen=True, kw_only=True)
class PaymentQueued(DomainEvent):
    """The charge was degraded (``payment.charge`` blocked): the payment waits to be retried."""

    order_id: str
    payment_id: str
    buyer_id: str
    tx_type: str
    channel: str
    amount_cents: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class RefundRequested(DomainEvent):
    refund_id: str
    order_id: str
    sub_order_id: str
    shop_id: str
    tx_type: str
    channel: str
    amount_cents: int
    items: int


@dataclass(frozen=True, kw_only=True)
class RefundCompleted(DomainEvent):
    refund_id: str
    order_id: str
    sub_order_id: str
    shop_id: str
    tx_type: str
    channel: str
    amount_cents: int
    items: int


@dataclass(frozen=True, kw_only=True)
class StockReserved(DomainEvent):
    order_id: str
    shop_id: str
    sku: str
    qty: int
    tx_type: str


@dataclass(frozen=True, kw_only=True)
class StockReleased(DomainEvent):
    order_id: str
    shop_id: str
    sku: str
    qty: int
    tx_type: str
    reason: str  # "cancelled" | "timeout" | "refund" | ...


@dataclass(frozen=True, kw_only=True)
class _SubOrderEvent(DomainEvent):
    order_id: str
    sub_order_id: str
    shop_id: str
    tx_type: str
    channel: str
    warehouse_id: str | None


@dataclass(frozen=True, kw_only=True)
class SubOrderShipped(_SubOrderEvent):
    carrier: str
    tracking_no: str


@dataclass(frozen=True, kw_only=True)
class SubOrderDelivered(_SubOrderEvent):
    collected: bool | None  # cash on delivery: whether the cash was collected


@dataclass(frozen=True, kw_only=True)
class DeliveryFailed(_SubOrderEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class SubOrderReceived(_SubOrderEvent):
    auto: bool  # True when received automatically N days after delivery


@dataclass(frozen=True, kw_only=True)
class RefundApproved(DomainEvent):
    refund_id: str
    order_id: str
    shop_id: str
    tx_type: str
    kind: str  # "refund_only" | "return"
    amount_cents: int


@dataclass(frozen=True, kw_only=True)
class RefundRejected(DomainEvent):
    refund_id: str
    order_id: str
    shop_id: str
    tx_type: str
    kind: str
    amount_cents: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class ReturnGoodsReceived(DomainEvent):
    refund_id: str
    order_id: str
    shop_id: str
    tx_type: str
    items: int


@dataclass(frozen=True, kw_only=True)
class OrderConfirmed(DomainEvent):
    """Cash on delivery: the sub-order is confirmed at once (stock reserved, paid on delivery)."""

    order_id: str
    sub_order_id: str
    shop_id: str
    buyer_id: str
    tx_type: str
    channel: str
    amount_cents: int


@dataclass(frozen=True, kw_only=True)
class _DepositEvent(DomainEvent):
    order_id: str
    sub_order_id: str
    shop_id: str
    tx_type: str
    channel: str
    stage: str  # "deposit"
    amount_cents: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class DepositForfeited(_DepositEvent):
    """Presale: the deposit is kept by the shop (balance unpaid after its window, or cancelled)."""


@dataclass(frozen=True, kw_only=True)
class DepositRefunded(_DepositEvent):
    """Presale: the deposit goes back to the buyer (the shop's rule says refundable)."""


@dataclass(frozen=True, kw_only=True)
class AuctionCreated(DomainEvent):
    auction_id: str
    shop_id: str
    sku: str
    tx_type: str
    start_price_cents: int
    reserve_cents: int


@dataclass(frozen=True, kw_only=True)
class BidPlaced(DomainEvent):
    auction_id: str
    shop_id: str
    sku: str
    tx_type: str
    buyer_id: str
    amount_cents: int


@dataclass(frozen=True, kw_only=True)
class AuctionAwarded(DomainEvent):
    """The auction's highest bid at or above reserve (or, the winner not paying, the next one) became
    an order at that price."""

    auction_id: str
    shop_id: str
    sku: str
    tx_type: str
    buyer_id: str
    amount_cents: int
    order_id: str
    round: int


@dataclass(frozen=True, kw_only=True)
class AuctionClosed(DomainEvent):
    auction_id: str
    shop_id: str
    sku: str
    tx_type: str
    outcome: str  # "sold" | "unsold"
    amount_cents: int
