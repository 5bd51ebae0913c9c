"""The Order aggregate: lines split into one sub-order per shop, payments, refunds.

The aggregate enforces its state machine and records domain events in
``order.events``; it does no I/O. Stock and purchase-limit counters live outside
the aggregate (they are shared by many orders) and are changed by the inventory
and purchase-limit capabilities in the same unit of work.

Order status::

    pending_payment ──pay ok──▶ paid ──refund (part)──▶ partially_refunded ──▶ refunded
          │   ▲
          │   └── pay failed (stays payable until expires_at)
          └──cancel / timeout──▶ cancelled

Payment status::

    pending ──ok──▶ succeeded
       │ └──declined / error──▶ failed
       └──degraded (payment.charge blocked, fallback "queued")──▶ queued
    queued ──claimed by a retry or by the buyer's next pay──▶ pending
    queued ──order cancelled / deadline + grace passed──▶ failed

At most one payment of an order is ``pending`` or ``queued`` at a time. An order with a queued
payment stays ``pending_payment`` with its stock reserved; its payment deadline is extended by
the service's bounded *queued grace* (``payment_deadline(grace)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain import events as ev
from domain.errors import Conflict, InvalidRequest, NotFound
from domain.model.address import Address

PENDING = "pending_payment"
PAID = "paid"
PARTIALLY_REFUNDED = "partially_refunded"
REFUNDED = "refunded"
CANCELLED = "cancelled"
CONFIRMED = "confirmed"  # cash on delivery: confirmed at once, paid when the cash is collected
DEPOSIT_PAID = "deposit_paid"  # presale: deposit paid, the balance is due in its window
ORDER_STATUSES = (PENDING, CONFIRMED, DEPOSIT_PAID, PAID, PARTIALLY_REFUNDED, REFUNDED, CANCELLED)
TX_TYPES_BUILTIN = ("fixed_price", "flash_sale")
# presale stages (``Payment.stage``, events' ``stage``)
DEPOSIT = "deposit"
BALANCE = "balance"
PRESALE_STAGES = (DEPOSIT, BALANCE)
CHANNELS = ("app", "web", "mini_program")
# payment statuses
PENDING_PAYMENT = "pending"
QUEUED = "queued"


@dataclass
class OrderLine:
    sku: str
    shop_id: str
    name: str
    qty: int
    list_price_cents: int  # catalog price per unit
    unit_price_cents: int  # price per unit before promotions (list, or flash price)
    discount_cents: int  # whole line: (list - unit) × qty + promotions allocated to this line
    amount_cents: int  # what the buyer pays for the line
    pool: str  # inventory pool the units were reserved from
    limit_key: str | None = None  # purchase-limit counter consumed ("<period key>"), if any
    refund_requested_qty: int = 0  # requested or completed refunds
    refunded_qty: int = 0  # completed refunds
    refunded_cents: int = 0
    requested_cents: int = 0

    @property
    def gross_cents(self) -> int:
        return self.list_price_cents * self.qty

    def refund_amount(self, qty: int, withheld_cents: int = 0) -> int:
        """Money for ``qty`` more units: proportional, and exact for the last unit (no cent lost).
        ``withheld_cents`` of the line are never refunded (a presale's forfeitable deposit)."""
        refundable = self.amount_cents - withheld_cents
        if self.refund_requested_qty + qty == self.qty:
            return refundable - self.requested_cents
        return refundable * qty // self.qty


# delivery states of a sub-order (``SubOrder.delivery_status``)
NOT_SHIPPED = "not_shipped"
SHIPPED = "shipped"
DELIVERED = "delivered"
RECEIVED = "received"
DELIVERY_FAILED = "failed"
DELIVERY_STATUSES = (NOT_SHIPPED, SHIPPED, DELIVERED, RECEIVED, DELIVERY_FAILED)


@dataclass
class SubOrder:
    id: str
    shop_id: str
    status: str
    lines: list[OrderLine] = field(default_factory=list)
    warehouse_id: str | None = None  # where its lines ship from (None: the shop's shared stock)
    delivery_status: str = NOT_SHIPPED
    carrier: str | None = None
    tracking_no: str | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    received_at: datetime | None = None

    @property
    def gross_cents(self) -> int:
        return sum(line.gross_cents for line in self.lines)

    @property
    def discount_cents(self) -> int:
        return sum(line.discount_cents for line in self.lines)

    @property
    def amount_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)

    @property
    def items(self) -> int:
        return sum(line.qty for line in self.lines)

    def _refresh_refund_status(self) -> None:
        refunded = sum(line.refunded_qty for line in self.lines)
        if refunded == 0:
            return
        self.status = REFUNDED if refunded == self.items else PARTIALLY_REFUNDED


