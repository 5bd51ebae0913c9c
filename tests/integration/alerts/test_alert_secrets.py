"""A canary secret through every failure path of a notification: it appears in no log record, no
exception text and no row of the control DB (every table dumped)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alerts.model import Channel
from alerts.notify import EmailSender, WebhookSender, sender_for
from tests.integration.alerts.test_alert_delivery import make_env, pay
from tests.services import free_port

pytestmark = pytest.mark.integration

CANARY = "canary-S3cr3t-7f1e"


class EchoingFailure:
    """A webhook receiver answering 500 with a body that quotes the request line (token included)."""

    def __init__(self) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.hits += 1
                body = f"no such hook {self.path} (auth {self.headers.get('Authorization')})".encode()
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def control_db_rows(path) -> list[str]:
    """Every row of every table of the SQLite control DB, as text."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "alert_deliveries" in tables and "alert_config" in tables
        return [f"{t}: {row!r}" for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]


def assert_no_canary(caplog, tmp_path) -> None:
    for record in caplog.records:
        assert CANARY not in record.getMessage(), record.name
        assert CANARY not in (record.exc_text or ""), record.name
    leaked = [row for row in control_db_rows(tmp_path / "control.db") if CANARY in row]
    assert leaked == []


def run_until_failed(env, attempts: int = 2) -> list[dict]:
    pay(env, 10, 90)
    env.engine.cycle()
    for _ in range(attempts):
        env.engine.deliver()
        env.clock.advance(60)
    return env.service.notifications()


