"""Capabilities of the trading core: small interfaces, default implementations, tx-type registry."""

from domain.capabilities.base import LimitRule, LineRequest, OrderContext, PricedLine
from domain.capabilities.registry import (
    CAPABILITIES,
    TransactionType,
    TxTypeRegistry,
    default_capabilities,
    default_registry,
)

__all__ = [
    "CAPABILITIES", "LimitRule", "LineRequest", "OrderContext", "PricedLine", "TransactionType",
    "TxTypeRegistry", "default_capabilities", "default_registry",
]
