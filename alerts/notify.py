"""Notification channels and the delivery loop.

- ``webhook``: POST of an Alertmanager v4 JSON body (``version: "4"``, groupKey, status,
  receiver, groupLabels, commonLabels, commonAnnotations, externalURL, alerts[]), so
  receivers written for Alertmanager work unchanged;
- ``email``: plain-text mail over SMTP (``smtp://[user:${PASSWORD_ENV}@]host:port/?from=…&to=…``);
- ``log``: a log line per notification;
- ``slack``: an incoming-webhook message in Block Kit (header, a section per alert, context);
- ``pagerduty``: Events API v2, one event per alert with ``dedup_key`` = the alert's stable key
  (``tradeguard/<fingerprint>``): ``trigger`` when firing, ``resolve`` when resolved, and
  ``acknowledge``/``resolve`` queued by ``AlertService`` when a person acts in tradeguard;
- ``dingtalk``: group robot markdown message, signed (``timestamp`` + ``sign`` =
  base64(HMAC-SHA256(secret, "<ms>\\n<secret>"))) when the channel has a ``secret``;
- ``wecom``: group robot markdown message (the ``key`` in the URL is the credential).

Delivery is at least once to a channel, exactly once in the delivery log: every notification has a
stable ``idempotency_key`` (hash of channel and Alertmanager ``groupKey``, plus its sequence in the
log), sent as the ``Idempotency-Key`` header on webhook posts and in the context of Slack/DingTalk/
WeCom messages; PagerDuty deduplicates by ``dedup_key``. Claims: ``alerts.store.AlertStore.claim_due``.

Credentials are ``${ENV_NAME}`` references in channel configs (documents and the control DB),
resolved only when a notification is sent (``common.redact.expand_env_refs``): from the settings
(the built-in channels refer to ``${TRADEGUARD_ALERT_WEBHOOK_URL}`` and ``${TRADEGUARD_SMTP_URL}``)
or the environment. Every error recorded or logged about a delivery is redacted: no token, no
password in ``alert_deliveries``, ``alert_notifications`` or a log line.

Notifications wait in ``alert_notifications``; :class:`Deliverer` sends the due ones.
A failed attempt is recorded and retried with exponential backoff (``base_backoff`` ×
2^(attempt-1), on the injected clock, so nothing sleeps); after ``max_attempts`` the
notification is marked failed. Every attempt, good or bad, is a row in
``alert_deliveries``. A failing channel never stops evaluation nor other channels.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import smtplib
import time
import uuid
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, quote_plus, unquote, urlparse

import httpx

from alerts.model import CHANNEL_KINDS, FIRING, Channel
from alerts.store import AlertRecord, AlertStore
from common.clock import Clock, SystemClock
from common.redact import RedactingFilter, env_refs, expand_env_refs, redact_text, redact_url, url_secrets

log = logging.getLogger(__name__)

WEBHOOK_ENV = "TRADEGUARD_ALERT_WEBHOOK_URL"
SMTP_ENV = "TRADEGUARD_SMTP_URL"
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(t: datetime | None) -> str:
    if t is None:
        return ZERO_TIME
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = dict(maps[0])
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def build_payload(
    *,
    receiver: str,
    group_key: str,
    group_labels: Mapping[str, str],
    alerts: Sequence[AlertRecord],
    statuses: Mapping[str, str] | None = None,
    external_url: str = "",
) -> dict[str, Any]:
    """An Alertmanager webhook body, version 4."""
    items = []
    for a in alerts:
        status = (statuses or {}).get(str(a.id), FIRING if a.state == FIRING else "resolved")
        items.append(
            {
                "status": status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": rfc3339(a.fired_at or a.active_since),
                "endsAt": rfc3339(a.resolved_at) if status != FIRING else ZERO_TIME,
                "generatorURL": f"{external_url.rstrip('/')}/alerts?alert={a.id}",
                "fingerprint": a.fingerprint,
            }
        )
    status = FIRING if any(i["status"] == FIRING for i in items) else "resolved"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([i["labels"] for i in items]),
        "commonAnnotations": _common([i["annotations"] for i in items]),
        "externalURL": external_url,
        "alerts": items,
    }


def summary_line(payload: Mapping[str, Any]) -> str:
    alerts = payload.get("alerts", [])
    firing = sum(1 for a in alerts if a["status"] == FIRING)
    name = payload.get("commonLabels", {}).get("alertname") or ", ".join(
        sorted({a["labels"].get("alertname", "?") for a in alerts})
    )
    gl = " ".join(f"{k}={v}" for k, v in payload.get("groupLabels", {}).items() if k != "alertname")
    head = f"[{payload.get('status', '?').upper()}:{firing}] {name}"
    return f"{head} ({gl})" if gl else head


class Sender(Protocol):
    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None: ...


IDEMPOTENCY_HEADER = "Idempotency-Key"


def _post_json(url: str, body: Mapping[str, Any], *, timeout_s: float, headers: Mapping[str, str],
               what: str, secrets: Sequence[str] = ()) -> httpx.Response:
    """POST ``body``; raises with a redacted message on HTTP ≥ 300."""
    _redact_httpx_log()
    resp = httpx.post(url, json=dict(body), timeout=timeout_s, headers=dict(headers))
    if resp.status_code >= 300:
        text = redact_text(resp.text[:200], [url, *url_secrets(url), *headers.values(), *secrets])
        raise RuntimeError(f"{what} {redact_url(url)} answered HTTP {resp.status_code}: {text}")
    return resp


class WebhookSender:
    """Alertmanager v4 JSON; the notification's stable key in the ``Idempotency-Key`` header."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})

    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        headers = dict(self.headers)
        if extra.get("idempotency_key"):
            headers[IDEMPOTENCY_HEADER] = str(extra["idempotency_key"])
        _post_json(self.url, payload, timeout_s=self.timeout_s, headers=headers, what="webhook",
                   secrets=list(self.headers.values()))


