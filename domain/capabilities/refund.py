"""Refund: amount per refunded unit, where the units go, and the money back through the gateway."""

from __future__ import annotations

from domain.model import DEFAULT_POOL, Order, OrderLine, warehouse_of
from domain.ports import ChargeResult, PaymentGateway


class ProportionalRefund:
    """The paid line amount pro rata (exact on the last unit); units go back to their
    warehouse or to regular stock."""

    def amount(self, line: OrderLine, qty: int) -> int:
        return line.refund_amount(qty)

    def amount_for(self, order: Order, line: OrderLine, qty: int) -> int:
        return self.amount(line, qty)

    def restock_pool(self, line: OrderLine) -> str | None:
        """Units go back to the warehouse they came from; shared pools (flash) go to regular stock."""
        return line.pool if warehouse_of(line.pool) is not None else DEFAULT_POOL

    def refund(self, gateway: PaymentGateway, refund_id: str, payment_reference: str,
               amount_cents: int) -> ChargeResult:
        return gateway.refund(refund_id, payment_reference, amount_cents)


class PresaleRefund(ProportionalRefund):
    """presale: a paid order refunds the balance, and the deposit too only when the shop's rule
    (``Shop.presale_deposit_refundable``, copied into the order's terms) says so."""

    def amount_for(self, order: Order, line: OrderLine, qty: int) -> int:
        pre = order.presale or {}
        deposit = int(pre.get("deposit_by_line", {}).get(line.sku, 0))
        withheld = 0 if pre.get("deposit_refundable") else deposit
        return line.refund_amount(qty, withheld)
