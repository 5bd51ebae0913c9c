"""The flow rule form's "Suggest" button in a real browser (chromium through playwright) against the
session's console stack (``tests/e2e/conftest.py``), signed in as an sre user (issue 17).

Half an hour of per-second traffic of a resource whose response time climbs past 200/s is written to
the stack's metric store (as a node's collector would); on the Rules page a new flow rule for that
resource asks for a suggestion: the knee, the QPS and concurrency proposals, the evidence scatter and
the impact preview show; the QPS proposal goes into the form (nothing is saved or applied).
Screenshot: ``artifacts/console-screenshots/rules-suggest.png``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from collectors.query import Point
from tests.e2e.console_stack import APP, SRE, shoot, sign_in

pytestmark = pytest.mark.e2e
RESOURCE = "e2e.checkout"
KNEE = 200.0


def write_knee_traffic(metrics_url: str, seconds: int = 1800) -> None:
    """``seconds`` of RESOURCE's per-second stats ending now: load steps every 10 s from 20 to 339/s,
    response time flat at 20 ms up to 200/s, then rising 0.5 ms per extra call/s (± 5 %)."""
    from collectors.registry import open_store

    rnd = random.Random(11)
    end = datetime.now(UTC).replace(microsecond=0)
    end -= timedelta(seconds=end.second % 10)
    points = []
    for i in range(seconds):
        q = 20 + ((i // 10) % 30) * 11
        rt = (20.0 + 0.5 * max(0.0, q - KNEE)) * rnd.uniform(0.95, 1.05)
        points.append(Point(
            "resource_stats",
            {"app": APP, "instance": "e2e-knee", "resource": RESOURCE},
            {"pass": q, "block_flow": 0, "block_param": 0, "block_system": 0, "block_breaker": 0,
             "success": q, "error": 0, "rt_avg_ms": rt, "rt_max_ms": 2 * rt, "concurrency": q * rt / 1000},
            end - timedelta(seconds=seconds - i),
        ))
    store = open_store(metrics_url)
    try:
        store.write(points)
    finally:
        store.close()


def test_suggest_on_the_rule_form_shows_the_knee_and_fills_the_form(stack, browser):
    write_knee_traffic(f"sqlite:///{stack['tmp'] / 'var' / 'metrics.db'}")
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        suggest_and_use(page, stack)
    except BaseException:
        shoot(page, "rules-suggest-failure")  # what the page showed when the test failed
        raise
    finally:
        page.close()


def suggest_and_use(page, stack) -> None:
    sign_in(page, stack["console"], SRE, path="rules")
    page.get_by_role("heading", name="Rules").first.wait_for(timeout=30_000)
    page.get_by_text("in force").first.wait_for(timeout=30_000)
    # the tabs' charts draw first: on a busy machine the renderer takes its time
    page.get_by_role("tab", name="Edit (form)").click(timeout=90_000)
    page.get_by_label("Rule", exact=True).click()
    page.get_by_role("option", name="+ new rule").click()
    threshold = page.get_by_role("spinbutton", name="threshold *", exact=True)
    expect(threshold).to_have_value("", timeout=30_000)  # the new rule's (empty) form is drawn
    page.get_by_label("resource *", exact=True).filter(visible=True).click()  # not a stale one
    page.get_by_role("option", name=RESOURCE, exact=True).click()  # known: it has recorded traffic
    page.get_by_role("heading", name="Suggest a threshold").wait_for(timeout=30_000)
    page.get_by_role("button", name="Suggest", exact=True).click()
    reason = page.get_by_text("knee at ").first
    reason.wait_for(timeout=60_000)
    text = reason.inner_text()
    knee = float(text.split("knee at ")[1].split("/s")[0])
    assert abs(knee - KNEE) <= 0.1 * KNEE, text
    qps = int(text.split("proposing ")[1].split("/s")[0])
    assert abs(qps - 0.8 * knee) <= 1, text  # 20 % below the knee
    page.get_by_text(f"Impact preview of {qps}/s: would block").wait_for(timeout=15_000)
    charts = page.locator("[data-testid='stPlotlyChart']")
    assert charts.filter(has_text="Throughput vs response time").count() == 1  # the evidence
    assert charts.filter(has_text=f"proposed {qps}/s replayed").count() == 1  # the impact preview

    page.get_by_role("button", name=f"Use {qps}/s (grade qps) in the form").click()
    page.get_by_text("Put into the form above: grade qps").wait_for(timeout=15_000)
    assert float(threshold.input_value()) == qps
    page.mouse.move(800, 10)
    page.wait_for_timeout(1500)  # the charts paint
    shoot(page, "rules-suggest")