@dataclass
class Payment:
    id: str
    amount_cents: int
    status: str  # "pending" | "queued" | "succeeded" | "failed"
    started_at: datetime
    finished_at: datetime | None = None
    reference: str | None = None
    reason: str | None = None
    latency_ms: float = 0.0
    stage: str | None = None  # presale: "deposit" | "balance"


@dataclass
class RefundLine:
    sub_order_id: str
    shop_id: str
    sku: str
    qty: int
    amount_cents: int


REFUND_ONLY = "refund_only"
RETURN = "return"
REFUND_KINDS = (REFUND_ONLY, RETURN)


@dataclass
class Refund:
    """After-sale request. ``requested`` waits for the merchant: approve (refund only: paid out at
    once → ``completed``; return of goods: ``approved`` until the goods are back, then paid out) or
    reject (``rejected``, with a reason; the quantities become refundable again)."""

    id: str
    order_id: str
    status: str  # "requested" | "approved" | "rejected" | "completed"
    created_at: datetime
    lines: list[RefundLine] = field(default_factory=list)
    completed_at: datetime | None = None
    last_error: str | None = None
    kind: str = REFUND_ONLY
    reason: str | None = None  # why it was rejected
    decided_at: datetime | None = None
    goods_received_at: datetime | None = None

    @property
    def amount_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)

    @property
    def items(self) -> int:
        return sum(line.qty for line in self.lines)


