"""Purchase limits: per buyer per SKU per period, counted with an atomic conditional counter."""

from __future__ import annotations

from domain.capabilities.base import LimitRule, OrderContext, PricedLine
from domain.errors import PurchaseLimitExceeded
from domain.model import OrderLine, Product
from domain.storage import UnitOfWork


class _CounterLimit:
    def consume(self, uow: UnitOfWork, buyer_id: str, line: PricedLine) -> None:
        rule = line.limit
        if rule is None:
            return
        if uow.limits.try_consume(buyer_id, line.sku, rule.key, line.qty, rule.max_qty):
            return
        used = uow.limits.used(buyer_id, line.sku, rule.key)
        left = max(rule.max_qty - used, 0)
        raise PurchaseLimitExceeded(
            f"{rule.description}: buyer {buyer_id} already has {used} of {line.sku}, "
            f"so at most {left} more",
            field=f"lines[{line.request.index}].qty", rule=rule.rule,
            extra={"sku": line.sku, "limit": rule.max_qty, "used": used, "remaining": left},
        )

    def release(self, uow: UnitOfWork, buyer_id: str, line: OrderLine) -> None:
        if line.limit_key:
            uow.limits.release(buyer_id, line.sku, line.limit_key, line.qty)


class ProductPurchaseLimit(_CounterLimit):
    """fixed_price: the product's own limit (e.g. 5 per day), if it has one."""

    def rule(self, ctx: OrderContext, product: Product) -> LimitRule | None:
        lim = product.limit
        if lim is None:
            return None
        return LimitRule(
            key=lim.period_key(ctx.now), max_qty=lim.max_qty, rule=f"purchase_limit.{lim.period}",
            description=f"{product.sku} is limited to {lim.max_qty} per buyer per {lim.period}",
        )


class FlashPurchaseLimit(_CounterLimit):
    """flash_sale: strict per-buyer limit over the whole flash sale."""

    def rule(self, ctx: OrderContext, product: Product) -> LimitRule | None:
        promo = ctx.flash(product.sku)
        if promo is None:
            return None
        return LimitRule(
            key=f"flash:{promo.id}", max_qty=promo.per_buyer_limit, rule="flash_sale.per_buyer",
            description=f"flash sale {promo.id} allows {promo.per_buyer_limit} of {product.sku} per buyer",
        )


class CodPurchaseLimit(ProductPurchaseLimit):
    """cod: the shop's cash-on-delivery cap per buyer per SKU per day (``Shop.cod_max_qty_per_day``),
    else the product's own limit."""

    def rule(self, ctx: OrderContext, product: Product) -> LimitRule | None:
        shop = ctx.shops.get(product.shop_id)
        if shop is None or shop.cod_max_qty_per_day <= 0:
            return super().rule(ctx, product)
        own = super().rule(ctx, product)
        if own is not None and own.max_qty < shop.cod_max_qty_per_day and own.key.startswith("d:"):
            return own  # the product's own daily limit is stricter
        return LimitRule(
            key=f"cod:d:{ctx.now:%Y-%m-%d}", max_qty=shop.cod_max_qty_per_day, rule="cod.per_buyer_day",
            description=f"cash on delivery at {shop.name} allows {shop.cod_max_qty_per_day} of {product.sku} "
                        "per buyer per day",
        )


class PresalePurchaseLimit(_CounterLimit):
    """presale: the presale promotion's per-buyer limit (0 = none) over the whole presale."""

    def rule(self, ctx: OrderContext, product: Product) -> LimitRule | None:
        promo = ctx.presale(product.sku)
        if promo is None or promo.per_buyer_limit < 1:
            return None
        return LimitRule(
            key=f"presale:{promo.id}", max_qty=promo.per_buyer_limit, rule="presale.per_buyer",
            description=f"presale {promo.id} allows {promo.per_buyer_limit} of {product.sku} per buyer",
        )


class NoPurchaseLimit(_CounterLimit):
    """auction: one unit to the winner; no per-buyer counter."""

    def rule(self, ctx: OrderContext, product: Product) -> LimitRule | None:
        return None
