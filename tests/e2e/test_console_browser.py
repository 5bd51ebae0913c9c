"""The console in a real browser (Debian's chromium through Python playwright) against a real node,
the shopper simulator and the console, all on SQLite in a temp dir, each a subprocess on a free port.

Opens every page (no Streamlit exception shown), lowers the flow threshold of ``order.place`` on the
Rules page and applies it, sees the node's blocked count rise (GET /ops/stats) and the Overview's
blocked chart show it. Screenshots of every page go to ``artifacts/console-screenshots/`` (or
``$TRADEGUARD_ARTIFACTS_DIR/console-screenshots``); the test prints the folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, need, need_binary

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
APP = "tradeguard"
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
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BASELINE = {"flow": [{"name": "place-limit", "resource": "order.place", "grade": "qps", "threshold": 500}]}
LOWERED = 2


OPS_TOKEN = "e2e-console-ops-token"
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
SRE, MERCHANT = "e2e-sre", "e2e-merchant"
PASSWORD = "e2e browser password, long enough"  # test-only

def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tradeguard.cli", *args]


def artifacts_dir() -> Path:
    base = Path(os.environ.get("TRADEGUARD_ARTIFACTS_DIR") or ROOT / "artifacts")
    out = base / "console-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.3) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Procs:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.running: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                argv, env=self.env, cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running.append((name, proc, log))
        return proc

    def log(self, name: str) -> str:
        return next(log.read_text()[-4000:] for n, _, log in self.running if n == name)

    def alive(self, name: str) -> None:
        for n, proc, log in self.running:
            if n == name and proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")

    def stop_all(self) -> None:
        for _name, proc, _log in reversed(self.running):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc, _log in reversed(self.running):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def seed_users_and_sales(var: Path) -> None:
    """Users made with the account service (the console now asks to sign in), and two shops' sales
    three hours ago: shop-a (the merchant's) and shop-b, whose figures must never show to the merchant."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from accounts.service import AccountService
    from accounts.store import UserStore
    from collectors.registry import open_store
    from domain.adapters import orm
    from domain.adapters.unit_of_work import build_trading_db
    from tests.unit.console.sales_seed import _order, _refund

    accounts = AccountService(UserStore(f"sqlite:///{var / 'control.db'}"))
    accounts.add_user(SRE, "sre", PASSWORD, by="e2e")
    accounts.add_user(MERCHANT, "merchant", PASSWORD, shops=["shop-a"], by="e2e")
    accounts.close()
    # within the embedded store's raw retention (older points are read from rollups made by maintain())
    day = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    metrics = open_store(f"sqlite:///{var / 'metrics.db'}")
    points = [
        _order(day, "shop-a", "app", "fixed_price", placed=4, paid=3, gmv=400.00, discount=40.00, items=6),
        _order(day + timedelta(hours=1), "shop-a", "web", "flash_sale", placed=2, paid=2, gmv=150.50,
               discount=9.50, items=3),
        _refund(day + timedelta(minutes=90), "shop-a", requested=1, completed=1, amount=55.25),
        _order(day, "shop-b", "marketplace", "auction", placed=999, paid=998, gmv=99999.99, discount=777.77,
               items=4242),
    ]
    metrics.write([replace(pt, tags={**pt.tags, "app": APP}) for pt in points])
    metrics.close()
    trading = build_trading_db(f"sqlite:///{var / 'trading.db'}")
    with trading.engine.begin() as conn:
        conn.execute(insert(orm.sku_sales_hourly), [
            {"shop_id": "shop-a", "sku": "A-1", "period": day, "units": 5, "revenue_cents": 30000,
             "refunded_units": 1, "refunded_cents": 5525},
            {"shop_id": "shop-b", "sku": "B-SECRET", "period": day, "units": 4242, "revenue_cents": 9999999,
             "refunded_units": 0, "refunded_cents": 0},
        ])
    trading.engine.dispose()


def sign_in(page, stack, name: str, *, shot: str | None = None, path: str = "") -> None:
    """A full page load starts a new Streamlit session: the login page, then the page of ``path``."""
    page.goto(f"{stack['console']}/{path}", wait_until="domcontentloaded")
    page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
    assert page.locator("[data-testid='stMetric']").count() == 0  # nothing of the data pages
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    if shot:
        shoot(page, shot)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"{name}").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Log out").wait_for(timeout=30_000)


