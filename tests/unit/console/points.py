"""Writing recorded metrics the way the collectors do, for console tests."""

from __future__ import annotations

from datetime import UTC, datetime

from collectors.query import Point

APP = "shop"


def at(second: int) -> datetime:
    return datetime.fromtimestamp(second, tz=UTC)


def resource_point(
    second: int,
    resource: str,
    *,
    passed: int,
    block_flow: int = 0,
    block_param: int = 0,
    block_system: int = 0,
    block_breaker: int = 0,
    error: int = 0,
    rt: float = 10.0,
    instance: str = "n1",
) -> Point:
    return Point(
        "resource_stats",
        {"app": APP, "instance": instance, "resource": resource},
        {
            "pass": passed,
            "block_flow": block_flow,
            "block_param": block_param,
            "block_system": block_system,
            "block_breaker": block_breaker,
            "success": passed - error,
            "error": error,
            "rt_avg_ms": rt,
            "rt_max_ms": rt * 2,
            "concurrency": 1,
        },
        at(second),
    )


def order_point(second: int, *, placed: int, paid: int, gmv: float, shop: str = "s1") -> Point:
    return Point(
        "orders",
        {"app": APP, "shop": shop, "channel": "app", "tx_type": "fixed_price"},
        {
            "placed": placed,
            "paid": paid,
            "cancelled": 0,
            "gmv": gmv,
            "paid_amount": gmv,
            "discount": 0,
            "items": placed,
        },
        at(second),
    )


def payment_point(second: int, *, success: int, failure: int) -> Point:
    return Point(
        "payments",
        {"app": APP, "instance": "n1"},
        {"success": success, "failure": failure, "latency_ms": 30.0},
        at(second),
    )


def breaker_point(second: int, resource: str, state: int, previous: int) -> Point:
    return Point(
        "breaker_events",
        {"app": APP, "instance": "n1", "resource": resource},
        {"state": state, "previous": previous},
        at(second),
    )


def seconds_before(now: datetime, n: int) -> int:
    """The epoch second ``n`` seconds before ``now``'s last completed 2 s bucket."""
    end = int(now.timestamp())
    end -= end % 60
    return end - n


def refusal_point(
    second: int, *, count: int, reason: str = "out_of_stock", resource: str = "order.place",
    instance: str = "n1",
) -> Point:
    """``count`` requests the shop refused (the node's ``refusals`` measurement)."""
    return Point(
        "refusals",
        {"app": APP, "instance": instance, "resource": resource, "reason": reason},
        {"count": count},
        at(second),
    )


def delivery_point(second: int, *, shop: str = "s1", tx_type: str = "fixed_price", carrier: str = "-",
                   **fields: float) -> Point:
    """A ``deliveries`` point (the journal relay's): unnamed fields are 0."""
    names = ("shipped", "delivered", "received", "auto_received", "failed", "cod_collected", "cod_amount")
    return Point(
        "deliveries",
        {"app": APP, "shop": shop, "tx_type": tx_type, "carrier": carrier},
        {name: fields.get(name, 0) for name in names},
        at(second),
    )
