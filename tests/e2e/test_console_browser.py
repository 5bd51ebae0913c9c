"""The console in a real browser (Debian's chromium through Python playwright) against the shared
console stack of ``tests/e2e/conftest.py``: a node, a worker (journal relay), the shopper simulator and
the console, all on SQLite in a temp dir, each a subprocess on a free port; users sign in on the login page.

Opens every page (no Streamlit exception shown), lowers the flow threshold of ``order.place`` on the
Rules page and applies it, sees the node's blocked count rise (GET /ops/stats) and the Overview's
blocked chart show it. Screenshots of every page go to ``artifacts/console-screenshots/`` (or
``$TRADEGUARD_ARTIFACTS_DIR/console-screenshots``); the test prints the folder.
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.console_stack import (
    APP,
    AUTH,
    MERCHANT,
    SRE,
    artifacts_dir,
    metric_value,
    shoot,
    sign_in,
    wait_for,
)

pytestmark = pytest.mark.e2e

PAGES = {
    "overview": "",
    "alerts": "alerts",
    "resources": "resources",
    "rules": "rules",
    "instances": "instances",
    "chaos": "chaos",
}
TITLES = {
    "overview": "Order-flow health",
    "alerts": "Alerts",
    "resources": "Resources",
    "rules": "Rules",
    "instances": "Instances",
    "chaos": "Chaos: payment gateway",
}
LOWERED = 2


def order_place_blocked(node_url: str) -> int:
    """Calls of order.place blocked in the node's last minute (its GET /ops/stats)."""
    stats = httpx.get(f"{node_url}/ops/stats", timeout=3, headers=AUTH).json()
    res = stats.get("resources", {}).get("order.place") or {}
    return int((res.get("minute") or {}).get("blocked", 0))


LINKS = {"overview": "Overview", "alerts": "Alerts", "resources": "Resources", "rules": "Rules",
         "instances": "Instances", "chaos": "Chaos"}


def open_page(page, stack, name: str) -> None:
    """Through the sidebar's link (a full page load starts a new Streamlit session: sign in again)."""
    page.locator("[data-testid='stSidebar']").get_by_role("link", name=LINKS[name], exact=True).click()
    page.get_by_role("heading", name=TITLES[name]).first.wait_for(timeout=30_000)
    page.wait_for_timeout(2500)  # live fragments and charts render
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, f"{name}: {errors.first.inner_text()}"


