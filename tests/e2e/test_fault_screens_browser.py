"""Overview, Alerts and Resources in a real browser (chromium through playwright) DURING A PAYMENT
FAULT: a node, a worker (journal relay + alert evaluation) and the console on SQLite in a temp dir,
payment chaos at a 60 % error rate (``tradeguard chaos payment --error-rate 0.6``) and shopper
traffic (``tradeguard traffic --rate 20``). Once a payment alert is open, each page is checked for
what on-call needs to read and saved as a screenshot under the test's tmp dir (the path is printed):
``fault-overview.png``, ``fault-alerts.png``, ``fault-resources.png``; no request leaves the
machine (every asset is local). Bounded: < 90 s."""

from __future__ import annotations

import subprocess
import time
from urllib.parse import urlparse

import httpx
import pytest

from alerts.store import AlertStore
from tests.e2e.console_stack import (
    ONCALL,
    Procs,
    add_users,
    clean_env,
    cli,
    metric_value,
    open_url,
    seed,
    shoot,
    start_console,
    wait_for,
)
from tests.services import free_port

pytestmark = pytest.mark.e2e
OPS_TOKEN = "e2e-fault-ops-token"
PAYMENT_RULES = ("PaymentSuccessRateLow", "BreakerOpen")


def test_overview_alerts_and_resources_during_a_payment_fault(tmp_path, browser):
    started = time.monotonic()
    env = clean_env(tmp_path, TRADEGUARD_HEARTBEAT_S="1", TRADEGUARD_ALERT_INTERVAL_S="2",
                    TRADEGUARD_OPS_TOKEN=OPS_TOKEN)
    seed(env, tmp_path)
    add_users(tmp_path / "var", {ONCALL: ("oncall", ())})
    chaos = subprocess.run(cli("chaos", "payment", "--error-rate", "0.6", "--by", "e2e"), env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert chaos.returncode == 0, chaos.stderr[-3000:]
    procs = Procs(tmp_path, env)
    node_port = free_port()
    node_url = f"http://127.0.0.1:{node_port}"
    store = AlertStore(f"sqlite:///{tmp_path / 'var' / 'control.db'}")
    try:
        procs.start("node", cli("node", "--port", str(node_port)))
        procs.start("worker", cli("worker"))

        def node_up() -> bool:
            procs.alive("node")
            return httpx.get(f"{node_url}/ops/health", timeout=2).status_code == 200

        wait_for(node_up, 40, "the node's /ops/health")
        procs.start("traffic", cli("traffic", "--url", node_url, "--rate", "20", "--duration", "75",
                                   "--seed", "11"))

        console_url = start_console(procs)

        def payment_alert() -> int | None:
            procs.alive("worker")
            for a in store.open_alerts():
                if a.rule in PAYMENT_RULES:
                    return a.id
            return None

        alert_id = wait_for(payment_alert, 45, "a payment alert (pending or firing)", step=1.0)
        print(f"\npayment alert #{alert_id} after {time.monotonic() - started:.0f} s")

        with browser.new_context(viewport={"width": 1600, "height": 1000}) as ctx:
            page = ctx.new_page()
            external: list[str] = []  # every asset is shipped locally: works offline
            page.on("request", lambda r: external.append(r.url) if r.url.startswith("http")
                    and urlparse(r.url).hostname not in ("127.0.0.1", "localhost") else None)
            open_url(page, console_url, ONCALL, "Order-flow health")  # the login page first
            page.get_by_text("Payment chaos is ON").first.wait_for(timeout=10_000)  # the banner
            success_now = metric_value(page, "Payment success (now)")
            assert success_now.endswith("%") and float(success_now.split()[0]) < 95.0, success_now
            assert metric_value(page, "Orders placed, per shop (5 min)") not in ("0", "–")
            shoot(page, tmp_path / "fault-overview.png", max_height=5000)

            open_url(page, f"{console_url}/alerts", ONCALL, "Alerts")
            picker = page.get_by_label("Alert (open alerts only)")
            picker.click()
            page.get_by_role("option", name=f"#{alert_id} ").first.click()
            page.get_by_text("Recent gateway errors").first.wait_for(timeout=15_000)
            shoot(page, tmp_path / "fault-alerts.png", max_height=5000)

            open_url(page, f"{console_url}/resources", ONCALL, "Resources")
            assert metric_value(page, "order.place calls the guard passed") not in ("0", "–")
            shoot(page, tmp_path / "fault-resources.png", max_height=5000)
            assert external == [], external
        print(f"fault screenshots: {tmp_path}")
        assert time.monotonic() - started < 90
    finally:
        procs.stop_all()
        store.close()
