"""Slack, PagerDuty, DingTalk and WeCom channels and the webhook's Idempotency-Key.

Each payload is checked against a JSON Schema written from the platform's documentation, and sent to
a real HTTP server on loopback (``Receiver``) through the real delivery loop. Schemas (from the docs):

- Slack incoming webhooks + Block Kit: ``text`` (fallback) and ``blocks``; a ``header`` block's text is
  ``plain_text`` ≤ 150 chars; a ``section``'s text object is ``mrkdwn``/``plain_text`` ≤ 3000 chars;
  a ``context`` block has 1–10 elements; ≤ 50 blocks per message.
- PagerDuty Events API v2 (``POST /v2/enqueue``): ``routing_key``, ``event_action`` in trigger /
  acknowledge / resolve, ``dedup_key`` ≤ 255; a trigger needs ``payload.summary`` (≤ 1024),
  ``payload.source``, ``payload.severity`` in critical/error/warning/info; optional ``timestamp``,
  ``component``, ``group``, ``class``, ``custom_details``, ``links[{href, text}]``, ``client``,
  ``client_url``.
- DingTalk custom robot: ``msgtype: markdown`` with ``markdown.title`` and ``markdown.text``; signed
  requests carry ``timestamp`` (ms) and ``sign`` = urlencode(base64(HmacSHA256(secret,
  "timestamp\\nsecret"))) in the query; the answer is ``{"errcode": 0, "errmsg": "ok"}``.
- WeCom group robot: ``POST /cgi-bin/webhook/send?key=KEY`` with ``msgtype: markdown`` and
  ``markdown.content`` ≤ 4096 bytes; the answer is ``{"errcode": 0, "errmsg": "ok"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import pytest

from alerts.engine import AlertEngine
from alerts.errors import AlertConfigError
from alerts.notify import dingtalk_sign, pagerduty_dedup_key
from alerts.schema import validate_document
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.unit.alerts.fakes import FakeClock, FakeMetricStore

SLACK_SCHEMA = {
    "type": "object",
    "required": ["blocks"],
    "properties": {
        "text": {"type": "string"},
        "blocks": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"const": "header"},
                            "text": {
                                "type": "object",
                                "required": ["type", "text"],
                                "properties": {
                                    "type": {"const": "plain_text"},
                                    "text": {"type": "string", "minLength": 1, "maxLength": 150},
                                },
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"const": "section"},
                            "text": {
                                "type": "object",
                                "required": ["type", "text"],
                                "properties": {
                                    "type": {"enum": ["mrkdwn", "plain_text"]},
                                    "text": {"type": "string", "minLength": 1, "maxLength": 3000},
                                },
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "elements"],
                        "properties": {
                            "type": {"const": "context"},
                            "elements": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 10,
                                "items": {
                                    "type": "object",
                                    "required": ["type", "text"],
                                    "properties": {"type": {"enum": ["mrkdwn", "plain_text"]}},
                                },
                            },
                        },
                    },
                ]
            },
        },
    },
}

PD_SCHEMA = {
    "type": "object",
    "required": ["routing_key", "event_action", "dedup_key"],
    "properties": {
        "routing_key": {"type": "string", "minLength": 1},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "client": {"type": "string"},
        "client_url": {"type": "string"},
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["href"],
                "properties": {"href": {"type": "string"}, "text": {"type": "string"}},
            },
        },
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string", "minLength": 1},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
            "additionalProperties": False,
        },
    },
    "if": {"properties": {"event_action": {"const": "trigger"}}},
    "then": {"required": ["payload"]},
    "additionalProperties": False,
}

DINGTALK_SCHEMA = {
    "type": "object",
    "required": ["msgtype", "markdown"],
    "properties": {
        "msgtype": {"const": "markdown"},
        "markdown": {
            "type": "object",
            "required": ["title", "text"],
            "properties": {
                "title": {"type": "string", "minLength": 1},
                "text": {"type": "string", "minLength": 1},
            },
        },
    },
}

WECOM_SCHEMA = {
    "type": "object",
    "required": ["msgtype", "markdown"],
    "properties": {
        "msgtype": {"const": "markdown"},
        "markdown": {
            "type": "object",
            "required": ["content"],
            "properties": {"content": {"type": "string", "minLength": 1}},
        },
    },
}


class Receiver:
    """A real HTTP server on loopback recording every request (path, query, headers, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[SimpleNamespace] = []
        self.answer: dict = {"errcode": 0, "errmsg": "ok"}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                parts = urlsplit(self.path)
                outer.requests.append(
                    SimpleNamespace(path=parts.path, query=parts.query, headers=dict(self.headers), body=body)
                )
                data = json.dumps(outer.answer).encode()
                self.send_response(202 if parts.path.endswith("enqueue") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[SimpleNamespace]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


DOC = """
rules:
  - name: ErrorsHigh
    query: {measurement: resource_stats, field: error, aggregate: sum, window: 1m,
            group_by: [app, instance, resource]}
    op: ">"
    threshold: 10
    for: 0s
    severity: critical
    annotations: {summary: "{resource} on {instance}: {value} errors", runbook_url: "https://runbooks/errors"}
route: {receiver: oncall, group_by: [alertname], group_wait: 0s, group_interval: 1m, repeat_interval: 1h}
channels:
  - {name: hook, kind: webhook, url: "${HOOK_URL}/hook"}
  - {name: slack, kind: slack, url: "${SLACK_URL}"}
  - {name: pd, kind: pagerduty, routing_key: "${PD_KEY}", url: "${PD_URL}"}
  - name: ding
    kind: dingtalk
    url: "${DING_BASE}/robot/send?access_token=${DING_TOKEN}"
    secret: "${DING_SECRET}"
  - {name: wecom, kind: wecom, url: "${WECOM_BASE}/cgi-bin/webhook/send?key=${WECOM_KEY}"}
escalation_policies:
  - name: oncall
    steps:
      - channels: [hook, slack, pd, ding, wecom]
      - {wait: 1h, channels: [hook]}
"""

SECRETS = {
    "PD_KEY": "pd-routing-key-0123456789abcdef",
    "DING_TOKEN": "ding-access-token-abcdef0123",
    "DING_SECRET": "SECdingsecret0123456789",
    "WECOM_KEY": "wecom-key-0123456789abcdef",
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    rx = Receiver()
    refs = {
        "HOOK_URL": rx.url,
        "SLACK_URL": f"{rx.url}/slack",
        "PD_URL": f"{rx.url}/v2/enqueue",
        "DING_BASE": rx.url,
        "WECOM_BASE": rx.url,
        **SECRETS,
    }
    for k, v in refs.items():
        monkeypatch.setenv(k, v)
    clock = FakeClock()
    metrics = FakeMetricStore()
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    engine = AlertEngine(store, metrics, clock=clock)
    service = AlertService(store, clock=clock)
    service.apply(DOC, by="test")
    yield SimpleNamespace(rx=rx, clock=clock, metrics=metrics, store=store, engine=engine, service=service)
    rx.close()
    store.close()


def fire(env) -> dict:
    env.metrics.add(
        "resource_stats",
        {"app": "shop", "instance": "n1", "resource": "order.pay"},
        {"error": 50},
        env.clock.now() - timedelta(seconds=1),
    )
    env.engine.cycle()
    counts = env.engine.deliver()
    assert counts["sent"] == 5 and counts["failed"] == 0 and counts["retry"] == 0, counts
    [alert] = env.service.list_alerts(("firing",))
    return alert


def test_every_channel_payload_matches_its_platform_schema(env):
    alert = fire(env)
    [hook] = env.rx.on("/hook")
    [slack] = env.rx.on("/slack")
    [pd] = env.rx.on("/v2/enqueue")
    [ding] = env.rx.on("/robot/send")
    [wecom] = env.rx.on("/cgi-bin/webhook/send")
    assert hook.body["version"] == "4" and hook.body["status"] == "firing"
    jsonschema.validate(slack.body, SLACK_SCHEMA)
    assert [b["type"] for b in slack.body["blocks"]] == ["header", "section", "context"]
    assert "order.pay on n1" in slack.body["blocks"][1]["text"]["text"]
    assert "https://runbooks/errors" in slack.body["blocks"][1]["text"]["text"]
    jsonschema.validate(pd.body, PD_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert pd.body["event_action"] == "trigger" and pd.body["routing_key"] == SECRETS["PD_KEY"]
    assert pd.body["dedup_key"] == pagerduty_dedup_key(alert["fingerprint"])
    assert pd.body["payload"]["severity"] == "critical" and pd.body["payload"]["source"] == "n1"
    jsonschema.validate(ding.body, DINGTALK_SCHEMA)
    jsonschema.validate(wecom.body, WECOM_SCHEMA)
    assert parse_qs(wecom.query)["key"] == [SECRETS["WECOM_KEY"]]
    assert len(wecom.body["markdown"]["content"].encode()) <= 4096


def test_dingtalk_request_is_signed_as_documented(env):
    fire(env)
    [ding] = env.rx.on("/robot/send")
    q = parse_qs(ding.query)
    assert q["access_token"] == [SECRETS["DING_TOKEN"]]
    ts = q["timestamp"][0]
    assert ts == str(int(env.clock.now().timestamp() * 1000))  # the deliverer's clock signs it
    secret = SECRETS["DING_SECRET"]
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    )
    assert q["sign"] == [expected.decode()]  # parse_qs undoes the URL encoding
    assert unquote(dingtalk_sign(secret, int(ts))) == expected.decode()


def test_webhook_carries_a_stable_idempotency_key_across_retries(env):
    env.rx.answer = {}
    hits = {"n": 0}
    original = env.rx.server.RequestHandlerClass.do_POST

    def flaky(handler):  # the first /hook post fails with 503, the retry succeeds
        if handler.path == "/hook" and hits["n"] == 0:
            hits["n"] += 1
            handler.rfile.read(int(handler.headers["Content-Length"]))
            env.rx.requests.append(
                SimpleNamespace(path="/hook", query="", headers=dict(handler.headers), body={})
            )
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        original(handler)

    env.rx.server.RequestHandlerClass.do_POST = flaky
    env.metrics.add(
        "resource_stats",
        {"app": "shop", "instance": "n1", "resource": "order.pay"},
        {"error": 50},
        env.clock.now() - timedelta(seconds=1),
    )
    env.engine.cycle()
    assert env.engine.deliver()["retry"] == 1
    env.clock.advance(5)
    assert env.engine.deliver()["sent"] == 1
    first, second = env.rx.on("/hook")
    key = first.headers["Idempotency-Key"]
    assert key and key == second.headers["Idempotency-Key"]
    [n] = [n for n in env.store.notifications() if n["channel"] == "hook"]
    assert n["idempotency_key"] == key and n["status"] == "sent"
    assert [d["ok"] for d in env.store.deliveries(notification_id=n["id"])] == [True, False]


def test_pagerduty_acknowledge_and_resolve_follow_tradeguard(env):
    alert = fire(env)
    env.service.acknowledge(alert["id"], "alice")
    env.engine.deliver()
    env.service.resolve(alert["id"], "alice")
    env.engine.deliver()
    events = [r.body for r in env.rx.on("/v2/enqueue")]
    for e in events:
        jsonschema.validate(e, PD_SCHEMA)
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {pagerduty_dedup_key(alert["fingerprint"])}
    assert all(e["routing_key"] == SECRETS["PD_KEY"] for e in events)


@pytest.mark.parametrize(
    ("channel", "field", "needle"),
    [
        ({"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/abcdefghijkl"}, "url", "secret"),
        ({"kind": "pagerduty", "routing_key": "0123456789abcdef0123456789abcdef"}, "routing_key", "secret"),
        ({"kind": "pagerduty"}, "routing_key", "required"),
        (
            {"kind": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=abc123"},
            "url",
            "access_token",
        ),
        (
            {
                "kind": "dingtalk",
                "url": "https://oapi.dingtalk.com/robot/send?access_token=${T}",
                "secret": "SECx",
            },
            "secret",
            "plain text",
        ),
        (
            {"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc123"},
            "url",
            "key",
        ),
        ({"kind": "wecom"}, "url", "required"),
    ],
)
def test_channel_secrets_must_be_env_references(channel, field, needle):
    with pytest.raises(AlertConfigError) as exc:
        validate_document({"channels": [{"name": "c", **channel}]})
    [(path, message)] = exc.value.errors
    assert path == f"channels[0].{field}" and needle in message


def test_secrets_are_not_stored_nor_shown_back(env):
    fire(env)
    config = json.dumps(env.service.config())
    rows = json.dumps(env.store.notifications() + env.store.deliveries(), default=str)
    for secret in SECRETS.values():
        assert secret not in config and secret not in rows
    assert "${PD_KEY}" in config and "${DING_SECRET}" in config


def test_a_refusing_robot_is_a_recorded_failure_without_its_token(env):
    env.rx.answer = {"errcode": 310000, "errmsg": "sign not match"}
    env.metrics.add(
        "resource_stats",
        {"app": "shop", "instance": "n1", "resource": "order.pay"},
        {"error": 50},
        env.clock.now() - timedelta(seconds=1),
    )
    env.engine.cycle()
    counts = env.engine.deliver()
    assert counts["retry"] == 2  # dingtalk and wecom
    errors = [n["last_error"] for n in env.store.notifications() if n["channel"] in ("ding", "wecom")]
    assert all("errcode 310000" in e for e in errors)
    assert not any(s in e for e in errors for s in SECRETS.values())