# ------------------------------------------------------------------ the channels on-call teams use
def _alert_title(a: Mapping[str, Any]) -> str:
    return str(a["annotations"].get("summary") or a["labels"].get("alertname", "alert"))


def _labels_text(a: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k != "alertname")


def slack_message(payload: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook message in Block Kit: a header, a section per alert (≤ 20), a context
    line; ``text`` is the notification fallback. Limits respected: header ≤ 150, section ≤ 3000."""
    head = summary_line(payload)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": head[:150]}}]
    alerts = list(payload.get("alerts", []))
    for a in alerts[:20]:
        mark = ":red_circle:" if a["status"] == FIRING else ":large_green_circle:"
        lines = [f"{mark} *{_alert_title(a)}* ({a['status']})", f"`{_labels_text(a)}`" if a["labels"] else "",
                 f"since {a['startsAt']}"]
        if a["annotations"].get("runbook_url"):
            lines.append(f"<{a['annotations']['runbook_url']}|runbook>")
        lines.append(f"<{a['generatorURL']}|open in tradeguard>")
        text = "\n".join(x for x in lines if x)[:3000]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    context = f"tradeguard · {len(alerts)} alert(s)" + (f" · key {key}" if key else "")
    if payload.get("oncall"):
        context += f" · on call: {payload['oncall']}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": head, "blocks": blocks}


class SlackSender:
    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        body = slack_message({**payload, **({"oncall": extra["oncall"]} if extra.get("oncall") else {})},
                             extra.get("idempotency_key"))
        _post_json(self.url, body, timeout_s=self.timeout_s, headers={}, what="slack webhook")


PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PD_SEVERITIES = ("critical", "error", "warning", "info")


def pagerduty_dedup_key(fingerprint: str) -> str:
    """The alert's stable key at PagerDuty: trigger, acknowledge and resolve of one alert share it."""
    return f"tradeguard/{fingerprint}"


def pagerduty_events(payload: Mapping[str, Any], routing_key: str, action: str | None = None
                     ) -> list[dict[str, Any]]:
    """PagerDuty Events API v2 bodies, one per alert: ``trigger`` (firing) or ``resolve`` (resolved),
    or ``action`` for all (``acknowledge`` when acknowledged in tradeguard)."""
    out = []
    for a in payload.get("alerts", []):
        event_action = action or ("trigger" if a["status"] == FIRING else "resolve")
        body: dict[str, Any] = {
            "routing_key": routing_key,
            "event_action": event_action,
            "dedup_key": pagerduty_dedup_key(a["fingerprint"])[:255],
        }
        if event_action == "trigger":
            sev = str(a["labels"].get("severity", "error"))
            body["payload"] = {
                "summary": _alert_title(a)[:1024],
                "source": a["labels"].get("instance") or a["labels"].get("app") or "tradeguard",
                "severity": sev if sev in PD_SEVERITIES else "error",
                "timestamp": a["startsAt"],
                "component": a["labels"].get("resource") or None,
                "group": a["labels"].get("app") or None,
                "class": a["labels"].get("alertname") or None,
                "custom_details": {"labels": dict(a["labels"]), "annotations": dict(a["annotations"])},
            }
            body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
            body["client"] = "tradeguard"
            if payload.get("externalURL"):
                body["client_url"] = str(payload["externalURL"])
            links = [{"href": a["generatorURL"], "text": "tradeguard alert"}]
            if a["annotations"].get("runbook_url"):
                links.append({"href": a["annotations"]["runbook_url"], "text": "runbook"})
            body["links"] = links
        out.append(body)
    return out


class PagerDutySender:
    def __init__(self, routing_key: str, *, url: str = PAGERDUTY_URL, timeout_s: float = 5.0) -> None:
        self.routing_key = routing_key
        self.url = url
        self.timeout_s = timeout_s

    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        for body in pagerduty_events(payload, self.routing_key, extra.get("event_action")):
            _post_json(self.url, body, timeout_s=self.timeout_s, headers={}, what="pagerduty",
                       secrets=[self.routing_key])


def _markdown(payload: Mapping[str, Any], key: str | None) -> str:
    lines = [f"### {summary_line(payload)}", ""]
    for a in payload.get("alerts", []):
        lines.append(f"- **{_alert_title(a)}** ({a['status']}) {_labels_text(a)}")
        lines.append(f"  since {a['startsAt']} [open]({a['generatorURL']})")
        if a["annotations"].get("runbook_url"):
            lines.append(f"  [runbook]({a['annotations']['runbook_url']})")
    if payload.get("oncall"):
        lines.append(f"\nOn call: {payload['oncall']}")
    if key:
        lines.append(f"\n> key {key}")
    return "\n".join(lines)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(key=secret, "<timestamp>\\n<secret>")), URL-quoted."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def dingtalk_message(payload: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
    markdown = {"title": summary_line(payload)[:64], "text": _markdown(payload, key)}
    return {"msgtype": "markdown", "markdown": markdown}


