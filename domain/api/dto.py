"""HTTP DTOs (pydantic), separate from the domain model and views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(min_length=1, max_length=200)]
Qty = Annotated[int, Field(strict=True, ge=1, le=999, description="units, 1..999")]


class AddressIn(BaseModel):
    country: Text
    province: Text
    city: Text
    district: Text
    street: Text
    recipient: Text
    phone: Annotated[str, Field(min_length=5, max_length=40)]
    postal_code: Annotated[str, Field(min_length=1, max_length=20)] | None = None


class LineIn(BaseModel):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Qty


class PlaceOrderIn(BaseModel):
    buyer_id: Annotated[str, Field(min_length=1, max_length=64)]
    tx_type: Annotated[str, Field(min_length=1, max_length=32,
                                  examples=["fixed_price", "flash_sale", "presale", "cod"])]
    channel: Literal["app", "web", "mini_program"]
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=50)]
    address: AddressIn
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128)]
    stage: Literal["deposit", "balance"] | None = Field(
        default=None, description="presale: the stage this request pays; an order is placed paying its "
                                  "deposit (the balance: POST /orders/{id}/pay with stage balance)")


class PayIn(BaseModel):
    stage: Literal["deposit", "balance"] | None = Field(
        default=None, description="presale: the stage paid (must be the one due)")


class RefundIn(BaseModel):
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=50)]
    kind: Literal["refund_only", "return"] = Field(
        default="refund_only", description="refund_only: money only; return: the goods come back first")
    sub_order_id: str | None = Field(default=None, description="optional; lines identify their sub-orders")


class ShipIn(BaseModel):
    carrier: Annotated[str, Field(min_length=1, max_length=64)]
    tracking_no: Annotated[str, Field(min_length=1, max_length=64)]


class DeliverIn(BaseModel):
    collected: bool | None = Field(
        default=None, description="cash on delivery: whether the cash was collected")


Cents = Annotated[int, Field(strict=True, ge=0, le=10**12, description="integer cents")]


class AuctionIn(BaseModel):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    start_price_cents: Annotated[int, Field(strict=True, ge=1, le=10**12)]
    increment_cents: Annotated[int, Field(strict=True, ge=1, le=10**12)]
    reserve_cents: Cents
    starts_at: datetime = Field(description="with a time zone, e.g. 2026-11-25T12:00:00Z")
    ends_at: datetime


class BidIn(BaseModel):
    buyer_id: Annotated[str, Field(min_length=1, max_length=64)]
    amount_cents: Annotated[int, Field(strict=True, ge=1, le=10**12)]
    address: AddressIn | None = Field(default=None, description="where to ship if this bid wins (optional)")


class RejectIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class CancelIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=64)] = "buyer"


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class LineOut(_Out):
    sku: str
    name: str
    qty: int
    list_price_cents: int
    unit_price_cents: int
    discount_cents: int
    amount_cents: int
    refunded_qty: int
    refund_requested_qty: int


class SubOrderOut(_Out):
    id: str
    shop_id: str
    status: str
    gross_cents: int
    discount_cents: int
    amount_cents: int
    lines: list[LineOut]
    warehouse_id: str | None = None
    delivery_status: str = "not_shipped"
    carrier: str | None = None
    tracking_no: str | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    received_at: datetime | None = None


class PaymentOut(_Out):
    id: str
    status: str
    amount_cents: int
    reference: str | None
    reason: str | None
    started_at: datetime
    finished_at: datetime | None
    stage: str | None = None


class PresaleOut(_Out):
    stage: str = Field(description="the stage due next: deposit | balance")
    deposit_cents: int
    balance_cents: int
    balance_starts_at: datetime
    balance_ends_at: datetime
    deposit_refundable: bool
    deposit_outcome: str | None = None


class RefundLineOut(_Out):
    sub_order_id: str
    shop_id: str
    sku: str
    qty: int
    amount_cents: int


class RefundOut(_Out):
    id: str
    order_id: str
    status: str
    amount_cents: int
    lines: list[RefundLineOut]
    created_at: datetime
    completed_at: datetime | None
    last_error: str | None
    kind: str = "refund_only"
    reason: str | None = None
    decided_at: datetime | None = None
    goods_received_at: datetime | None = None


class OrderOut(_Out):
    id: str
    buyer_id: str
    status: str
    tx_type: str
    channel: str
    idempotency_key: str
    created_at: datetime
    expires_at: datetime | None
    gross_cents: int
    discount_cents: int
    amount_cents: int
    address: dict[str, str]
    address_normalized: dict[str, str | None] | None = None
    sub_orders: list[SubOrderOut]
    payments: list[PaymentOut]
    refunds: list[RefundOut]
    presale: PresaleOut | None = None
    cash_on_delivery: bool = False
    auction_id: str | None = None


class ShopOut(_Out):
    id: str
    name: str
    products: int


class FlashOut(_Out):
    promotion_id: str
    price_cents: int
    available: int
    per_buyer_limit: int
    ends_at: datetime | None


class ProductOut(_Out):
    sku: str
    shop_id: str
    name: str
    price_cents: int
    available: int
    limit_per_buyer: int | None
    limit_period: str | None
    promotions: list[str]
    flash: FlashOut | None
    tx_types: list[str] = Field(default_factory=lambda: ["fixed_price"])
    warehouses: dict[str, int] | None = None


class BidOut(_Out):
    id: str
    auction_id: str
    buyer_id: str
    amount_cents: int
    placed_at: datetime


class AuctionOut(_Out):
    id: str
    shop_id: str
    sku: str
    status: str = Field(description="open | awarded | sold | unsold")
    phase: str = Field(description="scheduled | running | ended while open; else the status")
    start_price_cents: int
    increment_cents: int
    reserve_cents: int
    reserve_met: bool
    starts_at: datetime
    ends_at: datetime
    current_cents: int
    leader_buyer_id: str | None
    next_min_cents: int
    bid_count: int
    order_id: str | None
    offered: list[str]
    bids: list[BidOut]
