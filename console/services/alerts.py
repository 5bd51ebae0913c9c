"""The Alerts page: open alerts, silences, who is on call, an alert's timeline and the metric behind
it, and the on-call actions (acknowledge, resolve, silence) — all through ``AlertService``'s dicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from collectors.query import MetricStore, Query
from console.services.common import FieldError, error_text, errors_from, run_query
from console.services.ports import AlertsPort
from dashboards import queries as q

ACTIONS = ("acknowledge", "unacknowledge", "resolve")
_STATE_ORDER = {"firing": 0, "pending": 1}
_SEVERITY_ORDER = {"critical": 0, "page": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class AlertsBoard:
    open_alerts: list[dict[str, Any]]  # firing and pending, newest first
    silences: list[dict[str, Any]]  # active and pending
    on_call: list[dict[str, Any]]
    calls: int  # alert-service reads
    errors: list[str] = field(default_factory=list)

    @property
    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.open_alerts if a["state"] == "firing"]

    @property
    def pending(self) -> list[dict[str, Any]]:
        return [a for a in self.open_alerts if a["state"] == "pending"]

    @property
    def acknowledged(self) -> list[dict[str, Any]]:
        return [a for a in self.open_alerts if a["acknowledged"]]


class ActionFailed(ValueError):
    """An alert action was refused; ``errors`` name the field when the service did."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.path or 'action'}: {e.message}" for e in self.errors))


def _need_name(by: str) -> str:
    if not by.strip():
        raise ActionFailed([FieldError("by", "your name is required: every action records who took it")])
    return by.strip()


