"""Numbers that agree with each other and with now: headline KPIs over the last minute, the 24 h range
across its edges (incl. the embedded store's rollups and retention), Overview vs Resources totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from collectors.registry import open_store
from console.services import ConsoleServices
from dashboards import figures

from .conftest import CountingStore
from .fakes import FakeAlerts, FakeChaos, FakeClock, FakeFleet, FakeRuleStore
from .points import order_point, payment_point, refusal_point, resource_point

CONSOLE = Path(__file__).resolve().parents[3] / "console"
NOW = datetime(2026, 11, 11, 7, 14, 7, 400000, tzinfo=UTC)


def _seed_fault(metrics, now: datetime) -> None:
    """4 healthy minutes, then the last 60 s (to 2 s ago) with a payment fault and slow order.place."""
    n = int(now.timestamp()) - 2
    points = []
    for s in range(n - 300, n - 60):
        points += [
            order_point(s, placed=10, paid=10, gmv=50.0),
            payment_point(s, success=10, failure=0),
            resource_point(s, "order.place", passed=12, rt=20.0),
        ]
    for s in range(n - 60, n):
        points += [
            order_point(s, placed=5, paid=2, gmv=25.0),
            payment_point(s, success=4, failure=6),
            resource_point(s, "order.place", passed=8, block_flow=2, rt=400.0),  # rt_max_ms 800
        ]
    metrics.write(points)


def test_headline_kpis_are_the_last_minute_and_flag_objectives(svc, metrics, clock):
    _seed_fault(metrics, clock.now())
    data = svc.overview("15m")
    k = data.kpis
    assert k["placed_per_s_now"] == pytest.approx(5.0)
    assert k["payment_success_pct_now"] == pytest.approx(40.0)
    # the range figure is secondary and still mostly healthy: 2400 + 240 successes of 2400 + 600 charges
    assert k["payment_success_pct"] == pytest.approx(100 * 2640 / 3000)
    assert k["rt_p99_ms_now"] == pytest.approx(800.0)
    assert k["blocked_share_pct_now"] == pytest.approx(20.0)
    assert data.breaches == {"payment_success_pct_now", "rt_p99_ms_now"}
    nw = data.now_window
    assert nw is not None and nw.end == datetime.fromtimestamp(int(clock.now().timestamp()) - 2, UTC)
    assert nw.seconds == 60

    clock.advance(120)  # the fault is over and nothing happened since: now is empty, not the range
    later = svc.overview("15m")
    assert later.kpis["placed_per_s_now"] == 0.0
    assert later.kpis["payment_success_pct_now"] is None and later.kpis["rt_p99_ms_now"] is None
    assert later.breaches == frozenset()
    assert later.kpis["placed"] == k["placed"]  # the range still holds every order


def test_healthy_minute_is_not_flagged(svc, metrics, clock):
    n = int(clock.now().timestamp())
    metrics.write([payment_point(s, success=99, failure=1) for s in range(n - 30, n - 2)])
    data = svc.overview("5m")
    assert data.kpis["payment_success_pct_now"] == pytest.approx(99.0)
    assert data.breaches == frozenset()


def test_overview_page_shows_now_first_range_second_and_red_past_objective(monkeypatch, svc, metrics, clock):
    _seed_fault(metrics, clock.now())
    monkeypatch.setattr("console.runtime.services", lambda: svc)
    at = AppTest.from_file(str(CONSOLE / "views" / "overview.py"), default_timeout=30)
    at.run()
    assert not at.exception
    metric = {m.label: m for m in at.metric}
    assert metric["Payment success (now)"].value == "40.0 %"
    assert "objective 95 %" in metric["Payment success (now)"].delta
    assert metric["p99 RT of order.place (now)"].value == "800 ms"
    captions = "\n".join(c.value for c in at.caption)
    ranged = svc.overview("5m").kpis["payment_success_pct"]
    assert 80.0 < ranged < 95.0
    assert f"5 min: {ranged:.1f} %" in captions  # the range value, secondary
    assert "the last 60 s" in captions
    assert f"{clock.now():%Y-%m-%d}" in captions  # the window is dated
    assert any("Past objective now" in e.value for e in at.error)


@pytest.fixture
def aged(tmp_path):
    """An embedded store 25 h deep, maintained (1-minute rollups, raw kept 6 h), read at NOW."""
    clock = FakeClock(NOW)
    metrics = CountingStore(open_store(f"sqlite:///{tmp_path / 'metrics.db'}"))
    n = int(NOW.timestamp())
    points = []
    for s in range(n - 25 * 3600, n - 900, 300):  # a quiet order every 5 min for 25 h
        points += [
            order_point(s, placed=1, paid=1, gmv=1.0),
            payment_point(s, success=1, failure=0),
            resource_point(s, "order.place", passed=1, rt=20.0),
        ]
    for s in range(n - 240, n):  # a sale in the last 4 minutes, inside the running 10-min bucket
        points += [
            order_point(s, placed=10, paid=5, gmv=10.0),
            payment_point(s, success=3, failure=7),
            resource_point(s, "order.place", passed=12, rt=50.0),
        ]
    metrics.write(points)
    report = metrics.inner.maintain(NOW)
    assert report["raw_deleted"] > 0 and report["rolled_minutes"] > 0  # the edges are really exercised
    svc = ConsoleServices(
        app="shop",
        metrics=metrics,
        rules=FakeRuleStore(),
        fleet=FakeFleet(),
        chaos=FakeChaos(),
        alerts=FakeAlerts(),
        clock=clock,
    )
    yield svc, n
    metrics.close()


def test_24h_range_spans_its_edges_and_holds_the_running_bucket(aged):
    svc, n = aged
    by = {key: svc.overview(key) for key in ("5m", "1h", "24h")}
    placed = {key: d.kpis["placed"] for key, d in by.items()}
    assert placed["24h"] >= placed["1h"] >= placed["5m"] >= 2400
    w = by["24h"].window
    quiet = sum(1 for s in range(n - 25 * 3600, n - 900, 300) if s >= w.start.timestamp())
    assert placed["24h"] == quiet + 2400  # every order since the window start, the running bucket too
    # the charts are drawn where data exists: payments and latency from rollups older than 6 h too
    day = by["24h"]
    assert day.payment_success.notna().sum() >= 140
    assert day.rt["p99"].notna().sum() >= 140 and day.rt["p99"].iloc[-1] == pytest.approx(100.0)
    assert day.payment_success.iloc[-1] < 95.0  # the running bucket shows the sale's failures
    assert day.kpis["payment_success_pct"] < 100.0
    for fig in (figures.payment_success_figure(day.payment_success), figures.latency_figure(day.rt)):
        assert any(pd.Series(t.y).notna().any() for t in fig.data)
    label = w.label()
    assert label.startswith(f"{w.start:%Y-%m-%d} ") and f"{NOW:%Y-%m-%d %H:%M:%S}" in label


def test_a_lone_bucket_is_drawn_with_a_marker():
    idx = pd.date_range("2026-11-11", periods=5, freq="10min", tz="UTC")
    lone = pd.Series([None, None, 97.0, None, None], index=idx, dtype="float64")
    fig = figures.payment_success_figure(lone)
    assert "markers" in fig.data[0].mode
    full = pd.Series([97.0] * 5, index=idx)
    assert figures.payment_success_figure(full).data[0].mode == "lines"


def test_running_bucket_rate_divides_by_elapsed_seconds(svc, metrics, clock):
    # 10.5 s into a 20 s bucket: the running bucket has 10 recorded seconds (at a bucket's first
    # second it would have none, and the rate would rightly be 0)
    clock.advance(10.5 - clock.now().timestamp() % 20)
    n = int(clock.now().timestamp())
    metrics.write([order_point(s, placed=2, paid=0, gmv=1.0) for s in range(n - 1200, n)])
    data = svc.overview("1h")  # 20 s buckets
    last = data.orders["placed"].iloc[-1]
    assert last == pytest.approx(2.0, rel=0.5)  # not a dip: 2 orders per second, elapsed seconds only
    assert data.orders["placed"].iloc[-3] == pytest.approx(2.0)


def test_overview_and_resources_reconcile(svc, metrics, clock):
    n = int(clock.now().timestamp())
    points = []
    for s in range(n - 200, n):
        points += [
            order_point(s, placed=3, paid=2, gmv=9.0),
            resource_point(s, "order.place", passed=5, block_flow=1, error=1),
            resource_point(s, "payment.charge", passed=2, block_breaker=1),
            refusal_point(s, count=1, reason="out_of_stock", instance="n1"),
            refusal_point(s, count=1, reason="out_of_stock", instance="n2"),  # two nodes, the same second
        ]
        if s % 4 == 0:
            points.append(refusal_point(s, count=1, reason="limit"))
    points.append(refusal_point(n - 10, count=7, reason="conflict", resource="order.pay"))
    metrics.write(points)
    limits = sum(1 for s in range(n - 200, n) if s % 4 == 0)
    ov = svc.overview("5m")
    res = svc.resources("5m")
    place = next(r for r in res.rows if r.resource == "order.place")
    assert res.orders_placed == ov.kpis["placed"] == 600
    assert place.passed == ov.kpis["guard_passed"] == 1000
    # refused by the shop: the nodes' refusals of order.place, every node and reason, not a derivation
    assert place.refused == ov.kpis["refused"] == 400 + limits
    assert ov.refused_by_reason == {"out_of_stock": 400.0, "limit": float(limits)}
    assert res.refused_by_reason == {"out_of_stock": 400, "limit": limits}
    assert next(r for r in res.rows if r.resource == "payment.charge").refused == 0
    assert sum(r.blocked for r in res.rows) == ov.kpis["blocked"] == 400
    # the Overview chart carries one series per reason; its per-second rates sum back to the totals
    seconds = pd.Series(ov.window.bucket_seconds(), index=ov.orders.index)
    assert float((ov.orders["refused:out_of_stock"] * seconds).sum()) == pytest.approx(400.0)
    assert float((ov.orders["refused:limit"] * seconds).sum()) == pytest.approx(limits)
    # rates over the seconds covered (200 s of data in a 5 min range), not the whole range
    assert place.pass_qps == pytest.approx(5.0, rel=0.02)
    assert res.as_of == clock.now()
    detail = svc.resource_detail("order.place", "5m")
    assert detail.refused is not None and list(detail.refused.columns) == ["out_of_stock", "limit"]
    dsec = pd.Series(detail.window.bucket_seconds(), index=detail.refused.index)
    assert float(detail.refused.mul(dsec, axis=0).to_numpy().sum()) == pytest.approx(400.0 + limits)
    fig = figures.resource_figure(detail.rates, detail.rt_ms, "order.place", refused=detail.refused)
    names = [t.name for t in fig.data]
    assert "of which refused by the shop: out of stock" in names
    assert "of which refused by the shop: purchase limit" in names


def test_resources_page_refreshes_as_a_whole_with_as_of(monkeypatch, svc, metrics, clock):
    monkeypatch.setattr("console.runtime.services", lambda: svc)
    n = int(clock.now().timestamp())
    metrics.write(
        [order_point(s, placed=3, paid=2, gmv=9.0) for s in range(n - 20, n)]
        + [resource_point(s, "order.place", passed=5) for s in range(n - 20, n)]
        + [refusal_point(s, count=2, reason="out_of_stock") for s in range(n - 20, n)]
        + [refusal_point(n - 3, count=1, reason="limit")]
    )
    at = AppTest.from_file(str(CONSOLE / "views" / "resources.py"), default_timeout=30)
    at.run()
    assert not at.exception
    captions = "\n".join(c.value for c in at.caption)
    assert f"As of **{clock.now():%Y-%m-%d %H:%M:%S} UTC**" in captions
    metric = {m.label: m.value for m in at.metric}
    assert metric["Orders placed, per shop (5 min)"] == "60"
    assert metric["order.place calls the guard passed"] == "100"
    assert metric["order.place refused by the shop"] == "41"
    assert "out of stock: 40 · purchase limit: 1" in captions
    table = at.dataframe[0].value
    assert table.loc[0, "calls the guard passed"] == 100
    clock.advance(1)
    metrics.write([resource_point(n, "order.place", passed=50)])
    at.run()  # the table is in the refreshed area: it follows the new data
    assert at.dataframe[0].value.loc[0, "calls the guard passed"] == 150
    assert f"As of **{clock.now():%Y-%m-%d %H:%M:%S} UTC**" in "\n".join(c.value for c in at.caption)
    assert timedelta(0) < clock.now() - datetime.fromtimestamp(n, UTC) <= timedelta(seconds=2)


def test_range_rate_divides_by_the_seconds_the_data_covers(svc, metrics, clock):
    """Orders only in the last 10 minutes of a 1 h range: the range rate is their rate (2 / s), not
    their count spread over the hour (0.33 / s); a range the data fills divides by the whole range."""
    n = int(clock.now().timestamp()) - 2
    metrics.write([order_point(s, placed=2, paid=1, gmv=1.0) for s in range(n - 600, n)])
    data = svc.overview("1h")
    k = data.kpis
    assert k["placed"] == 1200
    # from the start of the 20 s bucket holding the first order (the clock is today's: where that
    # bucket starts moves with it) to the window's present end
    first_bucket = datetime.fromtimestamp((n - 600) - (n - 600) % data.window.bucket_s, UTC)
    assert k["range_covered_s"] == (data.window.until - first_bucket).total_seconds()
    assert k["placed_per_s_range"] == pytest.approx(2.0, rel=0.06)
    assert k["placed_per_s_range"] > 3 * k["placed"] / data.window.covered_s
    full = svc.overview("5m")
    assert full.kpis["range_covered_s"] == pytest.approx(full.window.covered_s)
    assert full.kpis["placed_per_s_range"] == pytest.approx(full.kpis["placed"] / full.window.covered_s)


def test_range_rate_of_an_empty_range_is_zero(svc):
    data = svc.overview("15m")
    assert data.kpis["placed_per_s_range"] == 0.0
    assert data.kpis["range_covered_s"] == pytest.approx(data.window.covered_s)


def test_now_rate_of_a_node_that_started_inside_the_last_minute_agrees_with_the_range(svc, metrics, clock):
    """A node up for 20 s placing 12 orders/s: "now" is 12/s over the 20 s it ran (not 4/s spread
    over a minute it was not up), as the range rate is; the help and caption say the seconds used."""
    n = int(clock.now().timestamp()) - 2  # the now-window ends 2 s back
    metrics.write([order_point(s, placed=12, paid=6, gmv=1.0) for s in range(n - 20, n)])
    k = svc.overview("5m").kpis
    assert 20 <= k["now_span_s"] <= 22  # from the first recorded 2 s bucket
    assert k["placed_per_s_now"] == pytest.approx(12.0, rel=0.1)
    assert k["placed_per_s_range"] == pytest.approx(k["placed_per_s_now"], rel=0.2)
