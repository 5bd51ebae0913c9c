"""The Alerts page: open alerts, silences, who is on call, an alert's timeline and the metric behind
it, and the on-call actions (acknowledge, resolve, silence) — all through ``AlertService``'s dicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from console.services.common import FieldError, error_text, errors_from
from console.services.ports import AlertsPort

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
