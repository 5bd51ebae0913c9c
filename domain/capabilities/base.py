"""Capability interfaces of the trading core and the values they exchange.

A transaction type (``registry.TransactionType``) is a named bundle of one
implementation per capability. A new type overrides only the capabilities it
changes (pre-sale: timeout and payment; cash on delivery: payment; auction:
pricing), so adding it touches none of the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from domain.model import Order, OrderLine, Product, Promotion, Shop, StockLevel, SubOrder
from domain.ports import ChargeResult, PaymentGateway
from domain.storage import UnitOfWork


@dataclass(frozen=True)
class LineRequest:
    sku: str
    qty: int
    index: int = 0  # position in the request, for error fields like lines[2].qty


@dataclass
class OrderContext:
    """What pricing/discount/limit decisions may look at; built once per place_order."""

    tx_type: str
    buyer_id: str
    channel: str
    now: datetime
    products: dict[str, Product]
    # active ones of the shops involved: shop-wide ones and those of the order's SKUs
    promotions: list[Promotion] = field(default_factory=list)
    quantities: dict[str, int] = field(default_factory=dict)  # sku -> units requested
    stock: dict[tuple[str, str], StockLevel] = field(default_factory=dict)  # (sku, pool) -> level
    warehouse_distance: dict[str, float] = field(default_factory=dict)  # warehouse id -> km to the buyer
    shops: dict[str, Shop] = field(default_factory=dict)  # the shops of the lines (their settings)
    extra: Mapping[str, Any] = field(default_factory=dict)  # PlaceOrder.extra (presale stage, auction award)

    def sku_promotions(self, sku: str, kinds: Sequence[str]) -> list[Promotion]:
        return [p for p in self.promotions if p.sku == sku and p.kind in kinds]

    def flash(self, sku: str) -> Promotion | None:
        found = self.sku_promotions(sku, ("flash_price",))
        return found[0] if found else None

    def presale(self, sku: str) -> Promotion | None:
        found = self.sku_promotions(sku, ("presale",))
        return found[0] if found else None

    def shop_promotions(self, shop_id: str, kind: str) -> list[Promotion]:
        return [p for p in self.promotions if p.shop_id == shop_id and p.kind == kind]


@dataclass(frozen=True)
class LimitRule:
    """A per-buyer cap on one SKU: counter ``key`` may reach ``max_qty``."""

    key: str
    max_qty: int
    rule: str  # "purchase_limit.day", "flash_sale.per_buyer", ...
    description: str


@dataclass
class PricedLine:
    request: LineRequest
    product: Product
    unit_price_cents: int
    pool: str
    limit: LimitRule | None = None
    promo_discount_cents: int = 0

    @property
    def sku(self) -> str:
        return self.product.sku

    @property
    def shop_id(self) -> str:
        return self.product.shop_id

    @property
    def qty(self) -> int:
        return self.request.qty

    @property
    def subtotal_cents(self) -> int:
        return self.unit_price_cents * self.qty


class Pricing(Protocol):
    def unit_price(self, ctx: OrderContext, req: LineRequest, product: Product) -> int: ...


class Discount(Protocol):
    def discounts(self, ctx: OrderContext, shop_id: str, lines: Sequence[PricedLine]) -> list[int]:
        """Promotion discount in cents for each line of one shop's sub-order (same order as ``lines``)."""
        ...


class InventoryReservation(Protocol):
    def pool(self, ctx: OrderContext, product: Product) -> str: ...

    def reserve(self, uow: UnitOfWork, line: PricedLine) -> None:
        """Reserve ``line.qty`` units atomically or raise ``OutOfStock``."""
        ...

    def release(self, uow: UnitOfWork, line: OrderLine) -> None: ...

    def commit_sale(self, uow: UnitOfWork, line: OrderLine) -> None: ...


class PurchaseLimitPolicy(Protocol):
    def rule(self, ctx: OrderContext, product: Product) -> LimitRule | None: ...

    def consume(self, uow: UnitOfWork, buyer_id: str, line: PricedLine) -> None:
        """Count ``line.qty`` against ``line.limit`` or raise ``PurchaseLimitExceeded``."""
        ...

    def release(self, uow: UnitOfWork, buyer_id: str, line: OrderLine) -> None: ...


class OrderSplit(Protocol):
    def split(self, lines: Sequence[PricedLine]) -> dict[str, list[PricedLine]]:
        """Group lines into sub-orders; key is the shop id."""
        ...


class PaymentPolicy(Protocol):
    def charge(self, gateway: PaymentGateway, order: Order, payment_id: str) -> ChargeResult: ...

    def terms(self, ctx: OrderContext, sub_orders: Sequence[SubOrder]) -> dict[str, Any]:
        """The order's tx-type terms (``Order.terms``), decided while pricing; may refuse the order."""
        ...

    def placed(self, order: Order, now: datetime) -> None:
        """Right after ``Order.place`` (cash on delivery confirms the order here)."""
        ...


class PaymentTimeout(Protocol):
    def deadline(self, placed_at: datetime, default: timedelta) -> datetime | None:
        """When an unpaid order is cancelled; None = never."""
        ...


class RefundPolicy(Protocol):
    def amount(self, line: OrderLine, qty: int) -> int: ...

    def amount_for(self, order: Order, line: OrderLine, qty: int) -> int:
        """The amount for ``qty`` units of ``line`` of ``order`` (default: ``amount``)."""
        ...

    def restock_pool(self, line: OrderLine) -> str | None:
        """Where refunded units go back to; None = not restocked."""
        ...

    def refund(self, gateway: PaymentGateway, refund_id: str, payment_reference: str,
               amount_cents: int) -> ChargeResult: ...
