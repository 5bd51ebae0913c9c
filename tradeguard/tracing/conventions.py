"""Names and shapes shared by every part of tracing: span attributes, outcomes, the ids' text
forms, a stored span's record."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

PAYMENT_CHARGE = "payment.charge"  # the guarded call to the payment gateway (domain.ports.PAYMENT_CHARGE)
OUTCOMES = ("error", "blocked", "slow", "sampled")
_REFUSED = frozenset(("blocked", "degraded"))  # guard decisions that keep a trace as "blocked"
BLOCKED_PER_S = 5.0  # kept blocked traces per second per (resource, rule); the rest only counted
ATTR_DECISION = "tradeguard.guard.decision"
ATTR_RULE = "tradeguard.guard.rule"
ATTR_RULE_TYPE = "tradeguard.guard.rule_type"
ATTR_REASON = "tradeguard.guard.reason"
ATTR_WAIT_MS = "tradeguard.guard.wait_ms"
ATTR_RESOURCE = "tradeguard.resource"
ATTR_ORDER_ID = "tradeguard.order_id"
ATTR_PEER = "peer.service"


def trace_id_hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def span_id_hex(span_id: int) -> str:
    return f"{span_id:016x}"


_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def door_trace_ids(
    scope: Mapping[str, Any], bits: Callable[[int], int] = random.getrandbits
) -> tuple[str, str]:
    """(trace_id, span_id) for a request refused at the door, where no span is made: the caller's
    trace continues when it sent a valid ``traceparent`` (W3C), else a new random trace id. The
    refusal's trace is then not stored (beyond the tracer's per-rule budget of blocked traces,
    which ``RefusalBudget`` sends inside), like any trace the sampler drops."""
    for key, value in scope.get("headers") or ():
        if key == b"traceparent":
            m = _TRACEPARENT.match(value.strip().lower())
            if m is not None and m.group(1) != b"0" * 32:
                return m.group(1).decode(), span_id_hex(bits(64) or 1)
            break
    return trace_id_hex(bits(128) or 1), span_id_hex(bits(64) or 1)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as hex, or None outside a valid span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return trace_id_hex(ctx.trace_id), span_id_hex(ctx.span_id)


_ORDER_PATH = re.compile(r"^/orders/([^/]+)")


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str  # ok | error
    status_message: str
    attributes: dict[str, Any]
    instance: str = ""

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


_KIND_NAMES = {kind: kind.name.lower() for kind in SpanKind}