def wecom_message(payload: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
    text = _markdown(payload, key)
    while len(text.encode()) > 4096:  # WeCom's limit on markdown content, in bytes
        text = text[: len(text) - 64]
    return {"msgtype": "markdown", "markdown": {"content": text}}


def _robot_answer(resp: httpx.Response, what: str) -> None:
    """DingTalk and WeCom answer HTTP 200 with ``{"errcode": 0}``; anything else failed."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if int(body.get("errcode", 0) or 0) != 0:
        raise RuntimeError(
            f"{what} refused the message: errcode {body.get('errcode')} {str(body.get('errmsg'))[:100]}"
        )


class DingTalkSender:
    def __init__(self, url: str, *, secret: str | None = None, timeout_s: float = 5.0,
                 clock: Clock | None = None) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.clock = clock or SystemClock()  # the signature's timestamp (ms)

    def signed_url(self) -> str:
        if not self.secret:
            return self.url
        ts = int(self.clock.now().timestamp() * 1000)
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}timestamp={ts}&sign={dingtalk_sign(self.secret, ts)}"

    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        body = dingtalk_message({**payload, **({"oncall": extra["oncall"]} if extra.get("oncall") else {})},
                                extra.get("idempotency_key"))
        url = self.signed_url()
        resp = _post_json(url, body, timeout_s=self.timeout_s, headers={}, what="dingtalk robot",
                          secrets=[self.secret or "", url, *url_secrets(url)])
        _robot_answer(resp, "dingtalk robot")


class WeComSender:
    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        body = wecom_message({**payload, **({"oncall": extra["oncall"]} if extra.get("oncall") else {})},
                             extra.get("idempotency_key"))
        resp = _post_json(self.url, body, timeout_s=self.timeout_s, headers={}, what="wecom robot")
        _robot_answer(resp, "wecom robot")


_HTTPX_FILTER = RedactingFilter()


def _redact_httpx_log() -> None:
    """httpx logs every request with its full URL (a webhook token in it): redact its records."""
    logger = logging.getLogger("httpx")
    if _HTTPX_FILTER not in logger.filters:
        logger.addFilter(_HTTPX_FILTER)



def parse_smtp_url(url: str) -> dict[str, Any]:
    """``smtp://[user:pass@]host:port/?from=…&to=a@x,b@y`` (``smtps://`` for implicit TLS,
    ``?starttls=true`` for STARTTLS)."""
    u = urlparse(url)
    if u.scheme not in ("smtp", "smtps") or not u.hostname:
        raise ValueError(
            f"an SMTP URL must look like smtp://host:port/?from=…&to=…, got {redact_url(url)!r}"
        )
    qs = parse_qs(u.query)
    to: list[str] = []
    for v in qs.get("to", []):
        to.extend(x.strip() for x in v.split(",") if x.strip())
    return {
        "host": u.hostname,
        "port": u.port or (465 if u.scheme == "smtps" else 25),
        "ssl": u.scheme == "smtps",
        "starttls": qs.get("starttls", ["false"])[0].lower() in ("1", "true", "yes"),
        "user": unquote(u.username) if u.username else None,
        "password": unquote(u.password) if u.password else None,
        "from": qs.get("from", ["tradeguard@localhost"])[0],
        "to": to,
    }


def email_text(payload: Mapping[str, Any]) -> str:
    lines = [summary_line(payload), ""]
    for a in payload.get("alerts", []):
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
        lines.append(f"- [{a['status']}] {a['annotations'].get('summary', a['labels'].get('alertname', ''))}")
        lines.append(f"  labels: {labels}")
        lines.append(f"  since: {a['startsAt']}")
        if a["annotations"].get("runbook_url"):
            lines.append(f"  runbook: {a['annotations']['runbook_url']}")
        lines.append(f"  {a['generatorURL']}")
    if payload.get("oncall"):
        lines += ["", f"On call: {payload['oncall']}"]
    return "\n".join(lines) + "\n"


class EmailSender:
    def __init__(
        self, smtp_url: str, *, to: Sequence[str] = (), sender: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.cfg = parse_smtp_url(smtp_url)
        if to:
            self.cfg["to"] = list(to)
        if sender:
            self.cfg["from"] = sender
        self.timeout_s = timeout_s

    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        to = list(dict.fromkeys([*self.cfg["to"], *extra.get("to", [])]))
        if not to:
            raise ValueError(
                "no e-mail recipient: set to= in the SMTP URL or the channel, or an on-call e-mail"
            )
        msg = EmailMessage()
        msg["Subject"] = summary_line(payload)
        msg["From"] = self.cfg["from"]
        msg["To"] = ", ".join(to)
        msg.set_content(
            email_text({**payload, **({"oncall": extra["oncall"]} if extra.get("oncall") else {})})
        )
        cls = smtplib.SMTP_SSL if self.cfg["ssl"] else smtplib.SMTP
        with cls(self.cfg["host"], self.cfg["port"], timeout=self.timeout_s) as smtp:
            if self.cfg["starttls"]:
                smtp.starttls()
            if self.cfg["user"]:
                smtp.login(self.cfg["user"], self.cfg["password"] or "")
            smtp.send_message(msg)


class LogSender:
    def __init__(self, name: str = "log") -> None:
        self.log = logging.getLogger(f"{__name__}.{name}")

    def send(self, payload: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        self.log.warning("%s %s", summary_line(payload), json.dumps([a["labels"] for a in payload["alerts"]]))


def resolve_config(
    channel: Channel, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The channel's config with every ``${NAME}`` resolved from ``env`` (default ``os.environ``),
    and the secret values it now holds (to redact from any error about it).

    Raises ``common.redact.UnresolvedReference`` naming a variable that is not set."""
    source = os.environ if env is None else env
    secrets: list[str] = []

    def expand(value: str) -> str:
        out = expand_env_refs(value, source)
        secrets.extend(source[name] for name in env_refs(value))
        return out

    config = dict(channel.config)
    for key in ("url", "smtp_url"):
        if isinstance(config.get(key), str):
            config[key] = expand(config[key])
            secrets.extend((config[key], *url_secrets(config[key])))
    for key in ("routing_key", "secret"):
        if isinstance(config.get(key), str):
            config[key] = expand(config[key])
            secrets.append(config[key])
    if isinstance(config.get("headers"), Mapping):
        config["headers"] = {str(k): expand(str(v)) for k, v in config["headers"].items()}
    return config, [s for s in secrets if s]


