"""What the real-browser tests share: subprocesses of the CLI, the users, the sign-in through the login
page, screenshots, and the console stack (node + worker + console + shopper traffic on SQLite).

Every browser test signs in through the console's login page ("Username", "Password", "Sign in"):
``sign_in`` for a fresh page, ``open_url`` to open a URL and sign in only when the login page shows.
Users are made with the account service in the control DB before the console starts (``add_users``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, need, need_binary

ROOT = Path(__file__).resolve().parents[2]
APP = "tradeguard"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "e2e browser password, long enough"  # test-only: every e2e user gets it
OPS_TOKEN = "e2e-console-ops-token"
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
SRE, MERCHANT, ONCALL = "e2e-sre", "e2e-merchant", "e2e-oncall"
BASELINE = {"flow": [{"name": "place-limit", "resource": "order.place", "grade": "qps", "threshold": 500}]}


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


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of the stack's subprocesses: no TRADEGUARD_* of the caller, a var dir in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(TRADEGUARD_VAR_DIR=str(tmp / "var"), TRADEGUARD_APP=APP, PYTHONUNBUFFERED="1", **extra)
    return env


def seed(env: dict[str, str], tmp: Path) -> None:
    done = subprocess.run(cli("seed"), env=env, cwd=tmp, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]


def add_users(var: Path, users: Mapping[str, tuple[str, tuple[str, ...]]]) -> None:
    """Users (name → (role, shops)) in the control DB, made with the account service, password PASSWORD."""
    from accounts.service import AccountService
    from accounts.store import UserStore

    accounts = AccountService(UserStore(f"sqlite:///{var / 'control.db'}"))
    try:
        for name, (role, shops) in users.items():
            accounts.add_user(name, role, PASSWORD, shops=shops, by="e2e")
    finally:
        accounts.close()


def start_console(procs: Procs) -> str:
    """``tradeguard console`` on a free port; its URL once /_stcore/health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs.start("console", cli("console", "--port", str(port)))

    def up() -> bool:
        procs.alive("console")
        return httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok"

    wait_for(up, 60, "the console's /_stcore/health")
    return url


def start_node(procs: Procs, name: str = "node") -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs.start(name, cli("node", "--port", str(port)))

    def healthy() -> bool:
        procs.alive(name)
        return httpx.get(f"{url}/ops/health", timeout=2).status_code == 200

    wait_for(healthy, 60, f"the {name}'s /ops/health")
    return url


def need_chromium() -> str:
    """Debian's chromium and python playwright (skips, or fails under REQUIRE_SERVICES, without)."""
    path = need_binary("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need(False, "python playwright is not installed (dev extra)")
    return path


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless chromium through playwright."""
    path = need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# ---------------------------------------------------------------------------------------------- pages
def shoot(page, name: str | Path, max_height: int = 6000) -> Path:
    """A screenshot of the whole page (``name`` under artifacts_dir(), or a path): Streamlit scrolls
    inside its main area, so the viewport is grown to the content's height first (and restored)."""
    path = name if isinstance(name, Path) else artifacts_dir() / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer]')].map(e => e.scrollHeight))"
    )
    grown = min(max(int(height), size["height"]), max_height)
    page.set_viewport_size({"width": size["width"], "height": grown})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def fill_login(page, name: str, password: str = PASSWORD, *, shot: str | Path | None = None) -> None:
    """On the login page: type the name and password, press Sign in, wait until signed in."""
    assert page.locator("[data-testid='stMetric']").count() == 0  # nothing of the data pages
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    if shot:
        shoot(page, shot)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Log out").wait_for(timeout=30_000)


def sign_in(page, url: str, name: str, *, path: str = "", shot: str | Path | None = None) -> None:
    """Open ``url/path`` (a full load: a new Streamlit session) signed in as ``name``: the login page,
    unless the browser's session cookie already signs ``name`` in (another user is logged out
    first); the console then shows the page of ``path`` with its query."""
    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
    login = page.get_by_role("textbox", name="Username")
    logout = page.get_by_role("button", name="Log out")
    login.or_(logout).first.wait_for(timeout=30_000)
    if logout.count():
        sidebar = page.locator("[data-testid='stSidebar']").inner_text()
        if f"{name} · role" in sidebar:
            return
        logout.click()
        login.wait_for(timeout=30_000)
    fill_login(page, name, shot=shot)


def open_url(page, url: str, name: str, heading: str) -> None:
    """Open ``url`` (a full load) and wait for ``heading``; sign in first if the login page shows."""
    page.goto(url, wait_until="domcontentloaded")
    login = page.get_by_role("textbox", name="Username")
    target = page.get_by_role("heading", name=heading).first
    login.or_(target).first.wait_for(timeout=30_000)
    if login.count():
        fill_login(page, name)
    target.wait_for(timeout=30_000)
    page.wait_for_timeout(2500)  # live fragments and charts render
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, f"{url}: {errors.first.inner_text()}"


def metric_value(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


# ---------------------------------------------------------------------------------------------- stack
def seed_sales(var: Path) -> None:
    """Two shops' sales three hours ago: shop-a (the merchant's) and shop-b, whose figures must never
    show to the merchant."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from collectors.registry import open_store
    from domain.adapters import orm
    from domain.adapters.unit_of_work import build_trading_db
    from tests.unit.console.sales_seed import _delivery, _order, _refund

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
        _delivery(day + timedelta(minutes=30), "shop-a", "fixed_price", "SF", shipped=5),
        _delivery(day + timedelta(minutes=95), "shop-a", "fixed_price", delivered=4, received=3),
        _delivery(day, "shop-b", "auction", "SecretCarrier", shipped=4242, cod_amount=77777.77),
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


@contextlib.contextmanager
def live_stack(tmp: Path) -> Iterator[dict]:
    """Node + worker (journal relay: orders reach the metric store only through it) + console +
    shopper traffic at 25/s, on SQLite in ``tmp``; users SRE and MERCHANT (shop-a); sales of two shops."""
    env = clean_env(
        tmp,
        TRADEGUARD_RULES_POLL_S="0.5",
        TRADEGUARD_HEARTBEAT_S="1",
        TRADEGUARD_OPS_TOKEN=OPS_TOKEN,  # the node's control routes; the console sends it too
    )
    seed(env, tmp)
    from guardians.store import RuleStore

    store = RuleStore(f"sqlite:///{tmp / 'var' / 'control.db'}")
    store.apply(APP, BASELINE, "e2e", "baseline: a limit traffic never reaches")
    store.close()
    add_users(tmp / "var", {SRE: ("sre", ()), MERCHANT: ("merchant", ("shop-a",))})
    seed_sales(tmp / "var")
    procs = Procs(tmp, env)
    try:
        procs.start("worker", cli("worker"))
        node_url = start_node(procs)
        wait_for(
            lambda: httpx.get(f"{node_url}/ops/rules", timeout=2, headers=AUTH).json().get("version") == 1,
            15,
            "the node to enforce rule version 1",
        )
        procs.start("traffic", cli("traffic", "--url", node_url, "--rate", "25", "--profile", "steady",
                                   "--duration", "300", "--seed", "7"))
        console_url = start_console(procs)
        yield {"node": node_url, "console": console_url, "procs": procs, "tmp": tmp}
    finally:
        procs.stop_all()
