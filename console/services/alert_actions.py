"""Alert actions of the Alerts page, each aimed at ONE alert id with the state the person saw.

The Alerts page calls these instead of ``ConsoleServices.alert_action`` so that an action can
never land on another alert: the id is submitted with the state shown, and the alert service
refuses (a clear message) when that alert changed state or is gone. Also: on-call changes,
values with units, runbook sections.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alerts.format import unit_of, value_text
from console.services.alerts import ActionFailed
from console.services.common import FieldError, error_text, errors_from

ACTIONS = ("acknowledge", "unacknowledge", "resolve", "silence", "escalate")
REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)
__all__ = [
    "act",
    "condition_text",
    "look",
    "rule_documents",
    "runbook_section",
    "set_on_call",
    "unit_of",
    "value_text",
    "view_changed",
]


def act(
    alerts: Any,
    action: str,
    alert_id: int,
    *,
    expected_state: str,
    by: str,
    comment: str = "",
    duration: str = "1h",
    to_step: int | None = None,
) -> dict[str, Any]:
    """Run ``action`` on alert ``alert_id`` only if it is still ``expected_state``; ``ActionFailed``
    (naming the field, or the alert that changed) otherwise. ``escalate`` (firing alerts only)
    notifies escalation step ``to_step`` (1-based; default the next step) now."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    who = (by or "").strip()
    if not who:
        raise ActionFailed([FieldError("by", "your name is required: every action records who took it")])
    try:
        if action == "acknowledge":
            return alerts.acknowledge(alert_id, who, comment or None, expected_state=expected_state)
        if action == "unacknowledge":
            return alerts.unacknowledge(alert_id, who, expected_state=expected_state)
        if action == "resolve":
            return alerts.resolve(alert_id, who, comment or None, expected_state=expected_state)
        if action == "escalate":
            return _escalate(alerts, alert_id, who, expected_state=expected_state, to_step=to_step)
        if not (comment or "").strip():
            raise ActionFailed([FieldError("comment", "required: say why this alert is silenced")])
        return alerts.silence_alert(
            alert_id, created_by=who, comment=comment, duration=duration, expected_state=expected_state
        )
    except ActionFailed:
        raise
    except Exception as exc:
        raise ActionFailed(errors_from(exc)) from exc


def _escalate(
    alerts: Any, alert_id: int, who: str, *, expected_state: str, to_step: int | None
) -> dict[str, Any]:
    """Escalate alert ``alert_id`` if it is firing and still in the state the person saw. The alert
    service's ``escalate`` takes no expected state, so the state is read and compared here first
    (the service still refuses an alert that is not firing by then)."""
    if expected_state != "firing":
        raise ActionFailed(
            [
                FieldError(
                    "expected_state",
                    f"only a firing alert can be escalated; #{alert_id} was shown as "
                    f"{expected_state or 'nothing'}",
                )
            ]
        )
    current = alerts.get_alert(alert_id)
    state, rule = current.get("state"), current.get("rule") or ""
    if state != expected_state:
        if state in ("firing", "pending"):
            msg = f"Alert #{alert_id} {rule} changed from {expected_state} to {state} since you opened it; "
            msg += "review and try again"
        else:
            gone = "cleared" if state == "inactive" else state
            msg = f"Alert #{alert_id} {rule} was {gone} since you opened it (it was {expected_state}); "
            msg += "nothing was done"
        raise ActionFailed([FieldError("", msg)])
    return alerts.escalate(alert_id, who, to_step)


def look(alert: Mapping[str, Any]) -> str:
    """What the page shows of an alert's handling: state, who acknowledged it, muted or not."""
    parts = [str(alert.get("state"))]
    if alert.get("acknowledged_by"):
        parts.append(f"acknowledged by {alert['acknowledged_by']}")
    if alert.get("silenced_by"):
        parts.append("silenced")
    if alert.get("inhibited"):
        parts.append("inhibited")
    return ", ".join(parts)


