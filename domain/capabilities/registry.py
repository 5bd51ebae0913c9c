"""Transaction types: named bundles of capabilities, extensible one capability at a time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from domain.capabilities.base import (
    Discount,
    InventoryReservation,
    OrderSplit,
    PaymentPolicy,
    PaymentTimeout,
    Pricing,
    PurchaseLimitPolicy,
    RefundPolicy,
)
from domain.capabilities.discount import NoDiscount, PromotionDiscount
from domain.capabilities.inventory import PooledInventory, WarehouseInventory
from domain.capabilities.payment import AuctionPayment, CashOnDelivery, GatewayPayment, PresalePayment
from domain.capabilities.pricing import AuctionPricing, FlashPricing, ListPricing, PresalePricing
from domain.capabilities.purchase_limits import (
    CodPurchaseLimit,
    FlashPurchaseLimit,
    NoPurchaseLimit,
    PresalePurchaseLimit,
    ProductPurchaseLimit,
)
from domain.capabilities.refund import PresaleRefund, ProportionalRefund
from domain.capabilities.split import ByShopSplit
from domain.capabilities.timeout import AfterTimeout, CappedTimeout, FixedTimeout, NoTimeout
from domain.errors import InvalidRequest
from domain.model import FLASH_POOL

CAPABILITIES = (
    "pricing", "discount", "inventory", "purchase_limit", "split", "payment", "timeout", "refund",
)


@dataclass(frozen=True)
class TransactionType:
    name: str
    pricing: Pricing
    discount: Discount
    inventory: InventoryReservation
    purchase_limit: PurchaseLimitPolicy
    split: OrderSplit
    payment: PaymentPolicy
    timeout: PaymentTimeout
    refund: RefundPolicy


def default_capabilities(name: str = "fixed_price") -> TransactionType:
    return TransactionType(
        name=name, pricing=ListPricing(), discount=PromotionDiscount(), inventory=WarehouseInventory(),
        purchase_limit=ProductPurchaseLimit(), split=ByShopSplit(), payment=GatewayPayment(),
        timeout=FixedTimeout(), refund=ProportionalRefund(),
    )


class TxTypeRegistry:
    """``register("presale", base="fixed_price", timeout=..., payment=...)`` — only what differs."""

    def __init__(self) -> None:
        self._types: dict[str, TransactionType] = {}

    def register(self, name: str, *, base: str | None = None, **overrides: Any) -> TransactionType:
        unknown = set(overrides) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; allowed: {', '.join(CAPABILITIES)}")
        start = self._types[base] if base else default_capabilities(name)
        tx = replace(start, name=name, **overrides)
        self._types[name] = tx
        return tx

    def extend(self, name: str, **overrides: Any) -> TransactionType:
        """Replace some capabilities of an already registered type, leaving the rest alone."""
        return self.register(name, base=name, **overrides)

    def get(self, name: str) -> TransactionType:
        try:
            return self._types[name]
        except KeyError:
            raise InvalidRequest(
                f"tx_type must be one of {', '.join(self.names())}, got {name!r}",
                field="tx_type", rule="tx_type.registered", extra={"allowed": self.names()},
            ) from None

    def names(self) -> list[str]:
        return sorted(self._types)


def default_registry(flash_timeout: timedelta = timedelta(minutes=5),
                     auction_payment_window: timedelta = timedelta(hours=24)) -> TxTypeRegistry:
    reg = TxTypeRegistry()
    reg.register("fixed_price")
    reg.register(
        "flash_sale", base="fixed_price", pricing=FlashPricing(), discount=NoDiscount(),
        inventory=PooledInventory(FLASH_POOL), purchase_limit=FlashPurchaseLimit(),
        timeout=CappedTimeout(flash_timeout),
    )
    register_product_types(reg, auction_payment_window)
    return reg


def register_product_types(reg: TxTypeRegistry,
                           auction_payment_window: timedelta = timedelta(hours=24)) -> TxTypeRegistry:
    """cod, presale and auction: each one registration naming only the capabilities it overrides."""
    reg.register("cod", base="fixed_price", payment=CashOnDelivery(), purchase_limit=CodPurchaseLimit(),
                 timeout=NoTimeout())
    reg.register("presale", base="fixed_price", pricing=PresalePricing(), discount=NoDiscount(),
                 purchase_limit=PresalePurchaseLimit(), payment=PresalePayment(), refund=PresaleRefund())
    reg.register("auction", base="fixed_price", pricing=AuctionPricing(), discount=NoDiscount(),
                 purchase_limit=NoPurchaseLimit(), payment=AuctionPayment(),
                 timeout=AfterTimeout(auction_payment_window))
    return reg
