"""Overview, Alerts and Resources in a real browser (chromium through playwright) DURING A PAYMENT
FAULT: a node, a worker (journal relay + alert evaluation) and the console on SQLite in a temp dir,
payment chaos at a 60 % error rate (``tradeguard chaos payment --error-rate 0.6``) and shopper
traffic (``tradeguard traffic --rate 20``). Once a payment alert is open, each page is checked for
what on-call needs to read and saved as a screenshot under the test's tmp dir (the path is printed):
``fault-overview.png``, ``fault-alerts.png``, ``fault-resources.png``. Bounded: < 90 s."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from alerts.store import AlertStore
from tests.e2e.test_console_browser import CHROMIUM_ARGS, Procs, cli, wait_for
from tests.services import free_port, need, need_binary

pytestmark = pytest.mark.e2e
APP = "tradeguard"
OPS_TOKEN = "e2e-fault-ops-token"
PAYMENT_RULES = ("PaymentSuccessRateLow", "BreakerOpen")


def _shoot(page, path: Path) -> Path:
    """The whole page: Streamlit scrolls inside its main area, so grow the viewport to the content."""
    size = page.viewport_size
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer]')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), 5000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def _open(page, url: str, heading: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name=heading).first.wait_for(timeout=20_000)
    page.wait_for_timeout(2500)  # live fragments and charts render
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, f"{url}: {errors.first.inner_text()}"


def _metric(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_overview_alerts_and_resources_during_a_payment_fault(tmp_path):
    started = time.monotonic()
    chromium = need_binary("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "python playwright is not installed (dev extra)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(
        TRADEGUARD_VAR_DIR=str(tmp_path / "var"),
        TRADEGUARD_APP=APP,
        TRADEGUARD_HEARTBEAT_S="1",
        TRADEGUARD_ALERT_INTERVAL_S="2",
        TRADEGUARD_OPS_TOKEN=OPS_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    seeded = subprocess.run(cli("seed"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    chaos = subprocess.run(cli("chaos", "payment", "--error-rate", "0.6", "--by", "e2e"), env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert chaos.returncode == 0, chaos.stderr[-3000:]
    procs = Procs(tmp_path, env)
    node_port, console_port = free_port(), free_port()
    node_url, console_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{console_port}"
    store = AlertStore(f"sqlite:///{tmp_path / 'var' / 'control.db'}")
    try:
        procs.start("node", cli("node", "--port", str(node_port)))
        procs.start("worker", cli("worker"))
        procs.start("console", cli("console", "--port", str(console_port)))

        def node_up() -> bool:
            procs.alive("node")
            return httpx.get(f"{node_url}/ops/health", timeout=2).status_code == 200

        wait_for(node_up, 40, "the node's /ops/health")
        procs.start("traffic", cli("traffic", "--url", node_url, "--rate", "20", "--duration", "75",
                                   "--seed", "11"))

        def console_up() -> bool:
            procs.alive("console")
            return httpx.get(f"{console_url}/_stcore/health", timeout=2).text.strip() == "ok"

        wait_for(console_up, 40, "the console's /_stcore/health")

        def payment_alert() -> int | None:
            procs.alive("worker")
            for a in store.open_alerts():
                if a.rule in PAYMENT_RULES:
                    return a.id
            return None

        alert_id = wait_for(payment_alert, 45, "a payment alert (pending or firing)", step=1.0)
        print(f"\npayment alert #{alert_id} after {time.monotonic() - started:.0f} s")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})

            _open(page, console_url, "Order-flow health")
            page.get_by_text("Payment chaos is ON").first.wait_for(timeout=10_000)  # the banner
            success_now = _metric(page, "Payment success (now)")
            assert success_now.endswith("%") and float(success_now.split()[0]) < 95.0, success_now
            assert _metric(page, "Orders placed, per shop (5 min)") not in ("0", "–")
            _shoot(page, tmp_path / "fault-overview.png")

            _open(page, f"{console_url}/alerts", "Alerts")
            picker = page.get_by_label("Alert (open alerts only)")
            picker.click()
            page.get_by_role("option", name=f"#{alert_id} ").first.click()
            page.get_by_text("Recent gateway errors").first.wait_for(timeout=15_000)
            _shoot(page, tmp_path / "fault-alerts.png")

            _open(page, f"{console_url}/resources", "Resources")
            assert _metric(page, "order.place calls the guard passed") not in ("0", "–")
            _shoot(page, tmp_path / "fault-resources.png")
            browser.close()
        print(f"fault screenshots: {tmp_path}")
        assert time.monotonic() - started < 90
    finally:
        procs.stop_all()
        store.close()