def view_changed(listed: Mapping[str, Any] | None, open_alerts: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the picker and detail drawn by the last full page run no longer match the open alerts the
    board just read: an alert opened or closed, or the picked alert changed (state, acknowledged,
    muted). None when they match, or nothing was listed. ``listed``: ``{"ids": [...], "picked": id or
    None, "look": look(picked alert) or None}``."""
    if listed is None:
        return None
    now = {int(a["id"]): a for a in open_alerts}
    ids = {int(i) for i in listed.get("ids") or ()}
    if set(now) != ids:
        parts = [f"#{i} opened" for i in sorted(set(now) - ids)]
        return ", ".join(parts + [f"#{i} closed" for i in sorted(ids - set(now))])
    picked = listed.get("picked")
    if picked is not None and int(picked) in now and look(now[int(picked)]) != listed.get("look"):
        return f"#{picked} is {look(now[int(picked)])} now (shown as {listed.get('look')})"
    return None


def set_on_call(
    alerts: Any, who: str, *, by: str, duration: str, rotation: str = "primary", email: str = ""
) -> dict[str, Any]:
    """Put ``who`` on call now (see ``alerts.service.AlertService.set_on_call``)."""
    if not (by or "").strip():
        raise ActionFailed([FieldError("by", "your name is required: every action records who took it")])
    try:
        return alerts.set_on_call(
            who, by=by.strip(), duration=duration, rotation=rotation, email=email or None
        )
    except Exception as exc:
        raise ActionFailed(errors_from(exc)) from exc


def rule_documents(alerts: Any) -> dict[str, dict[str, Any]]:
    """The alert rules by name (1 alert-service read); empty when the control DB cannot be read (the
    page still lists the alerts)."""
    try:
        return {d["name"]: d for d in alerts.rules()}
    except Exception as exc:
        log.warning("alert rules unreadable: %s", error_text(exc))
        return {}


def condition_text(rule: Mapping[str, Any] | None) -> str:
    """``payments success / (success + failure) < 95.0 % over 1m, for 1m`` and the like."""
    if not rule:
        return ""
    unit = unit_of(rule)
    threshold = value_text(rule.get("threshold"), unit)
    q = rule.get("query") or {}
    if rule.get("kind") == "heartbeat":
        what = "seconds since the node's last heartbeat"
    elif q.get("ratio"):
        r = q["ratio"]
        what = f"{q.get('measurement')} {' + '.join(r['numerator'])} / ({' + '.join(r['denominator'])})"
    else:
        what = f"{q.get('aggregate', '')} of {q.get('measurement')}.{q.get('field')}"
        if q.get("function") == "delta":
            what = f"growth of {q.get('measurement')}.{q.get('field')}"
    where = ", ".join(f"{k}={v}" for k, v in (q.get("where") or {}).items())
    text = f"{what}{f' ({where})' if where else ''} {rule.get('op', '>')} {threshold}"
    if q.get("window"):
        text += f" over {q['window']}"
    text += f", for {rule.get('for') or '0s'}"
    if rule.get("keep_firing_for"):
        text += f", held {rule['keep_firing_for']} after it stops"
    return text


def runbook_section(url: str | None) -> str | None:
    """The markdown of a runbook kept in this repository (``docs/runbooks.md#anchor``): the section
    whose heading matches the anchor, or the whole file without one. None for external links."""
    if not url or "://" in url:
        return None
    path, _, anchor = url.partition("#")
    file = (REPO / path).resolve()
    if REPO not in file.parents or not file.is_file():
        return None
    text = file.read_text(encoding="utf-8")
    if not anchor:
        return text
    out: list[str] = []
    level = 0
    for line in text.splitlines():
        m = re.match(r"^(#+)\s+(.*)$", line)
        if m:
            if out and len(m.group(1)) <= level:
                break
            if not out and _slug(m.group(2)) == anchor:
                level = len(m.group(1))
                out.append(line)
                continue
        if out:
            out.append(line)
    return "\n".join(out) if out else None


def _slug(heading: str) -> str:
    """GitHub-style anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
