"""Discounts: per-SKU percent/amount off (best one wins), then the shop's "spend X save Y"."""

from __future__ import annotations

from collections.abc import Sequence

from domain.capabilities.base import OrderContext, PricedLine


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` cents over ``weights`` proportionally; largest remainder keeps the sum exact."""
    wsum = sum(weights)
    if total <= 0 or wsum <= 0:
        return [0] * len(weights)
    total = min(total, wsum)
    shares = [total * w // wsum for w in weights]
    rema = sorted(range(len(weights)), key=lambda i: -(total * weights[i] % wsum))
    for i in rema[: total - sum(shares)]:
        shares[i] += 1
    return shares


class PromotionDiscount:
    """Default discount capability of fixed-price orders."""

    def discounts(self, ctx: OrderContext, shop_id: str, lines: Sequence[PricedLine]) -> list[int]:
        per_line = [self._best_sku_discount(ctx, line) for line in lines]
        after = [line.subtotal_cents - d for line, d in zip(lines, per_line, strict=True)]
        subtotal = sum(after)
        tiers = [p for p in ctx.shop_promotions(shop_id, "spend_save") if subtotal >= p.threshold_cents]
        if tiers:
            best = max(tiers, key=lambda p: (p.threshold_cents, p.amount_cents))
            extra = allocate(best.amount_cents, after)
            per_line = [d + e for d, e in zip(per_line, extra, strict=True)]
        return per_line

    @staticmethod
    def _best_sku_discount(ctx: OrderContext, line: PricedLine) -> int:
        best = 0
        for p in ctx.sku_promotions(line.sku, ("percent_off", "amount_off")):
            if p.kind == "percent_off":
                d = line.subtotal_cents * p.percent // 100
            else:
                d = min(p.amount_cents, line.unit_price_cents) * line.qty
            best = max(best, d)
        return best


class NoDiscount:
    """flash_sale: the flash price is final; no other promotion stacks on it."""

    def discounts(self, ctx: OrderContext, shop_id: str, lines: Sequence[PricedLine]) -> list[int]:
        return [0] * len(lines)
