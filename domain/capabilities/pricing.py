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


class PresalePricing:
    """presale: the SKU's active presale price (its deposit is part of it)."""

    def unit_price(self, ctx: OrderContext, req: LineRequest, product: Product) -> int:
        promo = ctx.presale(product.sku)
        if promo is None:
            raise InvalidRequest(
                f"sku {product.sku} is not on an active presale; order it with tx_type fixed_price",
                field=f"lines[{req.index}].sku", rule="presale.sku_on_presale",
            )
        return promo.price_cents


class AuctionPricing:
    """auction: the winning bid. Auction orders are made by the auction's end, never by buyers."""

    def unit_price(self, ctx: OrderContext, req: LineRequest, product: Product) -> int:
        award = ctx.extra.get("auction")
        if not isinstance(award, dict) or award.get("sku") != product.sku:
            raise InvalidRequest(
                "auction orders are created when an auction ends (POST /auctions/{id}/bids to bid); "
                "order with another tx_type", field="tx_type", rule="auction.by_award")
        if req.qty != 1:
            raise InvalidRequest("an auction sells one unit", field=f"lines[{req.index}].qty",
                                 rule="auction.qty")
        return int(award["amount_cents"])
