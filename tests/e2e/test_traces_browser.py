"""The Traces page in a real browser (chromium through playwright) against a real node under traffic.

Reuses the session's console stack (``tests/e2e/conftest.py``: node, worker, console, shopper
simulator on SQLite in a temp dir). Waits for a kept trace with an order id in the span store, opens
``/traces?order_id=…`` (the deep link every order id carries), checks the waterfall and the service
map are drawn, screenshots the page (``traces.png``), then follows the Resources page's link to a
resource's traces. The deep link is opened before sign-in: the login page keeps it.
"""

from __future__ import annotations

import pytest

from tests.e2e.console_stack import SRE, open_url, shoot, wait_for
from tests.e2e.test_console_browser import open_page

pytestmark = pytest.mark.e2e


def kept_order_trace(stack) -> dict | None:
    from tradeguard.tracing import SpanStore, TraceQuery

    path = stack["tmp"] / "var" / "traces.db"
    if not path.exists():
        return None
    store = SpanStore(path)
    try:
        rows = [t for t in store.search(TraceQuery(limit=200)) if t.order_id and t.spans >= 3]
        return {"trace_id": rows[0].trace_id, "order_id": rows[0].order_id} if rows else None
    finally:
        store.close()


def open_traces(page, stack, query: str) -> None:
    open_url(page, f"{stack['console']}/traces?{query}", SRE, "Traces")


def test_traces_page_waterfall_service_map_and_links(stack, browser):
    found = wait_for(lambda: kept_order_trace(stack), 90, "a kept trace with an order id")
    assert isinstance(found, dict)
    page = browser.new_page(viewport={"width": 1680, "height": 1050})
    open_traces(page, stack, f"order_id={found['order_id']}")
    assert page.get_by_label("Order id").input_value() == found["order_id"]
    page.get_by_role("heading", name="Trace ").first.wait_for(timeout=20_000)
    page.get_by_role("heading", name="Service map").wait_for(timeout=10_000)
    charts = page.locator("[data-testid='stPlotlyChart']")
    charts.first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    path = shoot(page, "traces")
    print(f"\ntraces screenshot: {path}")
    assert charts.count() == 2  # the chosen trace's waterfall and the service map

    # Resources → a resource's blocked traces (a link, same session)
    open_page(page, stack, "resources")
    link = page.locator("a[href*='traces?resource=']").first
    link.wait_for(timeout=30_000)
    assert "outcome=blocked" in (link.get_attribute("href") or "")
    link.click()
    page.get_by_role("heading", name="Traces").first.wait_for(timeout=30_000)
    page.wait_for_timeout(2000)
    assert page.get_by_label("Resource").input_value() != ""
    shoot(page, "traces-from-resources")
