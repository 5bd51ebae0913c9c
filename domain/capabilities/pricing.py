"""Pricing: the unit price a line is sold at, before promotions."""

from __future__ import annotations

from domain.capabilities.base import LineRequest, OrderContext
from domain.errors import InvalidRequest
from domain.model import Product


class ListPricing:
    """fixed_price: the catalog price."""

    def unit_price(self, ctx: OrderContext, req: LineRequest, product: Product) -> int:
        return product.price_cents


class FlashPricing:
    """flash_sale: the SKU's active flash price; a SKU not on flash sale is refused."""

    def unit_price(self, ctx: OrderContext, req: LineRequest, product: Product) -> int:
        promo = ctx.flash(product.sku)
        if promo is None:
            raise InvalidRequest(
                f"sku {product.sku} is not on an active flash sale; order it with tx_type fixed_price",
                field=f"lines[{req.index}].sku", rule="flash_sale.sku_on_sale",
            )
        return promo.price_cents
