"""Application services of the trading core (``TradingService``).

Each use case runs in a unit of work that commits everything or nothing: the
order, its stock reservation, its purchase-limit counters and its events. Events
are collected from the aggregates and published only after the commit.

Payment runs in two short transactions around the gateway call, so no database
lock is held while the gateway is slow:

1. ``begin_payment`` records a *pending* payment (a second concurrent ``pay``
   gets a 409 ``order.single_payment``);
2. the gateway is charged through ``guard(payment.charge, fallback=...)``;
3. the outcome is recorded: success → order ``paid`` and the reserved stock
   becomes sold; failure → ``PaymentFailed`` event, the order stays
   ``pending_payment`` (payable again until its deadline) and ``pay_order``
   raises ``errors.PaymentFailed`` (HTTP 402).
   A charge the guard *degraded* with ``ChargeResult(queued=True)`` leaves the payment
   ``queued`` (HTTP 202); ``retry_queued_payments`` charges it later (see domain/README.md).

Guarded resources (``domain.ports``): ``order.place`` (whole placement),
``inventory.reserve`` (per SKU line), ``order.pay`` (whole payment),
``payment.charge`` (gateway call, with a fallback that turns a block into a
failed payment, unless the degrade rule's fallback queues it), ``refund.request``, ``order.get``.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from domain import errors
from domain import events as ev
from domain.capabilities import LineRequest, OrderContext, PricedLine, TxTypeRegistry, default_registry
from domain.capabilities.registry import TransactionType
from domain.commands import LineItem, PlaceOrder
from domain.events import DomainEvent, PaymentSucceeded
from domain.events import PaymentFailed as PaymentFailedEvent
from domain.model import (
    CHANNELS,
    DEPOSIT_PAID,
    PAID,
    PENDING,
    RETURN,
    Address,
    Catalog,
    Order,
    OrderLine,
    Payment,
    Product,
    Promotion,
    Region,
    Shop,
    SubOrder,
    warehouse_of,
)
from domain.model.auction import AWARDED as AUCTION_AWARDED
from domain.model.auction import SOLD, UNSOLD, Auction, Bid
from domain.ports import (
    INVENTORY_RESERVE,
    ORDER_GET,
    ORDER_PAY,
    ORDER_PLACE,
    PAYMENT_CHARGE,
    REFUND_REQUEST,
    AddressBook,
    ChargeResult,
    Clock,
    EventPublisher,
    Guard,
    NoopGuard,
    NullPublisher,
    PaymentGateway,
    SystemClock,
)
from domain.storage import UnitOfWork, UnitOfWorkFactory
from domain.views import AuctionView, BidView, OrderView, ProductView, RefundView, ShopView, shop_view

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_LINES = 50
MAX_QTY = 999


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass
class _Plan:
    order_id: str
    now: datetime
    priced: list[PricedLine]
    sub_orders: list[SubOrder]
    terms: dict[str, Any]


class _Outcome:
    __slots__ = ("refusal", "value")

    def __init__(self, value: Any = None, refusal: errors.DomainError | None = None) -> None:
        self.value = value
        self.refusal = refusal


class _Declined(Exception):
    def __init__(self, result: ChargeResult) -> None:
        super().__init__(result.reason or "declined")
        self.result = result


class _GatewayError(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Heads:
    """(buyer, first shop) of orders this service placed or looked up — the guard arguments of a
    payment. They never change, so a payment of a known order needs no read for them. Bounded: the
    oldest entry goes first."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._items: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def get(self, order_id: str) -> tuple[str, str] | None:
        return self._items.get(order_id)

    def put(self, order_id: str, head: tuple[str, str]) -> None:
        with self._lock:
            self._items[order_id] = head
            if len(self._items) > self._size:
                del self._items[next(iter(self._items))]