def test_webhook_answering_500_leaks_no_token(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    rx = EchoingFailure()
    monkeypatch.setenv("HOOK_TOKEN", CANARY)
    env = make_env(tmp_path, webhook_url=f"http://127.0.0.1:{rx.port}/hook?token={CANARY}", max_attempts=2)
    try:
        env.service.apply(
            "channels:\n"
            f"  - {{name: team, kind: webhook, url: 'http://127.0.0.1:{rx.port}/team',"
            " headers: {Authorization: 'Bearer ${HOOK_TOKEN}'}}\n",
            by="test",
        )
        notes = run_until_failed(env)
        hooks = [n for n in notes if n["channel"] in ("webhook", "team")]
        assert {n["channel"]: n["status"] for n in hooks} == {"webhook": "failed", "team": "failed"}
        assert rx.hits == 4 and all("HTTP 500" in n["last_error"] for n in hooks)
        assert CANARY not in str(env.service.config()) and CANARY not in env.service.export()
        with pytest.raises(RuntimeError) as e:  # the exception itself, before the deliverer records it
            WebhookSender(f"http://127.0.0.1:{rx.port}/hook?token={CANARY}").send({"alerts": []}, {})
        assert "HTTP 500" in str(e.value) and CANARY not in str(e.value)
        assert_no_canary(caplog, tmp_path)
    finally:
        rx.close()
        env.store.close()


def test_unreachable_webhook_leaks_no_token(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/hooks/{CANARY}"
    env = make_env(tmp_path, webhook_url=url, max_attempts=2)
    try:
        hook = next(n for n in run_until_failed(env) if n["channel"] == "webhook")
        assert hook["status"] == "failed" and "Connect" in hook["last_error"]
        assert_no_canary(caplog, tmp_path)
    finally:
        env.store.close()


def test_refused_smtp_leaks_no_password(tmp_path, caplog, monkeypatch):
    from aiosmtpd.controller import Controller

    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            return "550 5.7.1 relaying denied"

    caplog.set_level(logging.DEBUG)
    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMTP_PASSWORD", CANARY)
    settings_url = f"smtp://alerts:{CANARY}@127.0.0.1:{port}/?to=oncall@example.com"
    env = make_env(tmp_path, smtp_url=settings_url, max_attempts=2)
    try:
        env.service.apply(
            "channels:\n"
            f"  - {{name: team, kind: email, smtp_url: 'smtp://127.0.0.1:{port}/?to=team@example.com'}}\n"
            f"  - {{name: ops, kind: email, smtp_url: 'smtp://ops:${{SMTP_PASSWORD}}@127.0.0.1:{port}/"
            "?to=ops@example.com'}\n",
            by="test",
        )
        notes = {n["channel"]: n for n in run_until_failed(env)}
        assert {c: notes[c]["status"] for c in ("email", "team", "ops")} == dict.fromkeys(
            ("email", "team", "ops"), "failed"
        )
        assert "550" in notes["team"]["last_error"]  # refused recipient
        assert "AUTH" in notes["ops"]["last_error"]  # login refused: the server offers no AUTH
        for channel in (Channel("ops", "email", {"smtp_url": settings_url}),):
            with pytest.raises(Exception) as e:
                sender_for(channel).send({"alerts": [], "status": "firing"}, {})
            assert CANARY not in str(e.value)
        with pytest.raises(ValueError) as e:
            EmailSender(f"smtp://alerts:{CANARY}@")
        assert CANARY not in str(e.value)
        assert_no_canary(caplog, tmp_path)
    finally:
        controller.stop()
        env.store.close()


PAGES = ("overview", "alerts_page", "alert_rules", "resources", "traces", "rules", "instances", "chaos",
         "sales", "users")


def page_text(node) -> str:
    """Everything an AppTest page shows: every element's protobuf (markdown, tables' Arrow bytes…)."""
    parts = [str(node.proto)] if getattr(node, "proto", None) is not None else []
    parts += [page_text(child) for child in getattr(node, "children", {}).values()]
    return "\n".join(parts)


def test_console_pages_show_no_secret_after_the_failures(tmp_path, caplog, monkeypatch):
    """Webhook 500 (a token in its URL), the metric store down (its token in the settings), Redis down
    (its password in the URL), no node for chaos: every console page, as an admin sees it, names no
    secret — neither the alerts' delivery errors nor the stores' errors."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from common.identity import Principal
    from console import runtime
    from tradeguard import bootstrap
    from tradeguard.settings import load_settings

    caplog.set_level(logging.DEBUG)
    rx = EchoingFailure()
    hook = f"http://127.0.0.1:{rx.port}/hook/{CANARY}?token={CANARY}"
    env = make_env(tmp_path, webhook_url=hook, max_attempts=2)
    closed = free_port()
    for key in [k for k in __import__("os").environ if k.startswith("TRADEGUARD_")]:
        if key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    for key, value in {
        "TRADEGUARD_VAR_DIR": str(tmp_path / "var"),
        "TRADEGUARD_CONTROL_DB": f"sqlite:///{tmp_path}/control.db",
        "TRADEGUARD_METRICS_URL": f"influxdb://127.0.0.1:{closed}/tg?api=v2&org=o",
        "TRADEGUARD_METRICS_TOKEN": CANARY,
        "TRADEGUARD_REDIS_URL": f"redis://:{CANARY}@127.0.0.1:{closed}/0",
        "TRADEGUARD_ALERT_WEBHOOK_URL": hook,
        "TRADEGUARD_APP": "shop",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(runtime, "_installed", None)
    services = None
    try:
        hooks = [n for n in run_until_failed(env) if n["channel"] == "webhook"]
        assert [n["status"] for n in hooks] == ["failed"] and "HTTP 500" in hooks[0]["last_error"]
        st.cache_resource.clear()
        services = bootstrap.build_console_services(load_settings())
        runtime.install(services)
        views = Path(__file__).resolve().parents[3] / "console" / "views"
        for name in PAGES:
            at = AppTest.from_file(str(views / f"{name}.py"), default_timeout=30)
            at.session_state[runtime.PRINCIPAL_KEY] = Principal("ann", "admin")
            at.run()
            assert not at.exception, (name, [e.message for e in at.exception])
            shown = page_text(at.main) + page_text(at.sidebar)
            assert CANARY not in shown, f"the {name} page shows the secret"
            assert name != "alerts_page" or "PaymentSuccessRateLow" in shown  # the failed alert is there
        assert_no_canary(caplog, tmp_path)
    finally:
        if services is not None:
            services.close()
        st.cache_resource.clear()
        rx.close()
        env.store.close()
