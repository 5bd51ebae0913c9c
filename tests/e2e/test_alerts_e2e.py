"""End to end: the demo with the payment gateway failing half its charges fires the payment-success
alert, whose Alertmanager-v4 webhook arrives at a local receiver; after ``chaos --reset`` the
resolved notification arrives.

Timings are shortened with an alert document applied before the demo starts (a 20 s window,
``for: 0``, no group wait) and ``TRADEGUARD_ALERT_INTERVAL_S=2``; the logic is the shipped one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.services import free_port

pytestmark = pytest.mark.e2e

FAST_RULES = """
rules:
  - name: PaymentSuccessRateLow
    query:
      measurement: payments
      ratio: {numerator: [success], denominator: [success, failure]}
      aggregate: sum
      window: 20s
      group_by: [app]
    op: "<"
    threshold: 0.95
    for: 0s
    severity: critical
    annotations: {summary: "Payment success rate of {app} is {value}"}
route: {receiver: default, group_by: [alertname], group_wait: 0s, group_interval: 2s, repeat_interval: 4h}
"""


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, status: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for b in self.bodies:
                names = {a["labels"].get("alertname") for a in b["alerts"]}
                if b["status"] == status and "PaymentSuccessRateLow" in names:
                    return b
            time.sleep(0.5)
        return None


def cli(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tradeguard.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def payment_points(metrics_db: Path) -> int:
    if not metrics_db.exists():
        return 0
    try:
        with sqlite3.connect(metrics_db) as db:
            row = db.execute("SELECT name FROM sqlite_master WHERE name = 'raw:payments'").fetchone()
            if not row:
                return 0
            return db.execute('SELECT COUNT(*) FROM "raw:payments"').fetchone()[0]
    except sqlite3.Error:
        return 0


def test_payment_failures_fire_the_alert_and_the_webhook_then_resolve(tmp_path):
    rx = Receiver()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEGUARD_") or k == "TRADEGUARD_REQUIRE_SERVICES"
    }
    env.update(
        PYTHONUNBUFFERED="1",
        TRADEGUARD_VAR_DIR=str(tmp_path / "var"),
        TRADEGUARD_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{rx.port}/hook",
        TRADEGUARD_ALERT_INTERVAL_S="2",
    )
    (tmp_path / "fast.yaml").write_text(FAST_RULES)
    applied = cli(env, tmp_path, "alerts", "rules", "apply", "-f", str(tmp_path / "fast.yaml"), "--by", "e2e")
    assert applied.returncode == 0, applied.stderr
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradeguard.cli",
            "demo",
            "--headless",
            "--duration",
            "150",
            "--port",
            str(free_port()),
            "--profile",
            "steady",
            "--rate",
            "20",
            "--seed",
            "3",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while payment_points(tmp_path / "var" / "metrics.db") == 0 and time.monotonic() < deadline:
            assert demo.poll() is None, demo.communicate()[1][-3000:]
            time.sleep(0.5)
        assert payment_points(tmp_path / "var" / "metrics.db") > 0, (
            "the demo wrote no `payments` points within 15 s: the metric pipeline is broken"
        )
        assert rx.wait_for("firing", 6) is None  # healthy traffic: no alert
        chaos = cli(env, tmp_path, "chaos", "payment", "--error-rate", "0.5", "--by", "e2e")
        assert chaos.returncode == 0, chaos.stderr
        fired = rx.wait_for("firing", 45)
        assert fired is not None, f"no firing webhook; got {rx.bodies}"
        assert fired["version"] == "4" and fired["receiver"] == "default"
        assert {"groupKey", "groupLabels", "commonLabels", "commonAnnotations", "externalURL"} <= set(fired)
        [alert] = [a for a in fired["alerts"] if a["labels"]["alertname"] == "PaymentSuccessRateLow"]
        assert alert["status"] == "firing" and alert["fingerprint"] and alert["startsAt"].endswith("Z")
        listed = cli(env, tmp_path, "alerts", "list", "--json")
        assert any(
            a["rule"] == "PaymentSuccessRateLow" and a["state"] == "firing" for a in json.loads(listed.stdout)
        )
        reset = cli(env, tmp_path, "chaos", "payment", "--reset", "--by", "e2e")
        assert reset.returncode == 0, reset.stderr
        resolved = rx.wait_for("resolved", 60)
        assert resolved is not None, f"no resolved webhook; got {[b['status'] for b in rx.bodies]}"
        assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
        assert resolved["groupKey"] == fired["groupKey"]
    finally:
        demo.terminate()
        try:
            demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.communicate()
        rx.close()