def board(svc: AlertsPort) -> AlertsBoard:
    """Open alerts, silences and who is on call: 3 alert-service reads (a failed read is a message)."""
    errors: list[str] = []

    def read(label: str, fn: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        try:
            return list(fn())
        except Exception as exc:
            errors.append(f"{label}: {error_text(exc)}")
            return []

    open_alerts = read("alerts", lambda: svc.list_alerts(("firing", "pending")))
    silences = read("silences", lambda: svc.silences())
    on_call = read("on call", lambda: svc.on_call_now())
    open_alerts.sort(
        key=lambda a: (
            _STATE_ORDER.get(a["state"], 2),
            bool(a["acknowledged"]),
            _SEVERITY_ORDER.get(str(a["severity"]), 3),
            -a["id"],
        )
    )
    return AlertsBoard(open_alerts=open_alerts, silences=silences, on_call=on_call, calls=3, errors=errors)


def detail(svc: AlertsPort, alert_id: int, *, minutes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(timeline, metric behind the alert): 2 alert-service reads (the second queries metrics)."""
    timeline = svc.timeline(alert_id)
    try:
        metric = svc.metric_behind(alert_id, minutes=minutes, bucket_s=max(5, minutes * 60 // 180))
    except Exception as exc:  # the metric store is down: the timeline still shows
        metric = {
            "rule": timeline["alert"]["rule"],
            "threshold": None,
            "op": None,
            "points": [],
            "error": error_text(exc),
        }
    return timeline, metric


def act(svc: AlertsPort, action: str, alert_id: int, by: str, comment: str) -> dict[str, Any]:
    """``acknowledge`` | ``unacknowledge`` | ``resolve`` an alert as ``by``."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    who = _need_name(by)
    try:
        if action == "acknowledge":
            return svc.acknowledge(alert_id, who, comment or None)
        if action == "unacknowledge":
            return svc.unacknowledge(alert_id, who)
        return svc.resolve(alert_id, who, comment or None)
    except Exception as exc:  # refused (InvalidAction, NotFound) or the store is down: say why
        raise ActionFailed(errors_from(exc)) from exc


def silence(
    svc: AlertsPort, matchers: Sequence[str], *, by: str, comment: str, duration: str
) -> dict[str, Any]:
    try:
        return svc.create_silence(list(matchers), created_by=by.strip(), comment=comment, duration=duration)
    except Exception as exc:  # AlertConfigError names the field; a bad matcher is a ValueError
        raise ActionFailed(errors_from(exc)) from exc


def expire_silence(svc: AlertsPort, silence_id: int, by: str) -> dict[str, Any]:
    who = _need_name(by)
    try:
        return svc.expire_silence(silence_id, who)
    except Exception as exc:  # refused (InvalidAction, NotFound) or the store is down: say why
        raise ActionFailed(errors_from(exc)) from exc


# ---------------------------------------------------------------- the gateway behind a payment alert

PAYMENT_RESOURCE = "payment.charge"
GATEWAY_LEAD = timedelta(minutes=5)  # the gateway's errors from a little before the alert began …
GATEWAY_MAX_SPAN = timedelta(hours=6)  # … and at most this far back
GATEWAY_ROWS = 10  # the newest buckets with a failure or a block


@dataclass(frozen=True)
class GatewayErrors:
    """The payment gateway's recent errors around a payment alert, from the metric store: failed
    charges (``payments.failure``, the journal's PaymentFailed per node and second) and the guard's
    view of ``payment.charge`` (errors, calls its breaker blocked). Decline reasons are not a metric:
    they are on the journal's ``PaymentFailed`` events (``tradeguard events tail --name PaymentFailed``)."""

    start: datetime
    end: datetime
    bucket_s: int
    charges: int
    failed: int
    breaker_blocked: int
    guard_errors: int
    recent: list[dict[str, Any]]  # newest first: bucket, charges, failed, failure %, blocked, errors
    by_instance: list[dict[str, Any]]  # instance, charges, failed, failure %
    queries: int
    errors: list[str] = field(default_factory=list)

    @property
    def failure_pct(self) -> float | None:
        return 100.0 * self.failed / self.charges if self.charges else None


def is_payment_alert(alert: dict[str, Any]) -> bool:
    """An alert about payments: its resource is ``payment.charge`` or its rule is a payment rule."""
    labels = alert.get("labels") or {}
    return labels.get("resource") == PAYMENT_RESOURCE or "payment" in str(alert.get("rule") or "").lower()


def _at(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def gateway_errors(
    metrics: MetricStore, app: str, alert: dict[str, Any], now: datetime, *, bucket_s: int | None = None
) -> GatewayErrors:
    """The gateway's failures over the alert's window (from ``GATEWAY_LEAD`` before it became active
    to its resolution, or ``now``): 2 metric-store queries (payments per node and bucket,
    ``payment.charge`` errors and breaker blocks per bucket)."""
    began = _at(alert.get("active_since")) or _at(alert.get("fired_at")) or now
    end = min(now, _at(alert.get("resolved_at")) or now)
    start = max(began - GATEWAY_LEAD, end - GATEWAY_MAX_SPAN)
    span = max(1.0, (end - start).total_seconds())
    step = bucket_s or max(5, int(span // 60) // 5 * 5 or 5)  # about 60 buckets, in 5 s steps
    where = {"app": app} if app else {}
    errors: list[str] = []
    pay = run_query(
        metrics,
        Query(q.PAYMENTS, ("success", "failure"), start, end, "sum", step, where, ("instance",)),
        errors,
        "payments",
    )
    guard = run_query(
        metrics,
        Query(q.RESOURCE_STATS, ("error", "block_breaker"), start, end, "sum", step,
              {**where, "resource": PAYMENT_RESOURCE}),
        errors,
        "payment.charge",
    )
    buckets: dict[datetime, dict[str, float]] = {}
    instances: dict[str, dict[str, float]] = {}
    for r in pay:
        ok, bad = float(r.values.get("success") or 0.0), float(r.values.get("failure") or 0.0)
        b = buckets.setdefault(r.time, {})
        b["charges"] = b.get("charges", 0.0) + ok + bad
        b["failed"] = b.get("failed", 0.0) + bad
        i = instances.setdefault(r.tags.get("instance", "?"), {})
        i["charges"] = i.get("charges", 0.0) + ok + bad
        i["failed"] = i.get("failed", 0.0) + bad
    for r in guard:
        b = buckets.setdefault(r.time, {})
        b["blocked"] = b.get("blocked", 0.0) + float(r.values.get("block_breaker") or 0.0)
        b["errors"] = b.get("errors", 0.0) + float(r.values.get("error") or 0.0)

    def pct(failed: float, charges: float) -> float | None:
        return round(100.0 * failed / charges, 1) if charges else None

    recent = [
        {
            "bucket": t,
            "charges": int(b.get("charges", 0)),
            "failed": int(b.get("failed", 0)),
            "failure %": pct(b.get("failed", 0.0), b.get("charges", 0.0)),
            "breaker blocked": int(b.get("blocked", 0)),
            "guard errors": int(b.get("errors", 0)),
        }
        for t, b in sorted(buckets.items(), reverse=True)
        if b.get("failed") or b.get("blocked") or b.get("errors")
    ][:GATEWAY_ROWS]
    by_instance = sorted(
        (
            {
                "instance": name,
                "charges": int(v.get("charges", 0)),
                "failed": int(v.get("failed", 0)),
                "failure %": pct(v.get("failed", 0.0), v.get("charges", 0.0)),
            }
            for name, v in instances.items()
        ),
        key=lambda row: (-row["failed"], row["instance"]),
    )
    total = {
        k: sum(b.get(k, 0.0) for b in buckets.values()) for k in ("charges", "failed", "blocked", "errors")
    }
    return GatewayErrors(
        start=start,
        end=end,
        bucket_s=step,
        charges=int(total["charges"]),
        failed=int(total["failed"]),
        breaker_blocked=int(total["blocked"]),
        guard_errors=int(total["errors"]),
        recent=recent,
        by_instance=by_instance,
        queries=2,
        errors=errors,
    )
