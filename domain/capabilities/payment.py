"""Payment: how an order is charged. Default: the whole amount through the gateway, at once.

Overrides: ``PresalePayment`` (a deposit, then the balance in its window) and ``CashOnDelivery``
(no online payment: confirmed at once, paid when the cash is collected at the door).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from domain.capabilities.base import OrderContext
from domain.errors import Conflict, InvalidRequest
from domain.model import DEPOSIT, Order, SubOrder
from domain.ports import ChargeResult, PaymentGateway


class GatewayPayment:
    def charge(self, gateway: PaymentGateway, order: Order, payment_id: str) -> ChargeResult:
        return gateway.charge(payment_id, order.buyer_id, order.amount_cents)

    def terms(self, ctx: OrderContext, sub_orders: Sequence[SubOrder]) -> dict[str, Any]:
        return {}

    def placed(self, order: Order, now: datetime) -> None:
        return None


class PresalePayment(GatewayPayment):
    """presale: ``POST /orders`` pays the deposit stage (body ``stage: deposit``); the balance is paid
    with ``POST /orders/{id}/pay`` (``stage: balance``) in the window the SKU's presale promotion names.
    Each charge is the due stage's amount."""

    def charge(self, gateway: PaymentGateway, order: Order, payment_id: str) -> ChargeResult:
        return gateway.charge(payment_id, order.buyer_id, order.amount_due_cents)

    def terms(self, ctx: OrderContext, sub_orders: Sequence[SubOrder]) -> dict[str, Any]:
        stage = ctx.extra.get("stage")
        if stage != DEPOSIT:
            raise InvalidRequest(
                f"a presale order is placed paying its deposit: stage must be 'deposit', got {stage!r}; "
                "the balance is paid with POST /orders/{id}/pay {\"stage\": \"balance\"}",
                field="stage", rule="presale.stage", extra={"allowed": [DEPOSIT]})
        windows = set()
        deposit_by_sub: dict[str, int] = {}
        deposit_by_line: dict[str, int] = {}
        for sub in sub_orders:
            for line in sub.lines:
                promo = ctx.presale(line.sku)
                if promo is None:  # the pricing capability refused it already; belt and braces
                    raise InvalidRequest(f"sku {line.sku} is not on presale", field="lines",
                                         rule="presale.sku")
                windows.add((promo.balance_starts_at, promo.balance_ends_at))
                deposit = min(promo.amount_cents * line.qty, line.amount_cents)
                deposit_by_line[line.sku] = deposit
                deposit_by_sub[sub.id] = deposit_by_sub.get(sub.id, 0) + deposit
        if len(windows) != 1:
            raise InvalidRequest("the SKUs of one presale order must share their balance window; order them "
                                 "separately", field="lines", rule="presale.same_window")
        opens, closes = windows.pop()
        assert opens is not None and closes is not None
        total = sum(s.amount_cents for s in sub_orders)
        deposit_total = sum(deposit_by_sub.values())
        refundable = all(ctx.shops[s.shop_id].presale_deposit_refundable for s in sub_orders
                         if s.shop_id in ctx.shops)
        return {"presale": {
            "stage": DEPOSIT, "deposit_cents": deposit_total, "balance_cents": total - deposit_total,
            "deposit_by_sub": deposit_by_sub, "deposit_by_line": deposit_by_line,
            "balance_starts_at": opens.isoformat(), "balance_ends_at": closes.isoformat(),
            "deposit_refundable": refundable,
        }}


class CashOnDelivery(GatewayPayment):
    """cod: no online payment. The shop must accept cash on delivery, each shop's sub-order stays
    within the shop's ``cod_max_order_cents``; the order is confirmed at once (stock reserved) and
    paid when the courier collects the cash (``POST /sub-orders/{id}/deliver {"collected": true}``)."""

    def charge(self, gateway: PaymentGateway, order: Order, payment_id: str) -> ChargeResult:
        raise Conflict(f"order {order.id} is cash on delivery; it is paid at the door",
                       rule="cod.no_online_payment")

    def terms(self, ctx: OrderContext, sub_orders: Sequence[SubOrder]) -> dict[str, Any]:
        per_shop: dict[str, int] = {}
        for sub in sub_orders:
            per_shop[sub.shop_id] = per_shop.get(sub.shop_id, 0) + sub.amount_cents
        for shop_id, amount in sorted(per_shop.items()):
            shop = ctx.shops.get(shop_id)
            if shop is None or not shop.accepts_cod:
                raise InvalidRequest(f"shop {shop_id} does not accept cash on delivery; pay online (tx_type "
                                     "fixed_price)", field="tx_type", rule="cod.accepted",
                                     extra={"shop": shop_id})
            if amount > shop.cod_max_order_cents:
                raise InvalidRequest(
                    f"cash on delivery at {shop.name} is limited to {shop.cod_max_order_cents / 100:.2f} per "
                    f"order; this order is {amount / 100:.2f} there", field="lines",
                    rule="cod.order_value_cap",
                    extra={"shop": shop_id, "cap_cents": shop.cod_max_order_cents, "amount_cents": amount})
        return {"cod": True}

    def placed(self, order: Order, now: datetime) -> None:
        order.confirm_cod(now)


class AuctionPayment(GatewayPayment):
    """auction: charged like a fixed-price order; the order's terms name the auction and the round."""

    def terms(self, ctx: OrderContext, sub_orders: Sequence[SubOrder]) -> dict[str, Any]:
        award = ctx.extra.get("auction")
        return {"auction": dict(award)} if isinstance(award, dict) else {}