def sender_for(channel: Channel, env: Mapping[str, str] | None = None, clock: Clock | None = None) -> Sender:
    cfg, _ = resolve_config(channel, env)
    if channel.kind == "webhook":
        return WebhookSender(
            str(cfg["url"]), timeout_s=float(cfg.get("timeout_s") or 5.0), headers=cfg.get("headers") or {}
        )
    if channel.kind == "email":
        return EmailSender(str(cfg["smtp_url"]), to=list(cfg.get("to", []) or []), sender=cfg.get("from"))
    if channel.kind == "log":
        return LogSender(channel.name)
    timeout = float(cfg.get("timeout_s") or 5.0)
    if channel.kind == "slack":
        return SlackSender(str(cfg["url"]), timeout_s=timeout)
    if channel.kind == "pagerduty":
        url = str(cfg.get("url") or PAGERDUTY_URL)
        return PagerDutySender(str(cfg["routing_key"]), url=url, timeout_s=timeout)
    if channel.kind == "dingtalk":
        secret = cfg.get("secret") or None
        return DingTalkSender(str(cfg["url"]), secret=secret, timeout_s=timeout, clock=clock)
    if channel.kind == "wecom":
        return WeComSender(str(cfg["url"]), timeout_s=timeout)
    raise ValueError(f"channel kind must be one of {', '.join(CHANNEL_KINDS)}, got {channel.kind!r}")