def test_console_pages_rule_change_and_blocked_traffic(stack, browser):
    out = artifacts_dir()
    print(f"\nconsole screenshots: {out}")
    page = browser.new_page(viewport={"width": 1680, "height": 1050})
    sign_in(page, stack["console"], SRE, shot="login")
    # let traffic flow so the charts have something to show
    wait_for(lambda: metric_value_after_load(page, stack), 45, "orders on the Overview")
    shoot(page, "overview-before")

    # Rules: lower the flow threshold of order.place through the form, review, apply
    assert order_place_blocked(stack["node"]) == 0
    open_page(page, stack, "rules")
    shoot(page, "rules-before")
    page.get_by_role("tab", name="Edit (form)").click()
    threshold = page.get_by_role("spinbutton", name="threshold *", exact=True)
    threshold.fill(str(LOWERED))
    threshold.press("Tab")
    page.get_by_role("button", name="Save to draft & validate").click()
    page.get_by_text("The draft has changes that are not applied yet").wait_for(timeout=15_000)
    shoot(page, "rules-form")
    page.get_by_role("tab", name="Review & apply").click()
    diff = page.locator("[data-testid='stCode']").filter(has_text="threshold: 500").first
    diff.wait_for(timeout=15_000)  # the diff shows the change
    assert "threshold: 2" in diff.inner_text()
    shoot(page, "rules-review")
    assert page.get_by_role("textbox", name="Your name *", exact=True).count() == 0
    page.get_by_role("textbox", name="Reason *", exact=True).fill("flash sale: hold order.place")
    page.get_by_role("button", name="Apply as version 2").click()
    page.get_by_text("Version 2 applied").wait_for(timeout=15_000)
    shoot(page, "rules-applied")
    from guardians.store import RuleStore

    store = RuleStore(f"sqlite:///{stack['tmp'] / 'var' / 'control.db'}")
    assert store.current(APP).created_by == SRE  # the audit names the signed-in user
    store.close()

    # the node enforces it within a few seconds: its blocked count rises
    wait_for(
        lambda: httpx.get(f"{stack['node']}/ops/rules", timeout=2, headers=AUTH).json().get("version") == 2,
        10,
        "the node to pick up rule version 2",
    )
    blocked = wait_for(
        lambda: order_place_blocked(stack["node"]) > 0 and order_place_blocked(stack["node"]),
        10,
        "order.place blocks in /ops/stats",
    )
    print(f"order.place blocked in the node's last minute: {blocked}")

    # the Overview's blocked chart shows it (metrics travel node → outbox → store → console)
    open_page(page, stack, "overview")

    def overview_shows_blocks() -> bool:
        page.wait_for_timeout(1000)
        return page.get_by_text("Nothing blocked in this range").count() == 0 and metric_value(
            page, "Blocked share"
        ) not in ("–", "0.0 %")

    wait_for(overview_shows_blocks, 30, "the Overview's blocked chart and share", step=0.5)
    assert page.locator("[data-testid='stException']").count() == 0
    shoot(page, "overview-blocked")
    for name in PAGES:
        if name != "overview":
            open_page(page, stack, name)
            shoot(page, name)
    # Chaos goes through a live node's ops API (found from the heartbeats)
    open_page(page, stack, "chaos")
    page.get_by_role("button", name="Reset (calm)").click()
    page.get_by_text("nodes apply it within 2 s").wait_for(timeout=15_000)
    assert httpx.get(f"{stack['node']}/ops/chaos/payment", timeout=3).json()["error_rate"] == 0
    page.close()
    print(f"console screenshots saved: {sorted(p.name for p in out.glob('*.png'))}")


def metric_value_after_load(page, stack) -> bool:
    open_page(page, stack, "overview")
    return metric_value(page, "Orders placed, per shop (5 min)") not in ("0", "–")


def test_merchant_sees_only_its_own_shop(stack, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1680, "height": 1050}, accept_downloads=True)
    sign_in(page, stack["console"], MERCHANT)
    page.get_by_role("heading", name="Sales").first.wait_for(timeout=30_000)  # lands on Sales
    page.wait_for_timeout(2500)
    assert metric_value(page, "Net sales") == "¥495.25"  # gross 600.00 − 49.50 − 55.25, to the cent
    fulfilment = [metric_value(page, label) for label in ("Shipped", "Delivered", "Received")]
    assert fulfilment == ["5", "4", "3"]  # from the deliveries figure
    shoot(page, "sales-merchant")
    seen = [page.locator("[data-testid='stMain']").inner_text()]
    nav = page.locator("[data-testid='stSidebar']").inner_text()
    assert "Sales" in nav and "Rules" not in nav and "Overview" not in nav
    # every CSV download
    buttons = page.locator("[data-testid='stDownloadButton'] button")
    for i in range(buttons.count()):
        with page.expect_download() as dl:
            buttons.nth(i).click()
        path = tmp_path / f"dl{i}.csv"
        dl.value.save_as(path)
        seen.append(path.read_text())
    assert len(seen) == 9
    assert "None" not in seen[0] and "None" not in seen[1]  # no previous period: "new" / "–", never None
    # shop-b by URL, an operational page by URL
    sign_in(page, stack["console"], MERCHANT, path="sales?shop=shop-b")
    page.get_by_text("Shop shop-b: not allowed").wait_for(timeout=30_000)
    page.wait_for_timeout(2000)
    seen.append(page.locator("[data-testid='stMain']").inner_text())
    shoot(page, "sales-merchant-other-shop-refused")
    sign_in(page, stack["console"], MERCHANT, path="rules")
    page.get_by_text("Rules: not allowed.").wait_for(timeout=30_000)
    everything = "\n".join(seen)
    for marker in ("99,999.99", "777.77", "4,242", "B-SECRET", "marketplace", "auction"):
        assert marker not in everything, marker
    page.close()
