"""Ports of the trading core: what it needs from the world, as Protocols.

The composition root (``tradeguard.bootstrap``) plugs real adapters in; unit
tests plug fakes. Defaults here are the no-op ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from common.clock import Clock, SystemClock  # the one clock; re-exported as the core's port
from domain.events import DomainEvent

T = TypeVar("T")


# Stable names of the guarded capabilities (see docs/architecture.md).
ORDER_PLACE = "order.place"
ORDER_PAY = "order.pay"
ORDER_GET = "order.get"
INVENTORY_RESERVE = "inventory.reserve"
PAYMENT_CHARGE = "payment.charge"
REFUND_REQUEST = "refund.request"


@runtime_checkable
class Guard(Protocol):
    """Control hook: every protected capability call goes through here.

    ``args`` are the call's key arguments (``shop``, ``sku``, ``buyer``) as
    strings, for hot-parameter rules; a tuple of strings is every value of one
    (``order.place``'s ``sku``: every line's SKU). ``fallback`` (if given) is what the
    capability would answer when degraded; a guard may call it instead of
    ``call`` when it blocks the call. A guard that blocks without a fallback
    raises its own exception, which the HTTP layer maps to 429/503.
    """

    def guard(
        self,
        resource: str,
        call: Callable[[], T],
        *,
        args: Mapping[str, Any] | None = None,
        fallback: Callable[[BaseException], T] | None = None,
    ) -> T: ...


class NoopGuard:
    """The default guard: lets every call through."""

    def guard(self, resource, call, *, args=None, fallback=None):
        return call()


class AddressBook(Protocol):
    """The address library (``domain.regions.RegionLibrary``): validates and normalizes addresses."""

    def normalize(self, address: Any) -> Any:
        """The address with ``region`` (canonical names and codes) set, or ``InvalidRequest`` naming the
        level (``address.province``, ``address.city``, ``address.district``, ``address.postal_code``)."""
        ...

    def distance(self, province_a: str | None, province_b: str | None) -> float:
        """How far apart two provinces (ISO 3166-2 codes) are; ``inf`` when unknown."""
        ...


class EventPublisher(Protocol):
    def publish(self, events: Sequence[DomainEvent]) -> None: ...


class NullPublisher:
    def publish(self, events: Sequence[DomainEvent]) -> None:
        pass


class CollectingPublisher:
    """Keeps every published event in memory (tests, the demo summary)."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def publish(self, events: Sequence[DomainEvent]) -> None:
        self.events.extend(events)


@dataclass(frozen=True)
class ChargeResult:
    """What a charge (or refund) came to.

    ``queued=True`` (with ``ok=False``) is the *degraded* outcome of a charge the guard did not let
    through, e.g. the ``queue_payment`` fallback while ``payment.charge``'s breaker is open: the
    gateway was not called, the payment waits in state ``queued`` and
    ``TradingService.retry_queued_payments`` charges it later. Gateways never answer ``queued``.
    """

    ok: bool
    reference: str | None = None
    reason: str | None = None
    queued: bool = False


class PaymentGateway(Protocol):
    """The money side. Implementations may be slow, fail, or be down."""

    def charge(self, payment_id: str, buyer_id: str, amount_cents: int) -> ChargeResult: ...

    def refund(self, refund_id: str, payment_reference: str, amount_cents: int) -> ChargeResult: ...


class RefusalRecorder(Protocol):
    """Business refusals: a request the shop refused (out of stock, purchase limit, a state conflict, …).

    A refused order rolls its transaction back, so the journal has no event for it; the HTTP layer
    reports each refusal here instead (``resource``: the core's resource name, e.g. ``order.place``;
    ``reason``: the ``DomainError`` kind, e.g. ``out_of_stock``). Called on the request path: an
    implementation only counts in memory and never raises.
    """

    def record(self, resource: str, reason: str) -> None: ...


class NullRefusals:
    """The default: refusals are not recorded."""

    def record(self, resource: str, reason: str) -> None:
        pass


# Events published after commit, keyed by event name, are all a subscriber needs.
EventHandler = Callable[[DomainEvent], None]


class EventBus:
    """A tiny in-process publisher fan-out: subscribers never break the caller."""

    def __init__(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._handlers: list[EventHandler] = []
        self._on_error = on_error

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def publish(self, events: Sequence[DomainEvent]) -> None:
        for event in events:
            for handler in self._handlers:
                try:
                    handler(event)
                except Exception as exc:  # a metric hook must never fail an order
                    if self._on_error:
                        self._on_error(exc)


__all__ = [
    "INVENTORY_RESERVE",
    "ORDER_GET",
    "ORDER_PAY",
    "ORDER_PLACE",
    "PAYMENT_CHARGE",
    "REFUND_REQUEST",
    "ChargeResult",
    "Clock",
    "CollectingPublisher",
    "EventBus",
    "EventPublisher",
    "Guard",
    "NoopGuard",
    "NullPublisher",
    "NullRefusals",
    "PaymentGateway",
    "RefusalRecorder",
    "SystemClock",
]