def env_channels(webhook_url: str | None, smtp_url: str | None) -> list[Channel]:
    """Channels from the settings (``TRADEGUARD_ALERT_WEBHOOK_URL``, ``TRADEGUARD_SMTP_URL``), plus log.

    Their config holds a ``${…}`` reference to the setting, never the URL: pass
    :func:`settings_refs` to the :class:`Deliverer` to resolve it when sending."""
    out = [Channel("log", "log")]
    if webhook_url:
        out.append(Channel("webhook", "webhook", {"url": f"${{{WEBHOOK_ENV}}}"}))
    if smtp_url:
        out.append(Channel("email", "email", {"smtp_url": f"${{{SMTP_ENV}}}"}))
    return out


def settings_refs(webhook_url: str | None, smtp_url: str | None) -> dict[str, str]:
    """The values the built-in channels' references resolve to."""
    refs = {WEBHOOK_ENV: webhook_url, SMTP_ENV: smtp_url}
    return {k: v for k, v in refs.items() if v}


class Deliverer:
    """Sends due notifications, records every attempt, retries failures with backoff."""

    def __init__(
        self,
        store: AlertStore,
        channels: Callable[[], Mapping[str, Channel]],
        *,
        clock: Clock | None = None,
        max_attempts: int = 5,
        base_backoff: timedelta = timedelta(seconds=2),
        senders: Mapping[str, Sender] | None = None,
        env: Mapping[str, str] | None = None,
        lease: Any = None,
        holder: str | None = None,
    ) -> None:
        """``env``: values of ``${NAME}`` references looked up before ``os.environ`` (the settings).
        ``lease``: the worker leader's :class:`collectors.lease.Lease`; claims are fenced by its token."""
        self.store = store
        self.channels = channels
        self.clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self._senders = dict(senders or {})
        self.env: Mapping[str, str] = ChainMap(dict(env or {}), os.environ)  # type: ignore[arg-type]
        self.lease = lease
        self.holder = holder or (lease.holder if lease is not None else f"deliverer-{uuid.uuid4().hex[:12]}")

    def _sender(self, channel: Channel, secrets: list[str]) -> Sender:
        """The channel's sender; ``secrets`` receives the credentials it resolved."""
        if channel.name in self._senders:
            return self._senders[channel.name]
        _, resolved = resolve_config(channel, self.env)
        secrets.extend(resolved)
        return sender_for(channel, self.env, self.clock)

    def deliver_due(self) -> dict[str, int]:
        now = self.clock.now()
        counts = {"sent": 0, "failed": 0, "retry": 0}
        if self.lease is not None:
            if self.lease.token is None:
                return counts
            token, fenced = int(self.lease.token), self.lease.fenced()
        else:
            token, fenced = 0, None
        claimed = self.store.claim_due(now, holder=self.holder, token=token, fenced=fenced)
        channels = self.channels() if claimed else {}
        for n in claimed:
            attempts = n["attempts"] + 1
            started = time.perf_counter()
            error: str | None = None
            secrets: list[str] = []
            try:
                channel = channels.get(n["channel"])
                if channel is None:
                    raise LookupError(
                        f"channel {n['channel']!r} is not configured (known: {', '.join(sorted(channels))})"
                    )
                extra = {**(n["extra"] or {}), "idempotency_key": n.get("idempotency_key") or f"tg-{n['id']}"}
                self._sender(channel, secrets).send(n["payload"], extra)
            except Exception as exc:  # recorded and retried; never propagates
                error = _redacted(exc, secrets)
            ms = (time.perf_counter() - started) * 1000
            at = self.clock.now()
            if error is None:
                status, next_at = "sent", at
                counts["sent"] += 1
                log.info(
                    "notification %s via %s delivered (%s)", n["id"], n["channel"], summary_line(n["payload"])
                )
            elif attempts >= self.max_attempts:
                status, next_at = "failed", at
                counts["failed"] += 1
                log.error(
                    "notification %s via %s failed for good after %d attempts: %s",
                    n["id"],
                    n["channel"],
                    attempts,
                    error,
                )
            else:
                status = "pending"
                next_at = at + self.base_backoff * (2 ** (attempts - 1))
                counts["retry"] += 1
                log.warning(
                    "notification %s via %s failed (attempt %d), retry at %s: %s",
                    n["id"],
                    n["channel"],
                    attempts,
                    next_at.isoformat(),
                    error,
                )
            recorded = self.store.record_delivery(
                n["id"],
                n["channel"],
                at=at,
                ok=error is None,
                error=error,
                duration_ms=ms,
                status=status,
                attempts=attempts,
                next_attempt_at=next_at,
                holder=self.holder,
                token=token,
            )
            if not recorded:
                log.warning("notification %s: claim taken over by another worker; its record stands", n["id"])
        return counts


def _redacted(exc: BaseException, secrets: Iterable[str]) -> str:
    """``exc`` as text with every credential (and any URL's secret parts) masked."""
    return redact_text(f"{type(exc).__name__}: {exc}", secrets)