@dataclass(eq=False)
class Order:
    id: str
    buyer_id: str
    tx_type: str
    channel: str
    address: Address
    idempotency_key: str
    request_hash: str
    created_at: datetime
    expires_at: datetime | None
    status: str = PENDING
    sub_orders: list[SubOrder] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    version: int = 0
    events: list[ev.DomainEvent] = field(default_factory=list, repr=False, compare=False)
    # terms of the transaction type, JSON-able: {"presale": {...}}, {"cod": true}, {"auction": {...}}
    terms: dict = field(default_factory=dict)

    # -------------------------------------------------------------- tx terms
    @property
    def presale(self) -> dict | None:
        return self.terms.get("presale")

    @property
    def is_cod(self) -> bool:
        return bool(self.terms.get("cod"))

    @property
    def stage(self) -> str | None:
        """The presale stage due next (``deposit`` | ``balance``); None for other types."""
        return self.presale["stage"] if self.presale else None

    @property
    def amount_due_cents(self) -> int:
        """What the next payment charges: the whole amount, or the presale stage's amount."""
        pre = self.presale
        if pre is None:
            return self.amount_cents
        return pre["deposit_cents"] if pre["stage"] == DEPOSIT else pre["balance_cents"]

    def _stage_share(self, sub: SubOrder, stage: str | None) -> int:
        pre = self.presale
        if pre is None or stage is None:
            return sub.amount_cents
        deposit = int(pre["deposit_by_sub"].get(sub.id, 0))
        return deposit if stage == DEPOSIT else sub.amount_cents - deposit

    # ------------------------------------------------------------------ totals
    @property
    def gross_cents(self) -> int:
        return sum(s.gross_cents for s in self.sub_orders)

    @property
    def discount_cents(self) -> int:
        return sum(s.discount_cents for s in self.sub_orders)

    @property
    def amount_cents(self) -> int:
        return sum(s.amount_cents for s in self.sub_orders)

    @property
    def lines(self) -> list[OrderLine]:
        return [line for s in self.sub_orders for line in s.lines]

    def line(self, sku: str) -> OrderLine:
        for line in self.lines:
            if line.sku == sku:
                return line
        raise NotFound(f"order {self.id} has no line for sku {sku!r}", field="sku",
                       rule="refund.line_in_order")

    def sub_order_of(self, line: OrderLine) -> SubOrder:
        return next(s for s in self.sub_orders if line in s.lines)

    @property
    def pending_payment(self) -> Payment | None:
        return next((p for p in self.payments if p.status == "pending"), None)

    @property
    def queued_payment(self) -> Payment | None:
        return next((p for p in self.payments if p.status == QUEUED), None)

    def payment_deadline(self, queued_grace: timedelta) -> datetime | None:
        """When the order stops being payable: ``expires_at``, plus ``queued_grace`` while a payment
        is queued (the buyer did pay; the gateway was degraded), so a queued payment gets a bounded
        chance to be charged before the timeout cancels the order."""
        if self.expires_at is None:
            return None
        return self.expires_at + queued_grace if self.queued_payment is not None else self.expires_at

    @property
    def paid_payment(self) -> Payment | None:
        return next((p for p in self.payments if p.status == "succeeded"), None)

    # ----------------------------------------------------------------- placing
    @classmethod
    def place(
        cls,
        *,
        order_id: str,
        buyer_id: str,
        tx_type: str,
        channel: str,
        address: Address,
        idempotency_key: str,
        request_hash: str,
        sub_orders: list[SubOrder],
        now: datetime,
        expires_at: datetime | None,
        terms: dict | None = None,
    ) -> Order:
        if not sub_orders or not any(s.lines for s in sub_orders):
            raise InvalidRequest("an order needs at least one line", field="lines")
        order = cls(
            id=order_id, buyer_id=buyer_id, tx_type=tx_type, channel=channel, address=address,
            idempotency_key=idempotency_key, request_hash=request_hash, created_at=now,
            expires_at=expires_at, status=PENDING, sub_orders=sub_orders, terms=dict(terms or {}),
        )
        for sub in sub_orders:
            order.events.append(ev.OrderPlaced(
                occurred_at=now, order_id=order.id, sub_order_id=sub.id, shop_id=sub.shop_id,
                buyer_id=buyer_id, tx_type=tx_type, channel=channel, gross_cents=sub.gross_cents,
                discount_cents=sub.discount_cents, amount_cents=sub.amount_cents, items=sub.items,
            ))
            for line in sub.lines:
                order.events.append(ev.StockReserved(
                    occurred_at=now, order_id=order.id, shop_id=sub.shop_id, sku=line.sku,
                    qty=line.qty, tx_type=tx_type,
                ))
        return order

    # ----------------------------------------------------------------- payment
    def _require_payable(self, now: datetime, queued_grace: timedelta = timedelta(0)) -> None:
        if self.status == DEPOSIT_PAID and self.presale is not None:
            self._require_balance_window(now)
            return
        if self.status != PENDING:
            raise Conflict(
                f"order {self.id} is {self.status}; only {PENDING} orders can be paid",
                rule="order.payable", extra={"status": self.status},
            )
        deadline = self.payment_deadline(queued_grace)
        if deadline is not None and now >= deadline:
            raise Conflict(
                f"order {self.id} passed its payment deadline {deadline.isoformat()}; "
                "place a new order",
                rule="order.payment_deadline", extra={"expires_at": deadline.isoformat()},
            )

    def _require_balance_window(self, now: datetime) -> None:
        pre = self.presale or {}
        opens = datetime.fromisoformat(pre["balance_starts_at"])
        closes = datetime.fromisoformat(pre["balance_ends_at"])
        if now < opens:
            raise Conflict(
                f"the balance of presale order {self.id} can be paid from {opens.isoformat()} "
                f"until {closes.isoformat()}", field="stage", rule="presale.balance_window",
                extra={"balance_starts_at": opens.isoformat(), "balance_ends_at": closes.isoformat()})
        if now >= closes:
            raise Conflict(
                f"the balance window of presale order {self.id} closed at {closes.isoformat()}; the "
                "deposit follows the shop's rule", field="stage", rule="presale.balance_window",
                extra={"balance_starts_at": opens.isoformat(), "balance_ends_at": closes.isoformat()})

    def require_stage(self, stage: str | None) -> None:
        """A payment request that names its presale stage must name the one due."""
        if stage is None:
            return
        if self.presale is None:
            raise InvalidRequest(f"order {self.id} is {self.tx_type}; only presale orders pay in stages",
                                 field="stage", rule="presale.stage")
        if stage != self.stage:
            raise Conflict(f"presale order {self.id} is due its {self.stage} stage, not {stage}",
                           field="stage", rule="presale.stage", extra={"due": self.stage})

    def begin_payment(self, payment_id: str, now: datetime, stale_after: timedelta,
                      queued_grace: timedelta = timedelta(0)) -> Payment:
        """Start a payment; a *queued* payment is taken over (charged now, under its own id) instead
        of starting a second one, so a queued payment and a new one can never both be charged."""
        self._require_payable(now, queued_grace)
        queued = self.queued_payment
        if queued is not None:
            queued.status, queued.started_at, queued.finished_at = PENDING_PAYMENT, now, None
            return queued
        inflight = self.pending_payment
        if inflight is not None:
            if now - inflight.started_at < stale_after:
                raise Conflict(
                    f"a payment for order {self.id} is already in progress; retry in a few seconds",
                    rule="order.single_payment", extra={"payment_id": inflight.id},
                )
            inflight.status, inflight.reason, inflight.finished_at = "failed", "abandoned (stale)", now
        payment = Payment(id=payment_id, amount_cents=self.amount_due_cents, status="pending", started_at=now,
                          stage=self.stage)
        self.payments.append(payment)
        return payment

    def claim_queued_payment(self, payment_id: str, now: datetime, queued_grace: timedelta) -> bool:
        """queued → pending for a retry of the charge; False when that payment is no longer queued
        (someone else claimed it, it was settled or cancelled) or the order's deadline plus the
        queued grace has passed (then the timeout job cancels the order)."""
        payment = next((p for p in self.payments if p.id == payment_id), None)
        if payment is None or payment.status != QUEUED or self.status not in (PENDING, DEPOSIT_PAID):
            return False
        deadline = self.payment_deadline(queued_grace)
        if deadline is not None and now >= deadline:
            return False
        payment.status, payment.started_at, payment.finished_at = PENDING_PAYMENT, now, None
        return True

    def _payment(self, payment_id: str) -> Payment:
        for p in self.payments:
            if p.id == payment_id:
                return p
        raise NotFound(f"order {self.id} has no payment {payment_id}", rule="payment.exists")

    def complete_payment(
        self, payment_id: str, *, ok: bool, reference: str | None, reason: str | None,
        latency_ms: float, now: datetime, queued: bool = False,
    ) -> Payment:
        """Record a charge's outcome. ``queued`` (the guard degraded the charge; the gateway was not
        called) puts the payment back in the queue while the order is still payable."""
        payment = self._payment(payment_id)
        if payment.status != PENDING_PAYMENT:
            raise Conflict(f"payment {payment_id} is already {payment.status}", rule="payment.pending")
        payable = self.status == PENDING or (self.status == DEPOSIT_PAID and payment.stage == BALANCE)
        if queued and not ok and payable:
            payment.status, payment.latency_ms = QUEUED, latency_ms
            payment.reason = reason or "payment queued"
            self.events.append(ev.PaymentQueued(
                occurred_at=now, order_id=self.id, payment_id=payment.id, buyer_id=self.buyer_id,
                tx_type=self.tx_type, channel=self.channel, amount_cents=payment.amount_cents,
                reason=payment.reason))
            return payment
        payment.finished_at, payment.latency_ms = now, latency_ms
        common = dict(occurred_at=now, order_id=self.id, payment_id=payment.id, buyer_id=self.buyer_id,
                      tx_type=self.tx_type, channel=self.channel, amount_cents=payment.amount_cents,
                      latency_ms=latency_ms)
        if payment.stage is not None:
            common["stage"] = payment.stage
        if not ok or not payable:
            payment.status = "failed"
            payment.reason = reason or ("order no longer payable" if ok else "declined")
            self.events.append(ev.PaymentFailed(**common, reason=payment.reason))
            return payment
        payment.status, payment.reference = "succeeded", reference
        self.events.append(ev.PaymentSucceeded(**common))
        self._settle(payment, now)
        return payment

    def _settle(self, payment: Payment, now: datetime, subs: list[SubOrder] | None = None) -> None:
        """A payment succeeded: the sub-orders (all, or ``subs``) are paid — or, for a presale
        deposit, the order waits for its balance (``deposit_paid`` until the window closes)."""
        stage = payment.stage
        deposit = stage == DEPOSIT
        new_status = DEPOSIT_PAID if deposit else PAID
        for sub in subs if subs is not None else self.sub_orders:
            sub.status = new_status
            extra = {"stage": stage} if stage is not None else {}
            self.events.append(ev.OrderPaid(
                occurred_at=now, order_id=self.id, sub_order_id=sub.id, shop_id=sub.shop_id,
                buyer_id=self.buyer_id, tx_type=self.tx_type, channel=self.channel,
                amount_cents=self._stage_share(sub, stage), payment_id=payment.id, **extra,
            ))
        if deposit:
            pre = dict(self.presale or {})
            pre["stage"] = BALANCE
            self.terms = {**self.terms, "presale": pre}
            self.expires_at = datetime.fromisoformat(pre["balance_ends_at"])
            self.status = DEPOSIT_PAID
        elif all(s.status in (PAID, CANCELLED) for s in self.sub_orders):
            self.status = PAID if any(s.status == PAID for s in self.sub_orders) else CANCELLED

    # ------------------------------------------------------ cash on delivery
    def confirm_cod(self, now: datetime) -> None:
        """Cash on delivery: confirmed at once (stock stays reserved), no payment deadline."""
        self.terms = {**self.terms, "cod": True}
        self.status, self.expires_at = CONFIRMED, None
        for sub in self.sub_orders:
            sub.status = CONFIRMED
            self.events.append(ev.OrderConfirmed(
                occurred_at=now, order_id=self.id, sub_order_id=sub.id, shop_id=sub.shop_id,
                buyer_id=self.buyer_id, tx_type=self.tx_type, channel=self.channel,
                amount_cents=sub.amount_cents))

    def deliver_cod(self, sub_order_id: str, now: datetime, collected: bool | None, payment_id: str,
                    reason: str | None = None) -> tuple[list[OrderLine], list[OrderLine]]:
        """A cash-on-delivery sub-order at the door: the cash ``collected`` (payment recorded, the
        sub-order paid) or not (``DeliveryFailed``, the sub-order cancelled). Returns the lines whose
        reserved units were (sold, released)."""
        if collected is None:
            raise InvalidRequest("cash on delivery: say whether the cash was collected (collected: true "
                                 "or false)", field="collected", rule="cod.collected")
        sub = self.sub_order(sub_order_id)
        if sub.delivery_status != SHIPPED or sub.status != CONFIRMED:
            raise Conflict(
                f"sub-order {sub.id} is {sub.status}/{sub.delivery_status}; only shipped, confirmed "
                "cash-on-delivery sub-orders are delivered", rule="delivery.shipped",
                extra={"delivery_status": sub.delivery_status, "status": sub.status})
        if not collected:
            sub.delivery_status = DELIVERY_FAILED
            sub.status = CANCELLED
            why = reason or "cash not collected"
            self.events.append(ev.DeliveryFailed(**self._sub_event(sub, now), reason=why))
            self.events.append(ev.OrderCancelled(
                occurred_at=now, order_id=self.id, sub_order_id=sub.id, shop_id=sub.shop_id,
                tx_type=self.tx_type, channel=self.channel, amount_cents=sub.amount_cents,
                reason="delivery_failed"))
            for line in sub.lines:
                self.events.append(ev.StockReleased(
                    occurred_at=now, order_id=self.id, shop_id=sub.shop_id, sku=line.sku, qty=line.qty,
                    tx_type=self.tx_type, reason="delivery_failed"))
            if all(s.status in (PAID, CANCELLED) for s in self.sub_orders):
                self.status = PAID if any(s.status == PAID for s in self.sub_orders) else CANCELLED
            return [], list(sub.lines)
        sub.delivery_status, sub.delivered_at = DELIVERED, now
        self.events.append(ev.SubOrderDelivered(**self._sub_event(sub, now), collected=True))
        payment = Payment(id=payment_id, amount_cents=sub.amount_cents, status="succeeded", started_at=now,
                          finished_at=now, reference=f"cod:{sub.id}", reason="cash collected on delivery")
        self.payments.append(payment)
        self.events.append(ev.PaymentSucceeded(
            occurred_at=now, order_id=self.id, payment_id=payment.id, buyer_id=self.buyer_id,
            tx_type=self.tx_type, channel=self.channel, amount_cents=payment.amount_cents, latency_ms=0.0))
        self._settle(payment, now, [sub])
        return list(sub.lines), []

    # ------------------------------------------------------------- presale
    def lapse_presale(self, now: datetime, refundable: bool) -> int:
        """The balance window closed unpaid: the order is cancelled, its stock released; the deposit
        is forfeited or (``refundable``) returned. Returns the deposit in cents."""
        pre = self.presale
        if pre is None or self.status != DEPOSIT_PAID:
            raise Conflict(f"order {self.id} is {self.status}; only deposit_paid presale orders lapse",
                           rule="presale.deposit_paid", extra={"status": self.status})
        self._cancel_subs("deposit_forfeited" if not refundable else "balance_unpaid", now)
        self._deposit_outcome(now, refundable, "balance unpaid after the window")
        return int(pre["deposit_cents"])

    def _deposit_outcome(self, now: datetime, refundable: bool, why: str) -> None:
        pre = self.presale or {}
        event = ev.DepositRefunded if refundable else ev.DepositForfeited
        for sub in self.sub_orders:
            self.events.append(event(
                occurred_at=now, order_id=self.id, sub_order_id=sub.id, shop_id=sub.shop_id,
                tx_type=self.tx_type, channel=self.channel, stage=DEPOSIT,
                amount_cents=int(pre.get("deposit_by_sub", {}).get(sub.id, 0)), reason=why))
        self.terms = {**self.terms, "presale": {**pre, "deposit_outcome": "refunded" if refundable
                                                 else "forfeited"}}

    def deposit_payment(self) -> Payment | None:
        return next((p for p in self.payments if p.stage == DEPOSIT and p.status == "succeeded"), None)

    # ------------------------------------------------------------------ cancel
    def cancel(self, reason: str, now: datetime, stale_after: timedelta,
               deposit_refundable: bool = False) -> None:
        """Cancel an unpaid order (also a confirmed cash-on-delivery order not shipped yet, and a
        presale order whose deposit is paid: the deposit follows ``deposit_refundable``)."""
        if self.status == CONFIRMED and all(s.delivery_status == NOT_SHIPPED for s in self.sub_orders):
            self._cancel_subs(reason, now)
            return
        if self.status == DEPOSIT_PAID and self.presale is not None and self.pending_payment is None:
            self._cancel_subs(reason, now)
            self._deposit_outcome(now, deposit_refundable, f"cancelled ({reason})")
            return
        if self.status != PENDING:
            hint = "; request a refund instead" if self.status in (PAID, PARTIALLY_REFUNDED) else ""
            raise Conflict(
                f"order {self.id} is {self.status}; only {PENDING} orders can be cancelled{hint}",
                rule="order.cancellable", extra={"status": self.status},
            )
        inflight = self.pending_payment
        if inflight is not None:
            if now - inflight.started_at < stale_after:
                raise Conflict(
                    f"a payment for order {self.id} is in progress; cancel after it completes",
                    rule="order.payment_in_progress", extra={"payment_id": inflight.id},
                )
            inflight.status, inflight.reason, inflight.finished_at = "failed", "abandoned (stale)", now
        queued = self.queued_payment
        if queued is not None:  # never charged: drop it from the queue
            queued.status, queued.finished_at = "failed", now
            queued.reason = f"queued payment dropped: order cancelled ({reason})"
        self._cancel_subs(reason, now)

    def _cancel_subs(self, reason: str, now: datetime) -> None:
        self.status = CANCELLED
        for sub in self.sub_orders:
            sub.status = CANCELLED
            self.events.append(ev.OrderCancelled(
                occurred_at=now, order_id=self.id, sub_order_id=sub.id, shop_id=sub.shop_id,
                tx_type=self.tx_type, channel=self.channel, amount_cents=sub.amount_cents, reason=reason,
            ))
            for line in sub.lines:
                self.events.append(ev.StockReleased(
                    occurred_at=now, order_id=self.id, shop_id=sub.shop_id, sku=line.sku, qty=line.qty,
                    tx_type=self.tx_type, reason="timeout" if reason == "timeout" else "cancelled",
                ))

    # ----------------------------------------------------------------- refunds
    def request_refund(
        self,
        refund_id: str,
        lines: Iterable[tuple[str, int]],
        now: datetime,
        amount_for: Callable[[OrderLine, int], int] | None = None,
        kind: str = REFUND_ONLY,
    ) -> Refund:
        if self.status not in (PAID, PARTIALLY_REFUNDED):
            raise Conflict(
                f"order {self.id} is {self.status}; refunds need a paid order"
                + ("; cancel it instead (the deposit follows the shop's rule)" if self.status == DEPOSIT_PAID
                   else ""),
                rule="refund.order_paid", extra={"status": self.status},
            )
        wanted: dict[str, int] = {}
        for i, (sku, qty) in enumerate(lines):
            if not isinstance(qty, int) or qty < 1:
                raise InvalidRequest(f"lines[{i}].qty must be an integer >= 1", field=f"lines[{i}].qty",
                                     rule="refund.qty_positive")
            wanted[sku] = wanted.get(sku, 0) + qty
        if not wanted:
            raise InvalidRequest("a refund needs at least one line", field="lines")
        if kind not in REFUND_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(REFUND_KINDS)}, got {kind!r}", field="kind",
                                 rule="refund.kind")
        refund = Refund(id=refund_id, order_id=self.id, status="requested", created_at=now, kind=kind)
        plan: list[tuple[OrderLine, int]] = []
        for sku, qty in wanted.items():
            line = next((li for li in self.lines if li.sku == sku), None)
            if line is None:
                raise InvalidRequest(
                    f"order {self.id} has no line for sku {sku!r}; refundable skus: "
                    f"{', '.join(li.sku for li in self.lines)}",
                    field="lines.sku", rule="refund.line_in_order", extra={"sku": sku},
                )
            left = line.qty - line.refund_requested_qty
            if qty > left:
                raise InvalidRequest(
                    f"cannot refund {qty} of {sku}: {line.qty} paid, {line.refund_requested_qty} already "
                    f"refunded or requested, so at most {left}",
                    field="lines.qty", rule="refund.qty_within_paid", extra={"sku": sku, "refundable": left},
                )
            plan.append((line, qty))
        amount_for = amount_for or (lambda line, q: line.refund_amount(q))
        for line, qty in plan:
            amount = amount_for(line, qty)
            line.refund_requested_qty += qty
            line.requested_cents += amount
            sub = self.sub_order_of(line)
            refund.lines.append(RefundLine(sub_order_id=sub.id, shop_id=sub.shop_id, sku=line.sku,
                                           qty=qty, amount_cents=amount))
        self.refunds.append(refund)
        for sub_id, shop_id, amount, items in _per_sub_order(refund):
            self.events.append(ev.RefundRequested(
                occurred_at=now, refund_id=refund.id, order_id=self.id, sub_order_id=sub_id, shop_id=shop_id,
                tx_type=self.tx_type, channel=self.channel, amount_cents=amount, items=items,
            ))
        return refund

    def refund(self, refund_id: str) -> Refund:
        for r in self.refunds:
            if r.id == refund_id:
                return r
        raise NotFound(f"order {self.id} has no refund {refund_id}", rule="refund.exists")

    def complete_refund(self, refund_id: str, now: datetime, *, from_status: str = "requested") -> Refund:
        refund = self.refund(refund_id)
        if refund.status != from_status:
            raise Conflict(f"refund {refund_id} is already {refund.status}", rule="refund.requested",
                           extra={"status": refund.status})
        refund.status, refund.completed_at, refund.last_error = "completed", now, None
        for rl in refund.lines:
            line = self.line(rl.sku)
            line.refunded_qty += rl.qty
            line.refunded_cents += rl.amount_cents
            self.events.append(ev.StockReleased(
                occurred_at=now, order_id=self.id, shop_id=rl.shop_id, sku=rl.sku, qty=rl.qty,
                tx_type=self.tx_type, reason="refund",
            ))
        for sub in self.sub_orders:
            sub._refresh_refund_status()
        refunded = sum(line.refunded_qty for line in self.lines)
        total = sum(line.qty for line in self.lines)
        self.status = REFUNDED if refunded == total else PARTIALLY_REFUNDED
        for sub_id, shop_id, amount, items in _per_sub_order(refund):
            self.events.append(ev.RefundCompleted(
                occurred_at=now, refund_id=refund.id, order_id=self.id, sub_order_id=sub_id, shop_id=shop_id,
                tx_type=self.tx_type, channel=self.channel, amount_cents=amount, items=items,
            ))
        return refund

    def _shop_of(self, refund: Refund) -> str:
        return refund.lines[0].shop_id if refund.lines else ""

    def approve_return(self, refund_id: str, now: datetime) -> Refund:
        """A return-of-goods refund approved: it waits for the goods (``mark_goods_received``)."""
        refund = self._decidable(refund_id)
        if refund.kind != RETURN:
            raise Conflict(f"refund {refund_id} is {refund.kind}; it is paid out when approved",
                           rule="refund.kind")
        refund.status, refund.decided_at = "approved", now
        self.events.append(ev.RefundApproved(
            occurred_at=now, refund_id=refund.id, order_id=self.id, shop_id=self._shop_of(refund),
            tx_type=self.tx_type, kind=refund.kind, amount_cents=refund.amount_cents))
        return refund

    def _decidable(self, refund_id: str) -> Refund:
        refund = self.refund(refund_id)
        if refund.status != "requested":
            raise Conflict(f"refund {refund_id} is {refund.status}; only requested refunds can be decided",
                           rule="refund.requested", extra={"status": refund.status})
        return refund

    def reject_refund(self, refund_id: str, reason: str, now: datetime) -> Refund:
        refund = self.refund(refund_id)
        if refund.status not in ("requested", "approved") or refund.goods_received_at is not None:
            raise Conflict(f"refund {refund_id} is {refund.status}; it can no longer be rejected",
                           rule="refund.rejectable", extra={"status": refund.status})
        refund.status, refund.reason, refund.decided_at = "rejected", reason, now
        for rl in refund.lines:  # the quantities become refundable again
            line = self.line(rl.sku)
            line.refund_requested_qty -= rl.qty
            line.requested_cents -= rl.amount_cents
        self.events.append(ev.RefundRejected(
            occurred_at=now, refund_id=refund.id, order_id=self.id, shop_id=self._shop_of(refund),
            tx_type=self.tx_type, kind=refund.kind, amount_cents=refund.amount_cents, reason=reason))
        return refund

    def mark_goods_received(self, refund_id: str, now: datetime) -> Refund:
        refund = self.refund(refund_id)
        if refund.kind != RETURN or refund.status != "approved":
            raise Conflict(
                f"refund {refund_id} is a {refund.kind} refund in state {refund.status}; goods can be marked "
                "received only for an approved return", rule="refund.awaiting_goods",
                extra={"status": refund.status, "kind": refund.kind})
        if refund.goods_received_at is None:
            refund.goods_received_at = now
            self.events.append(ev.ReturnGoodsReceived(
                occurred_at=now, refund_id=refund.id, order_id=self.id, shop_id=self._shop_of(refund),
                tx_type=self.tx_type, items=refund.items))
        return refund

    # ---------------------------------------------------------------- delivery
    def sub_order(self, sub_order_id: str) -> SubOrder:
        for s in self.sub_orders:
            if s.id == sub_order_id:
                return s
        raise NotFound(f"order {self.id} has no sub-order {sub_order_id}", field="sub_order_id",
                       rule="sub_order.exists")

    def _sub_event(self, sub: SubOrder, now: datetime) -> dict:
        return dict(occurred_at=now, order_id=self.id, sub_order_id=sub.id, shop_id=sub.shop_id,
                    tx_type=self.tx_type, channel=self.channel, warehouse_id=sub.warehouse_id)

    def ship(self, sub_order_id: str, carrier: str, tracking_no: str, now: datetime,
             shippable: tuple[str, ...] = (PAID, PARTIALLY_REFUNDED, CONFIRMED)) -> SubOrder:
        sub = self.sub_order(sub_order_id)
        if sub.status not in shippable:
            raise Conflict(
                f"sub-order {sub.id} is {sub.status}; only {' or '.join(shippable)} sub-orders ship",
                           rule="delivery.shippable", extra={"status": sub.status})
        if sub.delivery_status != NOT_SHIPPED:
            raise Conflict(
                f"sub-order {sub.id} is already {sub.delivery_status}", rule="delivery.not_shipped",
                           extra={"delivery_status": sub.delivery_status})
        sub.delivery_status, sub.carrier, sub.tracking_no, sub.shipped_at = SHIPPED, carrier, tracking_no, now
        self.events.append(ev.SubOrderShipped(**self._sub_event(sub, now), carrier=carrier,
                                              tracking_no=tracking_no))
        return sub

    def deliver(self, sub_order_id: str, now: datetime, collected: bool | None = None) -> SubOrder:
        sub = self.sub_order(sub_order_id)
        if sub.delivery_status != SHIPPED:
            raise Conflict(
                f"sub-order {sub.id} is {sub.delivery_status}; only shipped sub-orders are delivered",
                           rule="delivery.shipped", extra={"delivery_status": sub.delivery_status})
        sub.delivery_status, sub.delivered_at = DELIVERED, now
        self.events.append(ev.SubOrderDelivered(**self._sub_event(sub, now), collected=collected))
        return sub

    def receive(self, sub_order_id: str, now: datetime, *, auto: bool = False) -> SubOrder:
        sub = self.sub_order(sub_order_id)
        if sub.delivery_status != DELIVERED:
            raise Conflict(
                f"sub-order {sub.id} is {sub.delivery_status}; only delivered sub-orders are received",
                           rule="delivery.delivered", extra={"delivery_status": sub.delivery_status})
        sub.delivery_status, sub.received_at = RECEIVED, now
        self.events.append(ev.SubOrderReceived(**self._sub_event(sub, now), auto=auto))
        return sub

    def fail_refund(self, refund_id: str, reason: str) -> Refund:
        refund = self.refund(refund_id)
        refund.last_error = reason
        return refund


def _per_sub_order(refund: Refund) -> list[tuple[str, str, int, int]]:
    acc: dict[str, list] = {}
    for rl in refund.lines:
        row = acc.setdefault(rl.sub_order_id, [rl.sub_order_id, rl.shop_id, 0, 0])
        row[2] += rl.amount_cents
        row[3] += rl.qty
    return [tuple(r) for r in acc.values()]  # type: ignore[misc]
