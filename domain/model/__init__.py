"""The trading core's model: catalog values and the Order aggregate. Pure: no I/O."""

from domain.model.address import Address
from domain.model.catalog import (
    DEFAULT_POOL,
    FLASH_POOL,
    LIMIT_PERIODS,
    PROMOTION_KINDS,
    Catalog,
    Product,
    Promotion,
    PurchaseLimit,
    Shop,
    StockLevel,
)
from domain.model.order import (
    CANCELLED,
    CHANNELS,
    ORDER_STATUSES,
    PAID,
    PARTIALLY_REFUNDED,
    PENDING,
    QUEUED,
    REFUNDED,
    Order,
    OrderLine,
    Payment,
    Refund,
    RefundLine,
    SubOrder,
)

__all__ = [
    "CANCELLED", "CHANNELS", "DEFAULT_POOL", "FLASH_POOL", "LIMIT_PERIODS", "ORDER_STATUSES", "PAID",
    "PARTIALLY_REFUNDED", "PENDING", "PROMOTION_KINDS", "QUEUED", "REFUNDED", "Address", "Catalog", "Order",
    "OrderLine", "Payment", "Product", "Promotion", "PurchaseLimit", "Refund", "RefundLine", "Shop",
    "StockLevel", "SubOrder",
]