def order_place_blocked(node_url: str) -> int:
    """Calls of order.place blocked in the node's last minute (its GET /ops/stats)."""
    stats = httpx.get(f"{node_url}/ops/stats", timeout=3, headers=AUTH).json()
    res = stats.get("resources", {}).get("order.place") or {}
    return int((res.get("minute") or {}).get("blocked", 0))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    chromium = need_binary("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need(False, "python playwright is not installed (dev extra)")
    tmp = tmp_path_factory.mktemp("console-e2e")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEGUARD_") or k == "TRADEGUARD_REQUIRE_SERVICES"
    }
    env.update(
        TRADEGUARD_VAR_DIR=str(tmp / "var"),
        TRADEGUARD_APP=APP,
        TRADEGUARD_RULES_POLL_S="0.5",
        TRADEGUARD_HEARTBEAT_S="1",
        TRADEGUARD_OPS_TOKEN=OPS_TOKEN,  # the node's control routes; the console sends it too
        PYTHONUNBUFFERED="1",
    )
    seeded = subprocess.run(cli("seed"), env=env, cwd=tmp, capture_output=True, text=True, timeout=90)
    assert seeded.returncode == 0, seeded.stderr[-3000:]

    from guardians.store import RuleStore

    store = RuleStore(f"sqlite:///{tmp / 'var' / 'control.db'}")
    store.apply(APP, BASELINE, "e2e", "baseline: a limit traffic never reaches")
    store.close()
    seed_users_and_sales(tmp / "var")

    procs = Procs(tmp, env)
    node_port, console_port = free_port(), free_port()
    node_url, console_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{console_port}"
    try:
        procs.start("node", cli("node", "--port", str(node_port)))
        procs.start("console", cli("console", "--port", str(console_port)))
        procs.start("worker", cli("worker"))  # the journal relay: orders reach the metric store only so

        def healthy() -> bool:
            procs.alive("node")
            return httpx.get(f"{node_url}/ops/health", timeout=2).status_code == 200

        wait_for(healthy, 60, "the node's /ops/health")
        wait_for(
            lambda: httpx.get(f"{node_url}/ops/rules", timeout=2, headers=AUTH).json().get("version") == 1,
            15,
            "the node to enforce rule version 1",
        )
        procs.start(
            "traffic",
            cli(
                "traffic",
                "--url",
                node_url,
                "--rate",
                "25",
                "--profile",
                "steady",
                "--duration",
                "300",
                "--seed",
                "7",
            ),
        )

        def console_up() -> bool:
            procs.alive("console")
            return httpx.get(f"{console_url}/_stcore/health", timeout=2).text.strip() == "ok"

        wait_for(console_up, 60, "the console's /_stcore/health")
        yield {"node": node_url, "console": console_url, "procs": procs, "chromium": chromium, "tmp": tmp}
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def browser(stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=stack["chromium"], headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


LINKS = {"overview": "Overview", "alerts": "Alerts", "resources": "Resources", "rules": "Rules",
         "instances": "Instances", "chaos": "Chaos"}


def open_page(page, stack, name: str) -> None:
    """Through the sidebar's link (a full page load starts a new Streamlit session: sign in again)."""
    page.locator("[data-testid='stSidebar']").get_by_role("link", name=LINKS[name], exact=True).click()
    page.get_by_role("heading", name=TITLES[name]).first.wait_for(timeout=30_000)
    page.wait_for_timeout(2500)  # live fragments and charts render
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, f"{name}: {errors.first.inner_text()}"


def shoot(page, name: str) -> Path:
    """A screenshot of the whole page: Streamlit scrolls inside its main area, so the viewport is
    grown to the content's height first (and restored after)."""
    path = artifacts_dir() / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer]')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), 6000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def metric_value(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_console_pages_rule_change_and_blocked_traffic(stack, browser):
    out = artifacts_dir()
    print(f"\nconsole screenshots: {out}")
    page = browser.new_page(viewport={"width": 1680, "height": 1050})
    sign_in(page, stack, SRE, shot="login")
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
    sign_in(page, stack, MERCHANT)
    page.get_by_role("heading", name="Sales").first.wait_for(timeout=30_000)  # lands on Sales
    page.wait_for_timeout(2500)
    assert metric_value(page, "Net sales") == "¥495.25"  # gross 600.00 − 49.50 − 55.25, to the cent
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
    assert len(seen) == 7
    # shop-b by URL, an operational page by URL
    sign_in(page, stack, MERCHANT, path="sales?shop=shop-b")
    page.get_by_text("Shop shop-b: not allowed").wait_for(timeout=30_000)
    page.wait_for_timeout(2000)
    seen.append(page.locator("[data-testid='stMain']").inner_text())
    shoot(page, "sales-merchant-other-shop-refused")
    sign_in(page, stack, MERCHANT, path="rules")
    page.get_by_text("Rules: not allowed.").wait_for(timeout=30_000)
    everything = "\n".join(seen)
    for marker in ("99,999.99", "777.77", "4,242", "B-SECRET", "marketplace", "auction"):
        assert marker not in everything, marker
    page.close()
