"""Payment: how an order is charged. Default: the whole amount through the gateway, at once."""

from __future__ import annotations

from domain.model import Order
from domain.ports import ChargeResult, PaymentGateway


class GatewayPayment:
    def charge(self, gateway: PaymentGateway, order: Order, payment_id: str) -> ChargeResult:
        return gateway.charge(payment_id, order.buyer_id, order.amount_cents)