class TradingService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        gateway: PaymentGateway,
        *,
        guard: Guard | None = None,
        publisher: EventPublisher | None = None,
        clock: Clock | None = None,
        payment_timeout: timedelta = timedelta(minutes=15),
        registry: TxTypeRegistry | None = None,
        payment_stale_after: timedelta = timedelta(seconds=60),
        queued_payment_grace: timedelta = timedelta(minutes=5),
        retries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        addresses: AddressBook | None = None,
        instance: str | None = None,
    ) -> None:
        """``addresses``: the address library (default: ``domain.regions.default_library()``, ISO 3166
        via pycountry plus the per-country data files). ``instance``: this node's name, recorded on
        its payment events (per-node payment series)."""
        self.instance = instance
        self.uow_factory = uow_factory
        self.gateway = gateway
        self.guard = guard or NoopGuard()
        self.publisher = publisher or NullPublisher()
        self.clock = clock or SystemClock()
        self.payment_timeout = payment_timeout
        self.registry = registry or default_registry()
        self.payment_stale_after = payment_stale_after
        self.queued_payment_grace = queued_payment_grace
        self.retries = retries
        self._sleep = sleep
        if addresses is None:
            from domain.regions import default_library
            addresses = default_library()
        self.addresses = addresses
        self._heads = _Heads()

    # ---------------------------------------------------------------- plumbing
    def _transact(self, fn: Callable[[UnitOfWork], T], *, readonly: bool = False) -> T:
        """Run ``fn`` in a fresh unit of work, commit, publish its events; retry transient store errors."""
        for attempt in range(self.retries + 1):
            try:
                with self.uow_factory(readonly=readonly) as uow:
                    result = fn(uow)
                    if readonly:
                        return result
                    uow.commit()
                    events = uow.collect_new_events()
                self._publish(events)
                return result
            except errors.DuplicateKey:
                raise  # not a hiccup: the caller decides (place_order replays the winner's order)
            except errors.TransientStoreError as exc:
                if attempt >= self.retries:
                    raise errors.StoreUnavailable(
                        f"the trading store stayed busy after {attempt + 1} attempts ({exc}); retry shortly",
                        rule="store.available",
                    ) from exc
                log.debug("transient store error (%s), retry %d", exc, attempt + 1)
                self._sleep(min(0.005 * 2**attempt, 0.2) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _guarded(self, resource: str, call: Callable[[], T], *, args: Mapping[str, Any],
                 fallback: Callable[[BaseException], T] | None = None) -> T:
        """``guard.guard`` where a business refusal (out of stock, limit, conflict…) is an *outcome*.

        A guard counts exceptions raised by the call as errors (breakers open on error ratios);
        a refused order is not a failure of the capability, so it travels past the guard as a value
        and is raised again here. ``StoreUnavailable`` and anything unexpected stay errors.
        """
        def inner() -> _Outcome:
            try:
                return _Outcome(value=call())
            except errors.StoreUnavailable:
                raise
            except errors.DomainError as exc:
                return _Outcome(refusal=exc)

        wrapped_fallback = (lambda exc: _Outcome(value=fallback(exc))) if fallback is not None else None
        out = self.guard.guard(resource, inner, args=args, fallback=wrapped_fallback)
        if not isinstance(out, _Outcome):  # a guard that answered on its own
            return out
        if out.refusal is not None:
            raise out.refusal
        return out.value

    def _publish(self, events: list[DomainEvent]) -> None:
        if events:
            try:
                self.publisher.publish(events)
            except Exception:  # a metric hook must never undo a committed order
                log.exception("publishing %d events failed", len(events))

    def _load(self, uow: UnitOfWork, order_id: str) -> Order:
        order = uow.orders.get(order_id)
        if order is None:
            raise errors.NotFound(f"order {order_id!r} does not exist", field="order_id", rule="order.exists")
        return order

    # ------------------------------------------------------------- place order
    def place_order(self, cmd: PlaceOrder) -> OrderView:
        tx = self._validate(cmd)
        address = cmd.address if isinstance(cmd.address, Address) else self._address(cmd.address)
        if address.region is None:
            address = self.addresses.normalize(address)
        requests = self._merge_lines(cmd)
        fingerprint = cmd.fingerprint()
        args: dict[str, Any] = {"buyer": cmd.buyer_id, "sku": tuple(dict.fromkeys(r.sku for r in requests))}
        return self._guarded(
            ORDER_PLACE,
            lambda: self._place(cmd, tx, address, requests, fingerprint),
            args=args,
        )

    def _validate(self, cmd: PlaceOrder) -> TransactionType:
        if not isinstance(cmd.buyer_id, str) or not cmd.buyer_id.strip() or len(cmd.buyer_id) > 64:
            raise errors.InvalidRequest("buyer_id must be a non-empty string of at most 64 characters",
                                        field="buyer_id")
        if not isinstance(cmd.idempotency_key, str) or not cmd.idempotency_key.strip() \
                or len(cmd.idempotency_key) > 128:
            raise errors.InvalidRequest(
                "idempotency_key must be a non-empty string of at most 128 characters",
                                        field="idempotency_key")
        if cmd.channel not in CHANNELS:
            raise errors.InvalidRequest(f"channel must be one of {', '.join(CHANNELS)}, got {cmd.channel!r}",
                                        field="channel", extra={"allowed": list(CHANNELS)})
        tx = self.registry.get(cmd.tx_type)
        if not cmd.lines:
            raise errors.InvalidRequest("lines must hold at least one {sku, qty}", field="lines")
        if len(cmd.lines) > MAX_LINES:
            raise errors.InvalidRequest(f"at most {MAX_LINES} lines per order", field="lines")
        for i, li in enumerate(cmd.lines):
            if not isinstance(li.sku, str) or not li.sku:
                raise errors.InvalidRequest("sku must be a non-empty string", field=f"lines[{i}].sku")
            if isinstance(li.qty, bool) or not isinstance(li.qty, int) or not 1 <= li.qty <= MAX_QTY:
                raise errors.InvalidRequest(
                    f"lines[{i}].qty must be an integer from 1 to {MAX_QTY}, got {li.qty!r}",
                    field=f"lines[{i}].qty", rule="qty.range", extra={"min": 1, "max": MAX_QTY},
                )
        return tx

    @staticmethod
    def _address(data: Mapping[str, str]) -> Address:
        missing = [k for k in ("country", "province", "city", "district", "street", "recipient", "phone")
                   if k not in data]
        if missing:
            raise errors.InvalidRequest(f"address.{missing[0]} is required", field=f"address.{missing[0]}")
        postal = data.get("postal_code")
        return Address(**{k: data[k] for k in ("country", "province", "city", "district", "street",
                                               "recipient", "phone")}, postal_code=postal)

    @staticmethod
    def _merge_lines(cmd: PlaceOrder) -> list[LineRequest]:
        merged: dict[str, LineRequest] = {}
        for i, li in enumerate(cmd.lines):
            prev = merged.get(li.sku)
            qty = li.qty + (prev.qty if prev else 0)
            merged[li.sku] = LineRequest(li.sku, qty, prev.index if prev else i)
        for req in merged.values():
            if req.qty > MAX_QTY:
                raise errors.InvalidRequest(f"sku {req.sku}: total qty must be at most {MAX_QTY}",
                                            field=f"lines[{req.index}].qty", rule="qty.range")
        return list(merged.values())

    def _place(self, cmd: PlaceOrder, tx: TransactionType, address: Address, requests: list[LineRequest],
               fingerprint: str) -> OrderView:
        """Price in a read-only unit of work, then reserve and write in a short writing one.

        Keeping catalog reads and pricing out of the writing transaction halves the time it holds
        SQLite's single write lock (and PostgreSQL row locks). The idempotency key is re-checked
        by the database: UNIQUE(buyer_id, idempotency_key) turns a concurrent duplicate into
        ``DuplicateKey``, and the loser starts over, finding the winner's order.
        """
        for _ in range(self.retries + 1):
            plan = self._transact(lambda uow: self._plan(uow, cmd, tx, requests, fingerprint, address),
                                  readonly=True)
            if isinstance(plan, OrderView):
                return plan
            try:
                view = self._transact(lambda uow, plan=plan: self._reserve_and_add(
                    uow, cmd, tx, address, fingerprint, plan))
                self._heads.put(view.id, (view.buyer_id, view.sub_orders[0].shop_id))
                return view
            except errors.DuplicateKey:
                log.debug("idempotency key %r taken concurrently; replaying", cmd.idempotency_key)
        raise errors.StoreUnavailable("the order could not be placed after repeated key races; retry",
                                      rule="store.available")

    def _plan(self, uow: UnitOfWork, cmd: PlaceOrder, tx: TransactionType, requests: list[LineRequest],
              fingerprint: str, address: Address | None = None) -> OrderView | _Plan:
        existing = uow.orders.get_by_idempotency_key(cmd.buyer_id, cmd.idempotency_key)
        if existing is not None:
            if existing.request_hash != fingerprint:
                raise errors.IdempotencyConflict(
                    f"idempotency_key {cmd.idempotency_key!r} was already used by buyer {cmd.buyer_id} for "
                    f"order {existing.id} with a different body; use a new key for a new order",
                    field="idempotency_key", extra={"order_id": existing.id},
                )
            return OrderView.of(existing, replayed=True)
        now = self.clock.now()
        catalog = uow.catalog.for_order(r.sku for r in requests)
        products = catalog.products
        for r in requests:
            if r.sku not in products:
                raise errors.UnknownSku(
                    f"sku {r.sku!r} is not in the catalog; see GET /shops/{{id}}/products",
                    field=f"lines[{r.index}].sku", extra={"sku": r.sku})
        shop_ids = sorted({p.shop_id for p in products.values()})
        promos = [p for p in uow.catalog.promotions(shop_ids, list(products)) if p.active(now)]
        stock = catalog.stock
        province = address.region.province_code if address is not None and address.region else None
        distance = {w.id: self.addresses.distance(province, w.province_code) for w in catalog.warehouses}
        shops = catalog.shops
        ctx = OrderContext(tx_type=tx.name, buyer_id=cmd.buyer_id, channel=cmd.channel, now=now,
                           products=products, promotions=promos, quantities={r.sku: r.qty for r in requests},
                           stock=stock, warehouse_distance=distance, shops=shops, extra=dict(cmd.extra))
        priced = []
        for r in requests:
            product = products[r.sku]
            priced.append(PricedLine(
                request=r, product=product, unit_price_cents=tx.pricing.unit_price(ctx, r, product),
                pool=tx.inventory.pool(ctx, product), limit=tx.purchase_limit.rule(ctx, product),
            ))
        sub_orders = []
        for shop_id, shop_lines in tx.split.split(priced).items():
            for line, d in zip(shop_lines, tx.discount.discounts(ctx, shop_id, shop_lines), strict=True):
                line.promo_discount_cents = min(d, line.subtotal_cents)
            by_warehouse: dict[str | None, list[PricedLine]] = {}  # then one sub-order per shipping warehouse
            for line in shop_lines:
                by_warehouse.setdefault(warehouse_of(line.pool), []).append(line)
            sub_orders.extend(self._sub_order(shop_id, wid, lines) for wid, lines in by_warehouse.items())
        terms_of = getattr(tx.payment, "terms", None)  # optional hooks: a charge-only policy still plugs in
        terms = terms_of(ctx, sub_orders) if terms_of is not None else {}
        return _Plan(order_id=new_id("o"), now=now, priced=priced, sub_orders=sub_orders, terms=terms)

    @staticmethod
    def _sub_order(shop_id: str, warehouse_id: str | None, lines: list[PricedLine]) -> SubOrder:
        return SubOrder(id=new_id("so"), shop_id=shop_id, status=PENDING, warehouse_id=warehouse_id, lines=[
                OrderLine(
                    sku=li.sku, shop_id=shop_id, name=li.product.name, qty=li.qty,
                    list_price_cents=li.product.price_cents, unit_price_cents=li.unit_price_cents,
                    discount_cents=(li.product.price_cents - li.unit_price_cents) * li.qty
                    + li.promo_discount_cents,
                    amount_cents=li.subtotal_cents - li.promo_discount_cents, pool=li.pool,
                    limit_key=li.limit.key if li.limit else None,
                ) for li in lines
            ])

    def _reserve_and_add(self, uow: UnitOfWork, cmd: PlaceOrder, tx: TransactionType, address: Address,
                         fingerprint: str, plan: _Plan) -> OrderView:
        # Fixed lock order everywhere — limit counters, then stock rows, each by SKU, then the order
        # row — keeps PostgreSQL deadlock-free.
        ordered = sorted(plan.priced, key=lambda li: li.sku)
        for li in ordered:
            tx.purchase_limit.consume(uow, cmd.buyer_id, li)
        for li in ordered:
            self._guarded(
                INVENTORY_RESERVE, lambda li=li: tx.inventory.reserve(uow, li),
                args={"shop": li.shop_id, "sku": li.sku, "buyer": cmd.buyer_id},
            )
        order = Order.place(
            order_id=plan.order_id, buyer_id=cmd.buyer_id, tx_type=tx.name, channel=cmd.channel,
            address=address, idempotency_key=cmd.idempotency_key, request_hash=fingerprint,
            sub_orders=[replace(s, lines=[copy.copy(li) for li in s.lines]) for s in plan.sub_orders],
            now=plan.now, expires_at=tx.timeout.deadline(plan.now, self.payment_timeout),
            terms=copy.deepcopy(plan.terms) if plan.terms else {},
        )
        placed = getattr(tx.payment, "placed", None)
        if placed is not None:
            placed(order, plan.now)
        uow.orders.add(order)
        log.debug("placed order %s (%d sub-orders, %d cents)", order.id, len(order.sub_orders),
                  order.amount_cents)
        return OrderView.of(order)

    # --------------------------------------------------------------------- pay
    def pay_order(self, order_id: str, stage: str | None = None) -> OrderView:
        """Pay the order (a presale order: the stage due; ``stage``, when given, must name it)."""
        def head(uow: UnitOfWork) -> tuple[str, str]:
            found = uow.orders.head(order_id)
            if found is None:
                raise errors.NotFound(f"order {order_id!r} does not exist", field="order_id",
                                      rule="order.exists")
            return found

        found = self._heads.get(order_id)
        if found is None:
            found = self._transact(head, readonly=True)
            self._heads.put(order_id, found)
        buyer, shop = found
        args = {"buyer": buyer, "shop": shop}
        return self._guarded(ORDER_PAY, lambda: self._pay(order_id, args, stage), args=args)

    def _pay(self, order_id: str, args: dict[str, str], stage: str | None = None) -> OrderView:
        new_payment_id = new_id("pay")

        def begin(uow: UnitOfWork) -> tuple[Order, str]:
            order = self._load(uow, order_id)
            order.require_stage(stage)
            payment = order.begin_payment(new_payment_id, self.clock.now(), self.payment_stale_after,
                                          self.queued_payment_grace)
            uow.orders.save(order)
            return order, payment.id  # a queued payment is taken over under its own id

        order, payment_id = self._transact(begin)
        order, payment = self._charge_and_record(order, payment_id, args)
        if payment.status == "queued":
            log.info("payment %s of order %s queued (%s)", payment_id, order_id, payment.reason)
            return OrderView.of(order)
        if payment.status != "succeeded":
            raise errors.PaymentFailed(
                f"payment of order {order_id} failed ({payment.reason}); the order stays payable until "
                f"{order.expires_at.isoformat() if order.expires_at else 'cancelled'} — retry POST /orders/"
                f"{order_id}/pay", extra={"order_id": order_id, "reason": payment.reason,
                                          "payment_id": payment_id},
            )
        return OrderView.of(order)

    def _charge_and_record(self, order: Order, payment_id: str, args: Mapping[str, str], *,
                           retrying: bool = False) -> tuple[Order, Payment]:
        """Charge the *pending* payment ``payment_id`` through ``guard(payment.charge)`` and record the
        outcome in a second short unit of work: succeeded (order paid, reserved stock sold), failed,
        or queued — the guard degraded the charge with a ``ChargeResult(queued=True)`` (the
        ``queue_payment`` fallback), or, when ``retrying`` a queued payment, refused it without a
        fallback. Returns the order and the payment as recorded."""
        tx = self.registry.get(order.tx_type)

        def charge() -> ChargeResult:
            try:
                result = tx.payment.charge(self.gateway, order, payment_id)
            except Exception as exc:  # the gateway's own failure (counted by the guard as an error)
                raise _GatewayError(exc) from exc
            if not result.ok:
                raise _Declined(result)
            return result

        def fallback(exc: BaseException) -> ChargeResult:
            if isinstance(exc, _Declined):
                return exc.result
            return ChargeResult(ok=False, reason=f"payment degraded: {type(exc).__name__}: {exc}".strip())

        started = time.perf_counter()
        refused: Exception | None = None  # the guard's own refusal, re-raised for the HTTP layer (429/503)
        try:
            result = self.guard.guard(PAYMENT_CHARGE, charge, args=args, fallback=fallback)
        except _Declined as exc:
            result = exc.result
        except _GatewayError as exc:
            log.warning("payment gateway error for order %s: %s", order.id, exc.error)
            result = ChargeResult(ok=False, reason=f"gateway error: {type(exc.error).__name__}: {exc.error}")
        except Exception as exc:  # the guard itself refused (blocked without a fallback)
            log.warning("payment.charge refused for order %s: %s", order.id, exc)
            if retrying:
                result = ChargeResult(ok=False, queued=True,
                                      reason=f"payment queued: still blocked ({type(exc).__name__}: {exc})")
            else:
                refused = exc
                result = ChargeResult(ok=False, reason=f"payment.charge refused: {type(exc).__name__}: {exc}")
        latency_ms = (time.perf_counter() - started) * 1000.0
        if result.queued and result.ok:  # a fallback that says both: trust "not charged" over "ok"
            result = ChargeResult(ok=False, queued=True, reason=result.reason)

        # The order as the payment's first unit of work saved it: the first attempt records the outcome
        # on it without reading it again; its save is version-checked, so if anything changed the order
        # meanwhile the attempt is rolled back and the next one reads the order afresh.
        known = [order]

        def finish(uow: UnitOfWork) -> tuple[Order, Payment]:
            as_saved = known.pop() if known else None
            o = uow.orders.track(as_saved) if as_saved is not None else self._load(uow, order.id)
            try:
                p = o.complete_payment(payment_id, ok=result.ok, reference=result.reference,
                                       reason=result.reason, latency_ms=latency_ms, now=self.clock.now(),
                                       queued=result.queued)
                if self.instance:  # name the charging node on its payment events
                    paid = PaymentSucceeded | PaymentFailedEvent
                    o.events[:] = [replace(e, instance=self.instance)
                                   if isinstance(e, paid) and not e.instance else e for e in o.events]
                if p.status == "succeeded" and o.status == PAID:  # (a presale deposit keeps stock reserved)
                    for line in sorted(o.lines, key=lambda li: (li.sku, li.pool)):  # lock order: see _place
                        self.registry.get(o.tx_type).inventory.commit_sale(uow, line)
                uow.orders.save(o)
            except (errors.DomainError, RuntimeError) as exc:
                if as_saved is None:
                    raise
                # a refusal or a stock mismatch on the state as saved: it moved on; retry on the stored one
                raise errors.ConcurrentUpdate(f"order {order.id} changed while it was charged") from exc
            return o, p

        try:
            done, payment = self._transact(finish)
        except errors.Conflict:
            if result.ok and result.reference:  # charged after the attempt was abandoned: give it back
                self._reverse_charge(order, payment_id, result.reference)
            raise
        if payment.status != "succeeded" and result.ok and result.reference:
            # charged, but the order stopped being payable meanwhile
            self._reverse_charge(done, payment_id, result.reference)
        if refused is not None:  # recorded as failed (the order stays payable); the caller sees the block
            raise refused
        return done, payment

    # ------------------------------------------------------- queued payments
    def retry_queued_payments(self, limit: int = 100) -> int:
        """Charge queued payments again through ``guard(payment.charge)``; returns how many settled.

        Each queued payment is first *claimed* (queued → pending) in its own unit of work: the
        order's version check and the payment row's ``UPDATE … WHERE status = 'queued'`` let only one
        claimer win, so two nodes running this job never charge a payment twice (the loser sees it
        pending and skips it). Then: succeeded → order paid (``PaymentSucceeded`` + ``OrderPaid``);
        declined or gateway error → ``PaymentFailed``, the order payable again until its deadline;
        still blocked (the fallback queued it again, or the guard refused) → back to ``queued``, and
        the run stops there (the rest would be blocked too). A queued payment past the order's
        deadline plus ``queued_payment_grace`` is not retried: the timeout job cancels the order.
        """
        queued = self._transact(lambda uow: uow.orders.queued_payments(limit), readonly=True)
        settled = requeued = skipped = 0
        for order_id, payment_id in queued:
            def claim(uow: UnitOfWork, order_id: str = order_id,
                      payment_id: str = payment_id) -> Order | None:
                order = uow.orders.get(order_id)
                if order is None or not order.claim_queued_payment(payment_id, self.clock.now(),
                                                                   self.queued_payment_grace):
                    return None
                uow.orders.save(order)
                return order

            try:
                order = self._transact(claim)
            except errors.DomainError as exc:
                log.warning("could not claim queued payment %s of order %s: %s", payment_id, order_id, exc)
                order = None
            if order is None:
                skipped += 1
                continue
            args = {"buyer": order.buyer_id, "shop": order.sub_orders[0].shop_id if order.sub_orders else ""}
            try:
                _, payment = self._charge_and_record(order, payment_id, args, retrying=True)
            except errors.DomainError as exc:
                log.warning("retry of queued payment %s of order %s: %s", payment_id, order_id, exc)
                continue
            if payment.status == "queued":
                requeued += 1
                break
            settled += 1
        if queued:
            log.info("queued payments: %d settled, %d still blocked, %d skipped (of %d queued)",
                     settled, requeued, skipped, len(queued))
        return settled

    def _reverse_charge(self, order: Order, payment_id: str, reference: str) -> None:
        try:
            self.gateway.refund(f"rev_{payment_id}", reference, order.amount_cents)
        except Exception:
            log.exception("could not reverse charge %s of order %s", reference, order.id)

    # ------------------------------------------------------------------ cancel
    def cancel_order(self, order_id: str, reason: str = "buyer") -> OrderView:
        def run(uow: UnitOfWork) -> OrderView:
            order = self._load(uow, order_id)
            self._cancel(uow, order, reason)
            return OrderView.of(order)

        return self._transact(run)

    def _cancel(self, uow: UnitOfWork, order: Order, reason: str) -> None:
        deposit_paid = order.status == DEPOSIT_PAID
        refundable = bool((order.presale or {}).get("deposit_refundable"))
        order.cancel(reason, self.clock.now(), self.payment_stale_after, deposit_refundable=refundable)
        if deposit_paid and refundable:
            self._refund_deposit(order)
        tx = self.registry.get(order.tx_type)
        for line in sorted(order.lines, key=lambda li: li.sku):
            tx.purchase_limit.release(uow, order.buyer_id, line)
        for line in sorted(order.lines, key=lambda li: li.sku):
            tx.inventory.release(uow, line)
        uow.orders.save(order)

    def _refund_deposit(self, order: Order) -> None:
        """The shop's rule returns a presale deposit: paid back through the gateway (idempotent by id)."""
        dep = order.deposit_payment()
        if dep is None:
            return
        try:
            result = self.gateway.refund(f"dep_{order.id}", dep.reference or dep.id, dep.amount_cents)
            if not result.ok:
                log.warning("deposit refund of order %s declined: %s", order.id, result.reason)
        except Exception:
            log.exception("deposit refund of order %s failed", order.id)

    def forfeit_presales(self, limit: int = 500) -> int:
        """Presale orders whose balance window closed unpaid: cancelled, stock and quota released, the
        deposit forfeited or returned by the shop's rule (``Shop.presale_deposit_refundable``). A node
        job; returns how many lapsed."""
        now = self.clock.now()
        ids = self._transact(lambda uow: uow.orders.lapsed_presale_ids(now, limit), readonly=True)
        lapsed = 0
        for order_id in ids:
            def run(uow: UnitOfWork, order_id: str = order_id) -> Order | None:
                order = uow.orders.get(order_id)
                if order is None or order.status != DEPOSIT_PAID or order.expires_at is None \
                        or order.expires_at > self.clock.now() or order.pending_payment is not None:
                    return None
                refundable = bool((order.presale or {}).get("deposit_refundable"))
                order.lapse_presale(self.clock.now(), refundable)
                tx = self.registry.get(order.tx_type)
                for line in sorted(order.lines, key=lambda li: li.sku):
                    tx.purchase_limit.release(uow, order.buyer_id, line)
                for line in sorted(order.lines, key=lambda li: li.sku):
                    tx.inventory.release(uow, line)
                uow.orders.save(order)
                return order

            try:
                done = self._transact(run)
            except errors.DomainError as exc:
                log.warning("could not lapse presale order %s: %s", order_id, exc)
                continue
            if done is not None:
                lapsed += 1
                if (done.presale or {}).get("deposit_refundable"):
                    self._refund_deposit(done)
        return lapsed

    def cancel_expired(self, limit: int = 500) -> int:
        """Cancel unpaid orders past their deadline (releasing stock); returns how many were cancelled.

        An order whose payment is *queued* (the charge was degraded) is due only
        ``queued_payment_grace`` after its deadline; then its queued payment is dropped with it.
        """
        now = self.clock.now()
        grace = self.queued_payment_grace
        ids = self._transact(lambda uow: uow.orders.expired_ids(now, limit, grace), readonly=True)
        cancelled = 0
        for order_id in ids:
            def run(uow: UnitOfWork, order_id: str = order_id) -> bool:
                order = uow.orders.get(order_id)
                deadline = order.payment_deadline(grace) if order is not None else None
                if order is None or order.status != PENDING or deadline is None \
                        or deadline > self.clock.now():
                    return False
                try:
                    self._cancel(uow, order, "timeout")
                except errors.Conflict:  # payment in flight: leave it to the payment outcome
                    return False
                return True

            try:
                cancelled += self._transact(run)
            except errors.DomainError as exc:
                log.warning("could not cancel expired order %s: %s", order_id, exc)
        if ids:
            log.info("timeout cancellation: %d of %d expired orders cancelled", cancelled, len(ids))
        return cancelled

    # ----------------------------------------------------------------- refunds
    def request_refund(self, order_id: str, lines: Iterable[Any], kind: str = "refund_only") -> RefundView:
        """A refund request (``refund_only``, or ``return`` of goods); it waits for the merchant's
        decision. Refused (409 ``refund.window``) after the shop's refund window: ``refund_window_days``
        after the sub-order's receipt (or delivery, or else the payment)."""
        wanted = _refund_lines(lines)

        def run(uow: UnitOfWork) -> RefundView:
            order = self._load(uow, order_id)
            tx = self.registry.get(order.tx_type)
            sku = wanted[0][0] if wanted else ""
            shop = next((li.shop_id for li in order.lines if li.sku == sku), "")
            self._check_refund_window(uow, order, [s for s, _ in wanted])
            if kind == RETURN:
                for s, _ in wanted:
                    line = next((li for li in order.lines if li.sku == s), None)
                    if line is not None and order.sub_order_of(line).shipped_at is None:
                        raise errors.Conflict(
                            f"sku {s} has not been shipped; request a refund_only refund instead of a return",
                            field="kind", rule="refund.return_needs_shipment", extra={"sku": s})
            refund = self._guarded(
                REFUND_REQUEST,
                lambda: order.request_refund(new_id("rf"), wanted, self.clock.now(),
                                             _refund_amount(tx, order), kind=kind),
                args={"buyer": order.buyer_id, "shop": shop, "sku": sku},
            )
            uow.orders.save(order)
            return RefundView.of(refund)

        return self._transact(run)

    def _check_refund_window(self, uow: UnitOfWork, order: Order, skus: list[str]) -> None:
        now = self.clock.now()
        paid = order.paid_payment
        for sku in skus:
            line = next((li for li in order.lines if li.sku == sku), None)
            if line is None:
                continue  # the model names the unknown line
            sub = order.sub_order_of(line)
            shop = uow.catalog.shop(sub.shop_id)
            start = sub.received_at or sub.delivered_at or (paid.finished_at if paid else None)
            if shop is None or start is None:
                continue
            closes = start + timedelta(days=shop.refund_window_days)
            if now > closes:
                raise errors.Conflict(
                    f"the refund window of {shop.name} ({shop.refund_window_days} days) for sku {sku} closed "
                    f"at {closes.isoformat()}", field="lines", rule="refund.window",
                    extra={"sku": sku, "window_closed_at": closes.isoformat()})

    def _order_of_refund(self, uow: UnitOfWork, refund_id: str) -> Order:
        oid = uow.orders.order_id_for_refund(refund_id)
        if oid is None:
            raise errors.NotFound(f"refund {refund_id!r} does not exist", field="refund_id",
                                  rule="refund.exists")
        return self._load(uow, oid)

    def complete_refund(self, refund_id: str) -> RefundView:
        """Pay out a requested refund-only refund (the merchant's approval and payout in one step)."""
        return self._pay_out(refund_id, "requested")

    def approve_refund(self, refund_id: str) -> RefundView:
        """Merchant approval: a refund-only refund is paid out now; a return waits for the goods."""
        order = self._transact(lambda uow: self._order_of_refund(uow, refund_id), readonly=True)
        if order.refund(refund_id).kind != RETURN:
            return self._pay_out(refund_id, "requested")

        def run(uow: UnitOfWork) -> RefundView:
            o = self._order_of_refund(uow, refund_id)
            r = o.approve_return(refund_id, self.clock.now())
            uow.orders.save(o)
            return RefundView.of(r)

        return self._transact(run)

    def reject_refund(self, refund_id: str, reason: str) -> RefundView:
        if not isinstance(reason, str) or not reason.strip():
            raise errors.InvalidRequest("reason must be a non-empty string", field="reason")

        def run(uow: UnitOfWork) -> RefundView:
            o = self._order_of_refund(uow, refund_id)
            r = o.reject_refund(refund_id, reason.strip(), self.clock.now())
            uow.orders.save(o)
            return RefundView.of(r)

        return self._transact(run)

    def receive_returned_goods(self, refund_id: str) -> RefundView:
        """The returned goods are back: the refund is paid out, the units restocked where they came from."""
        def mark(uow: UnitOfWork) -> None:
            o = self._order_of_refund(uow, refund_id)
            o.mark_goods_received(refund_id, self.clock.now())
            uow.orders.save(o)

        self._transact(mark)
        return self._pay_out(refund_id, "approved")

    def _pay_out(self, refund_id: str, from_status: str) -> RefundView:
        order = self._transact(lambda uow: self._order_of_refund(uow, refund_id), readonly=True)
        refund = order.refund(refund_id)
        if refund.status != from_status:
            raise errors.Conflict(f"refund {refund_id} is {refund.status}, not {from_status}",
                                  rule=f"refund.{from_status}", extra={"status": refund.status})
        if refund.kind == RETURN and refund.goods_received_at is None:
            raise errors.Conflict(f"refund {refund_id} is a return; approve it, then mark the goods received "
                                  f"(POST /refunds/{refund_id}/goods-received)", rule="refund.awaiting_goods")
        paid = order.paid_payment
        tx = self.registry.get(order.tx_type)
        try:
            result = tx.refund.refund(self.gateway, refund_id, paid.reference or paid.id if paid else "",
                                      refund.amount_cents)
        except Exception as exc:
            result = ChargeResult(ok=False, reason=f"gateway error: {type(exc).__name__}: {exc}")

        def finish(uow: UnitOfWork) -> RefundView:
            o = self._load(uow, order.id)
            if not result.ok:
                r = o.fail_refund(refund_id, result.reason or "declined")
                uow.orders.save(o)
                return RefundView.of(r)
            r = o.complete_refund(refund_id, self.clock.now(), from_status=from_status)
            for rl in sorted(r.lines, key=lambda x: x.sku):  # same row-lock order as everywhere
                line = o.line(rl.sku)
                shipped = o.sub_order_of(line).shipped_at is not None
                if shipped and r.kind != RETURN:
                    continue  # refund only, goods kept by the buyer: nothing comes back
                pool = tx.refund.restock_pool(line)
                if pool is not None:
                    uow.inventory.restock(rl.sku, pool, rl.qty)
            uow.orders.save(o)
            return RefundView.of(r)

        view = self._transact(finish)
        if not result.ok:
            again = "complete" if from_status == "requested" else "goods-received"
            raise errors.PaymentFailed(
                f"refund {refund_id} was not paid out ({result.reason}); it stays {from_status} — retry "
                f"POST /refunds/{refund_id}/{again}", rule="payment.refund",
                extra={"refund_id": refund_id, "reason": result.reason},
            )
        return view

    # ---------------------------------------------------------------- delivery
    def _order_of_sub(self, uow: UnitOfWork, sub_order_id: str) -> Order:
        oid = uow.orders.order_id_for_sub_order(sub_order_id)
        if oid is None:
            raise errors.NotFound(f"sub-order {sub_order_id!r} does not exist", field="sub_order_id",
                                  rule="sub_order.exists")
        return self._load(uow, oid)

    def ship(self, sub_order_id: str, carrier: str, tracking_no: str) -> OrderView:
        for name, value in (("carrier", carrier), ("tracking_no", tracking_no)):
            if not isinstance(value, str) or not value.strip() or len(value) > 64:
                raise errors.InvalidRequest(f"{name} must be a non-empty string of at most 64 characters",
                                            field=name)

        def run(uow: UnitOfWork) -> OrderView:
            o = self._order_of_sub(uow, sub_order_id)
            o.ship(sub_order_id, carrier.strip(), tracking_no.strip(), self.clock.now())
            uow.orders.save(o)
            return OrderView.of(o)

        return self._transact(run)

    def deliver(self, sub_order_id: str, collected: bool | None = None) -> OrderView:
        """Delivered. A cash-on-delivery sub-order needs ``collected``: true records its payment (the
        reserved units are sold), false fails the delivery (``DeliveryFailed``; the units go back)."""
        def run(uow: UnitOfWork) -> OrderView:
            o = self._order_of_sub(uow, sub_order_id)
            if o.is_cod:
                tx = self.registry.get(o.tx_type)
                sold, released = o.deliver_cod(sub_order_id, self.clock.now(), collected, new_id("pay"))
                for line in sorted(sold, key=lambda li: (li.sku, li.pool)):
                    tx.inventory.commit_sale(uow, line)
                for line in sorted(released, key=lambda li: li.sku):
                    tx.purchase_limit.release(uow, o.buyer_id, line)
                for line in sorted(released, key=lambda li: li.sku):
                    tx.inventory.release(uow, line)
                uow.orders.save(o)
                return OrderView.of(o)
            o.deliver(sub_order_id, self.clock.now(), collected)
            uow.orders.save(o)
            return OrderView.of(o)

        return self._transact(run)

    def receive(self, sub_order_id: str) -> OrderView:
        def run(uow: UnitOfWork) -> OrderView:
            o = self._order_of_sub(uow, sub_order_id)
            o.receive(sub_order_id, self.clock.now())
            uow.orders.save(o)
            return OrderView.of(o)

        return self._transact(run)

    def auto_receive(self, limit: int = 500) -> int:
        """Mark sub-orders received ``auto_receive_days`` (a shop setting) after delivery; a node job.
        Returns how many were received."""
        now = self.clock.now()

        def due(uow: UnitOfWork) -> list[tuple[str, str]]:
            days = {s.id: s.auto_receive_days for s in uow.catalog.shops()}
            return [(oid, sid) for oid, sid, shop, at in uow.orders.delivered_sub_orders(limit)
                    if at + timedelta(days=days.get(shop, 7)) <= now]

        received = 0
        for order_id, sub_id in self._transact(due, readonly=True):
            def run(uow: UnitOfWork, order_id: str = order_id, sub_id: str = sub_id) -> bool:
                o = uow.orders.get(order_id)
                if o is None or o.sub_order(sub_id).delivery_status != "delivered":
                    return False
                o.receive(sub_id, self.clock.now(), auto=True)
                uow.orders.save(o)
                return True

            try:
                received += self._transact(run)
            except errors.DomainError as exc:
                log.warning("could not auto-receive sub-order %s: %s", sub_id, exc)
        return received

    # ------------------------------------------------------------------ reads
    def get_order(self, order_id: str) -> OrderView:
        return self._guarded(
            ORDER_GET,
            lambda: self._transact(lambda uow: OrderView.of(self._load(uow, order_id)), readonly=True),
            args={"order": order_id},
        )

    def get_refund(self, refund_id: str) -> RefundView:
        def run(uow: UnitOfWork) -> RefundView:
            oid = uow.orders.order_id_for_refund(refund_id)
            if oid is None:
                raise errors.NotFound(f"refund {refund_id!r} does not exist", field="refund_id",
                                      rule="refund.exists")
            return RefundView.of(self._load(uow, oid).refund(refund_id))

        return self._transact(run, readonly=True)

    def list_shops(self) -> list[ShopView]:
        def run(uow: UnitOfWork) -> list[ShopView]:
            return [shop_view(s, len(uow.catalog.products(s.id))) for s in uow.catalog.shops()]

        return self._transact(run, readonly=True)

    def list_products(self, shop_id: str) -> list[ProductView]:
        def run(uow: UnitOfWork) -> list[ProductView]:
            if uow.catalog.shop(shop_id) is None:
                raise errors.NotFound(f"shop {shop_id!r} does not exist; see GET /shops", field="shop_id",
                                      rule="shop.exists")
            shop = uow.catalog.shop(shop_id)
            products = uow.catalog.products(shop_id)
            stock = uow.catalog.stock(p.sku for p in products)
            now = self.clock.now()
            promos = [p for p in uow.catalog.promotions([shop_id]) if p.active(now)]
            auctioned = self._auctioned_skus(uow, shop_id, now)
            return [ProductView.of(p, stock, promos, self._tx_types(p, shop, promos, auctioned))
                    for p in products]

        return self._transact(run, readonly=True)

    def _tx_types(self, product: Product, shop: Shop | None, promos: list[Promotion],
                  auctioned: set[str]) -> tuple[str, ...]:
        """The registered transaction types ``product`` can be bought with now."""
        kinds = {p.kind for p in promos if p.sku == product.sku}
        found = ["fixed_price"]
        if "flash_price" in kinds:
            found.append("flash_sale")
        if "presale" in kinds:
            found.append("presale")
        if shop is not None and shop.accepts_cod:
            found.append("cod")
        if product.sku in auctioned:
            found.append("auction")
        registered = set(self.registry.names())
        return tuple(t for t in found if t in registered)

    def _auctioned_skus(self, uow: UnitOfWork, shop_id: str, now: datetime) -> set[str]:
        return uow.auctions.skus(shop_id, now)

    # ---------------------------------------------------------------- auctions
    def create_auction(self, *, sku: str, start_price_cents: int, increment_cents: int, reserve_cents: int,
                       starts_at: datetime, ends_at: datetime) -> AuctionView:
        """A merchant puts one unit of ``sku`` up for auction (its stock is reserved when it is won)."""
        for name, at in (("starts_at", starts_at), ("ends_at", ends_at)):
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise errors.InvalidRequest(f"{name} must be a date-time with a time zone", field=name)

        def run(uow: UnitOfWork) -> AuctionView:
            product = uow.catalog.products_by_sku([sku]).get(sku)
            if product is None:
                raise errors.UnknownSku(f"sku {sku!r} is not in the catalog", field="sku", extra={"sku": sku})
            now = self.clock.now()
            if ends_at <= now:
                raise errors.InvalidRequest(f"ends_at {ends_at.isoformat()} is not in the future",
                                            field="ends_at")
            auction = Auction(id=new_id("au"), shop_id=product.shop_id, sku=sku,
                              start_price_cents=start_price_cents, increment_cents=increment_cents,
                              reserve_cents=reserve_cents, starts_at=starts_at, ends_at=ends_at,
                              created_at=now)
            uow.auctions.add(auction)
            uow.record(ev.AuctionCreated(occurred_at=now, auction_id=auction.id, shop_id=auction.shop_id,
                                         sku=sku, tx_type="auction", start_price_cents=start_price_cents,
                                         reserve_cents=reserve_cents))
            return AuctionView.of(auction, now, [])

        return self._transact(run)

    def get_auction(self, auction_id: str) -> AuctionView:
        def run(uow: UnitOfWork) -> AuctionView:
            auction = self._auction(uow, auction_id)
            return AuctionView.of(auction, self.clock.now(), uow.auctions.bids(auction_id))

        return self._transact(run, readonly=True)

    @staticmethod
    def _auction(uow: UnitOfWork, auction_id: str) -> Auction:
        auction = uow.auctions.get(auction_id)
        if auction is None:
            raise errors.NotFound(f"auction {auction_id!r} does not exist", field="auction_id",
                                  rule="auction.exists")
        return auction

    def place_bid(self, auction_id: str, buyer_id: str, amount_cents: int,
                  address: Mapping[str, str] | None = None) -> BidView:
        """A bid: refused (409) before the start, after the end, or below the start price / the leading
        bid + increment; accepted by one conditional UPDATE, so concurrent bids never lose an update."""
        if not isinstance(buyer_id, str) or not buyer_id.strip() or len(buyer_id) > 64:
            raise errors.InvalidRequest("buyer_id must be a non-empty string of at most 64 characters",
                                        field="buyer_id")
        shipping = None
        if address is not None:
            normalized = self.addresses.normalize(self._address(address))
            shipping = asdict(normalized)
        bid_id = new_id("bid")

        def run(uow: UnitOfWork) -> BidView:
            auction = self._auction(uow, auction_id)
            now = self.clock.now()
            auction.check_bid(amount_cents, now)
            if not uow.auctions.try_bid(auction_id, buyer_id, amount_cents):
                fresh = self._auction(uow, auction_id)
                fresh.check_bid(amount_cents, now)  # outbid meanwhile: the refusal names the new minimum
                raise errors.ConcurrentUpdate(f"auction {auction_id} moved on; retry")
            bid = Bid(id=bid_id, auction_id=auction_id, buyer_id=buyer_id, amount_cents=amount_cents,
                      placed_at=now, address=shipping)
            uow.auctions.add_bid(bid)
            uow.record(ev.BidPlaced(occurred_at=now, auction_id=auction_id, shop_id=auction.shop_id,
                                    sku=auction.sku, tx_type="auction", buyer_id=buyer_id,
                                    amount_cents=amount_cents))
            return BidView.of(bid)

        return self._transact(run)

    def close_auctions(self, limit: int = 100) -> int:
        """A node job: an ended auction's highest bid at or above reserve becomes an ``auction`` order at
        that price with a payment deadline; an awarded auction whose order was paid is ``sold``, one whose
        order was cancelled (not paid in time) is offered to the next bidder at their highest bid.
        Returns how many auctions changed."""
        now = self.clock.now()
        ids = self._transact(lambda uow: uow.auctions.due(now, limit), readonly=True)
        changed = 0
        for auction_id in ids:
            try:
                changed += self._close_one(auction_id)
            except errors.DomainError as exc:
                log.warning("could not close auction %s: %s", auction_id, exc)
        return changed

    def _close_one(self, auction_id: str) -> int:
        def read(uow: UnitOfWork) -> tuple[Auction, list[Bid], str | None]:
            a = self._auction(uow, auction_id)
            order = uow.orders.get(a.order_id) if a.order_id else None
            return a, uow.auctions.bids(auction_id), order.status if order else None

        auction, bids, order_status = self._transact(read, readonly=True)
        if auction.status == AUCTION_AWARDED:
            if order_status in (PAID, "partially_refunded", "refunded"):
                return self._finish_auction(auction, SOLD, auction.order_id)
            if order_status != "cancelled":
                return 0  # the winner may still pay
        offered = set(auction.offered)
        best: dict[str, Bid] = {}
        for b in bids:  # highest first: the first bid of a buyer is their highest
            if b.buyer_id not in offered and b.buyer_id not in best \
                    and b.amount_cents >= auction.reserve_cents:
                best[b.buyer_id] = b
        for bid in best.values():
            round_no = len(auction.offered) + 1
            cmd = PlaceOrder(
                buyer_id=bid.buyer_id, tx_type="auction", channel="web", lines=[LineItem(auction.sku, 1)],
                address=_award_address(bid), idempotency_key=f"auction:{auction.id}:{round_no}",
                extra={"auction": {"auction_id": auction.id, "sku": auction.sku,
                                   "amount_cents": bid.amount_cents, "round": round_no}})
            try:
                view = self.place_order(cmd)
            except errors.DomainError as exc:  # e.g. out of stock: no one can be offered it
                log.warning("auction %s: order for %s refused: %s", auction.id, bid.buyer_id, exc)
                return self._finish_auction(auction, UNSOLD, None)
            return self._award(auction, bid, view.id, round_no)
        return self._finish_auction(auction, UNSOLD, None)

    def _award(self, auction: Auction, bid: Bid, order_id: str, round_no: int) -> int:
        def run(uow: UnitOfWork) -> int:
            a = self._auction(uow, auction.id)
            if len(a.offered) + 1 != round_no:
                return 0  # another node awarded this round
            a.status, a.order_id = AUCTION_AWARDED, order_id
            a.offered = [*a.offered, bid.buyer_id]
            uow.auctions.save(a)
            uow.record(ev.AuctionAwarded(occurred_at=self.clock.now(), auction_id=a.id, shop_id=a.shop_id,
                                         sku=a.sku, tx_type="auction", buyer_id=bid.buyer_id,
                                         amount_cents=bid.amount_cents, order_id=order_id, round=round_no))
            return 1

        return self._transact(run)

    def _finish_auction(self, auction: Auction, outcome: str, order_id: str | None) -> int:
        def run(uow: UnitOfWork) -> int:
            a = self._auction(uow, auction.id)
            if a.status in (SOLD, UNSOLD) or a.version != auction.version:
                return 0
            a.status = outcome
            uow.auctions.save(a)
            amount = a.current_cents if outcome == SOLD else 0
            if outcome == SOLD and order_id:
                order = uow.orders.get(order_id)
                amount = order.amount_cents if order else amount
            uow.record(ev.AuctionClosed(occurred_at=self.clock.now(), auction_id=a.id, shop_id=a.shop_id,
                                        sku=a.sku, tx_type="auction", outcome=outcome, amount_cents=amount))
            return 1

        return self._transact(run)

    def seed(self, catalog: Catalog) -> dict[str, int]:
        """Write shops, products, stock and promotions that are not there yet; never resets stock."""
        def run(uow: UnitOfWork) -> dict[str, int]:
            added = sum(uow.catalog.add_warehouse(w) for w in catalog.warehouses)
            counts = {"warehouses": added} if added else {}  # the key only when some were new
            return {
                **counts,
                "shops": sum(uow.catalog.add_shop(s) for s in catalog.shops),
                "products": sum(uow.catalog.add_product(p) for p in catalog.products),
                "stock": sum(uow.catalog.add_stock(s) for s in catalog.stock),
                "promotions": sum(uow.catalog.add_promotion(p) for p in catalog.promotions),
                **({"auctions": auctions} if (auctions := sum(uow.auctions.add(a) for a in catalog.auctions))
                   else {}),
            }

        counts = self._transact(run)
        log.info("seeded catalog: %s new", counts)
        return counts


def _award_address(bid: Bid) -> Address:
    """Where an auction's order ships: the address the bid gave (normalized when bidding), else one the
    winner confirms later (not region-checked; the warehouse is chosen by stock alone)."""
    if bid.address:
        data = dict(bid.address)
        region = data.pop("region", None)
        return Address(**data, region=Region(**region) if region else None)
    return Address(country="CN", province="-", city="-", district="-", street="to be confirmed by the winner",
                   recipient=bid.buyer_id, phone="00000", region=Region(
                       country_code="CN", country="China", province_code=None, province="-", city_code=None,
                       city="-", district_code=None, district="-"))


def _refund_amount(tx: TransactionType, order: Order) -> Callable[[OrderLine, int], int]:
    """The refund capability's amount for a line of ``order`` (``amount_for`` when it has one)."""
    amount_for = getattr(tx.refund, "amount_for", None)
    if amount_for is None:
        return tx.refund.amount
    return lambda line, qty: amount_for(order, line, qty)


def _refund_lines(lines: Iterable[Any]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for i, li in enumerate(lines):
        if isinstance(li, Mapping):
            sku, qty = li.get("sku"), li.get("qty")
        elif isinstance(li, tuple | list):
            sku, qty = li[0], li[1]
        else:
            sku, qty = getattr(li, "sku", None), getattr(li, "qty", None)
        if not isinstance(sku, str) or not sku:
            raise errors.InvalidRequest("sku must be a non-empty string", field=f"lines[{i}].sku")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            raise errors.InvalidRequest(f"lines[{i}].qty must be an integer >= 1, got {qty!r}",
                                        field=f"lines[{i}].qty", rule="refund.qty_positive")
        out.append((sku, qty))
    if not out:
        raise errors.InvalidRequest("a refund needs at least one {sku, qty} line", field="lines")
    return out
