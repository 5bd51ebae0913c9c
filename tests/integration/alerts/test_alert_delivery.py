"""Notifications to real local servers: an HTTP webhook receiver and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from alerts.engine import AlertEngine
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.services import free_port
from tests.unit.alerts.fakes import FakeClock, FakeMetricStore

pytestmark = pytest.mark.integration

RULES = """
rules:
  - name: PaymentSuccessRateLow
    query:
      measurement: payments
      ratio: {numerator: [success], denominator: [success, failure]}
      aggregate: sum
      window: 1m
      group_by: [app]
    op: "<"
    threshold: 0.95
    for: 0s
    severity: critical
    annotations: {summary: "Payment success rate of {app} is {value}", runbook_url: "https://rb/x"}
route: {receiver: default, group_by: [alertname], group_wait: 0s, group_interval: 10s, repeat_interval: 4h}
"""


class Receiver:
    """A real HTTP server that records POSTed JSON bodies; answers 500 for the first ``fail`` requests."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict] = []
        self.fail = fail
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                outer.hits += 1
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_env(tmp_path, **engine_kwargs):
    clock = FakeClock()
    metrics = FakeMetricStore()
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    engine = AlertEngine(store, metrics, clock=clock, external_url="http://console:8501", **engine_kwargs)
    service = AlertService(store, clock=clock)
    service.apply(RULES, by="test")
    return SimpleNamespace(clock=clock, metrics=metrics, store=store, engine=engine, service=service)


def pay(env, success, failure):
    env.metrics.add(
        "payments",
        {"app": "shop", "instance": "n1"},
        {"success": success, "failure": failure},
        env.clock.now() - timedelta(seconds=1),
    )


def test_webhook_gets_alertmanager_v4_bodies_firing_then_resolved(tmp_path):
    rx = Receiver()
    env = make_env(tmp_path, webhook_url=rx.url)
    try:
        pay(env, 50, 50)
        env.engine.cycle()
        env.engine.deliver()
        assert len(rx.bodies) == 1
        body = rx.bodies[0]
        assert set(body) >= {
            "version",
            "groupKey",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        }
        assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "default"
        assert body["groupLabels"] == {"alertname": "PaymentSuccessRateLow"}
        assert body["commonLabels"] == {
            "alertname": "PaymentSuccessRateLow",
            "severity": "critical",
            "app": "shop",
        }
        assert body["commonAnnotations"]["summary"] == "Payment success rate of shop is 50.0 %"
        assert body["externalURL"] == "http://console:8501"
        [a] = body["alerts"]
        assert set(a) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        assert a["status"] == "firing" and a["endsAt"] == "0001-01-01T00:00:00Z"
        assert a["startsAt"] == "2026-11-23T09:00:00Z" and a["generatorURL"].startswith(
            "http://console:8501/"
        )
        assert len(a["fingerprint"]) == 16
        env.clock.advance(70)
        pay(env, 100, 0)
        env.engine.cycle()
        env.engine.deliver()
        assert len(rx.bodies) == 2
        resolved = rx.bodies[1]
        assert resolved["status"] == "resolved" and resolved["alerts"][0]["status"] == "resolved"
        assert resolved["alerts"][0]["endsAt"] == "2026-11-23T09:01:10Z"
        assert resolved["groupKey"] == body["groupKey"]
    finally:
        rx.close()
        env.store.close()


def test_webhook_failures_are_retried_with_backoff_and_recorded(tmp_path):
    rx = Receiver(fail=2)
    env = make_env(tmp_path, webhook_url=rx.url)
    try:
        pay(env, 10, 90)
        env.engine.cycle()
        env.engine.deliver()  # 500
        assert rx.hits == 1 and rx.bodies == []
        env.clock.advance(2)
        env.engine.deliver()  # 500 again, next in 4 s
        env.clock.advance(3)
        env.engine.deliver()
        assert rx.hits == 2
        env.clock.advance(1)
        env.engine.deliver()
        assert rx.hits == 3 and len(rx.bodies) == 1
        hook = next(n for n in env.service.notifications() if n["channel"] == "webhook")
        assert hook["status"] == "sent" and hook["attempts"] == 3
        attempts = env.store.deliveries(notification_id=hook["id"])
        assert [d["ok"] for d in attempts] == [True, False, False]
        assert "HTTP 500" in attempts[-1]["error"]
    finally:
        rx.close()
        env.store.close()


def test_unreachable_webhook_never_stops_evaluation(tmp_path):
    env = make_env(tmp_path, webhook_url=f"http://127.0.0.1:{free_port()}/nobody", max_attempts=2)
    try:
        pay(env, 10, 90)
        out = env.engine.cycle()
        env.engine.deliver()
        env.clock.advance(5)
        env.engine.deliver()
        assert out["evaluate"]["transitions"] == 1
        hook = next(n for n in env.service.notifications() if n["channel"] == "webhook")
        assert hook["status"] == "failed" and "Connect" in hook["last_error"]
        log_channel = next(n for n in env.service.notifications() if n["channel"] == "log")
        assert log_channel["status"] == "sent"
    finally:
        env.store.close()


def test_email_arrives_at_a_real_smtp_server(tmp_path):
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self) -> None:
            self.messages: list = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    handler = Handler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    env = make_env(
        tmp_path, smtp_url=f"smtp://127.0.0.1:{port}/?from=alerts@tradeguard.local&to=oncall@example.com"
    )
    try:
        pay(env, 50, 50)
        env.engine.cycle()
        env.engine.deliver()
        [msg] = handler.messages
        assert msg.mail_from == "alerts@tradeguard.local" and msg.rcpt_tos == ["oncall@example.com"]
        text = msg.content.decode()
        assert "Subject: [FIRING:1] PaymentSuccessRateLow" in text
        assert "Payment success rate of shop is 50.0 %" in text and "runbook: https://rb/x" in text
        email = next(n for n in env.service.notifications() if n["channel"] == "email")
        assert email["status"] == "sent"
    finally:
        controller.stop()
        env.store.close()
