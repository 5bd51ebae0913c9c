"""Domain errors of the trading core.

Every error carries enough structure for the HTTP layer to build an RFC 9457
problem without parsing messages: ``kind`` (maps to a status), ``field`` (the
request field at fault, dotted/indexed like ``lines[0].qty``), ``rule`` (the
business rule that refused, like ``inventory.available``) and ``extra`` (facts
a caller can act on: available quantity, allowed values, ...). The message says
what went wrong and what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# kind -> default HTTP status (used by domain.api; kept here so the mapping is one table).
KIND_STATUS: dict[str, int] = {
    "not_found": 404,
    "invalid": 422,
    "conflict": 409,
    "out_of_stock": 409,
    "limit": 409,
    "idempotency_conflict": 409,
    "payment_failed": 402,
    "unavailable": 503,
}


class DomainError(Exception):
    kind: str = "invalid"
    default_rule: str | None = None

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        rule: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.rule = rule or self.default_rule
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def title(self) -> str:
        return self.kind.replace("_", " ").capitalize()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "detail": self.message}
        if self.field:
            out["field"] = self.field
        if self.rule:
            out["rule"] = self.rule
        out.update(self.extra)
        return out


class NotFound(DomainError):
    kind = "not_found"


class UnknownSku(NotFound):
    default_rule = "catalog.sku_exists"


class InvalidRequest(DomainError):
    kind = "invalid"


class Conflict(DomainError):
    """The request is valid but the current state does not allow it."""

    kind = "conflict"


class OutOfStock(DomainError):
    kind = "out_of_stock"
    default_rule = "inventory.available"


class PurchaseLimitExceeded(DomainError):
    kind = "limit"
    default_rule = "purchase_limit"


class IdempotencyConflict(DomainError):
    kind = "idempotency_conflict"
    default_rule = "idempotency_key.same_body"


class PaymentFailed(DomainError):
    """The gateway declined or failed; the order stays payable until its deadline."""

    kind = "payment_failed"
    default_rule = "payment.charge"


class StoreUnavailable(DomainError):
    kind = "unavailable"


class TransientStoreError(Exception):
    """A store hiccup worth retrying the whole transaction for (SQLite busy, PG deadlock/serialization).

    Raised by adapters; the application services retry the unit of work a few times.
    """


class ConcurrentUpdate(TransientStoreError):
    """Optimistic version check failed: someone else changed the aggregate first."""


class DuplicateKey(TransientStoreError):
    """A unique key (e.g. buyer + idempotency key) was taken by a concurrent transaction."""
