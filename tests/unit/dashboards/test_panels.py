"""Query builders, frames and figures: what each panel reads and draws."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from collectors.query import Row
from dashboards import figures, queries
from dashboards.frames import frame, has_any, per_second, ratio_percent
from dashboards.impact import FlowProposal, TrafficSample, replay
from dashboards.ranges import RANGES, last_seconds, window

NOW = datetime(2026, 11, 11, 0, 0, 7, 500000, tzinfo=UTC)


@pytest.mark.parametrize("key", list(RANGES))
def test_window_includes_the_running_bucket_and_spans_the_range(key):
    w = window(key, NOW)
    range_s, bucket_s = RANGES[key]
    assert w.end - timedelta(seconds=bucket_s) <= NOW < w.end  # the last bucket holds now
    assert int(w.end.timestamp()) % bucket_s == 0
    assert w.until == NOW and w.covered_s == pytest.approx(range_s - (w.end - NOW).total_seconds())
    seconds = w.bucket_seconds()
    assert seconds[:-1] == [bucket_s] * (len(seconds) - 1)
    assert seconds[-1] == max(1.0, (NOW - w.buckets()[-1]).total_seconds())
    assert w.seconds == range_s
    assert len(w.buckets()) == range_s // bucket_s <= 180


def test_window_rejects_unknown_range_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="5m, 15m, 1h, 24h"):
        window("2h", NOW)


def test_queries_filter_by_app_and_carry_the_window():
    w = window("5m", NOW)
    q = queries.orders_rate(w, "shop")
    assert (q.measurement, tuple(q.fields), q.aggregate, q.bucket_s) == (
        "orders",
        ("placed", "paid"),
        "sum",
        2,
    )
    assert (q.start, q.end, dict(q.where)) == (w.start, w.end, {"app": "shop"})
    p99 = queries.order_place_rt(w, "shop", percentile="p99")
    assert p99.aggregate == "p99" and p99.where["resource"] == "order.place"
    blocked = queries.blocked_by_reason(w, None)
    assert tuple(blocked.fields) == ("block_flow", "block_param", "block_system", "block_breaker")
    assert dict(blocked.where) == {}
    assert queries.breaker_states(w).end - queries.breaker_states(w).start == timedelta(hours=24)
    gmv = queries.gmv_per_minute(w)
    assert gmv.bucket_s == 60 and int(gmv.end.timestamp()) % 60 == 0
    traffic = queries.resource_traffic(last_seconds(NOW, 600), "order.place", "shop")
    assert traffic.bucket_s == 1 and tuple(traffic.group_by) == ("instance",) and traffic.aggregate == "max"


def test_frame_fills_missing_buckets_and_sums_series():
    w = window("5m", NOW)
    t0 = w.buckets()[3]
    rows = [
        Row(t0, {"shop": "a"}, {"placed": 4.0, "paid": 2.0}),
        Row(t0 + timedelta(seconds=1), {"shop": "b"}, {"placed": 2.0, "paid": None}),  # same 2 s bucket
    ]
    df = frame(rows, ["placed", "paid"], w)
    assert len(df) == 150
    assert df.loc[pd.Timestamp(t0)].tolist() == [6.0, 2.0]
    assert df["placed"].sum() == 6.0
    rates = per_second(df, w)
    assert rates.loc[pd.Timestamp(t0), "placed"] == 3.0
    assert has_any(df) and not has_any(frame([], ["placed"], w))
    gaps = frame(rows, ["placed"], w, fill=None)
    assert gaps["placed"].isna().sum() == 149


def test_ratio_is_missing_without_denominator():
    r = ratio_percent(pd.Series([9.0, 0.0]), pd.Series([10.0, 0.0]))
    assert r.iloc[0] == pytest.approx(90.0)
    assert pd.isna(r.iloc[1])


def _texts(fig) -> str:
    return json.dumps(fig.to_plotly_json(), default=str)


def test_figures_have_titles_units_and_reason_colours():
    w = window("5m", NOW)
    idx = pd.DatetimeIndex(w.buckets())
    blocked = pd.DataFrame({r: [1.0] * len(idx) for r in queries.REASONS}, index=idx)
    fig = figures.blocked_figure(blocked)
    assert fig.layout.yaxis.title.text == "blocked calls / s"
    assert fig.layout.xaxis.title.text == "time (UTC)"
    assert "Blocked per second" in fig.layout.title.text
    assert {t.name: t.marker.color for t in fig.data}["flow"] == figures.COLORS["flow"]
    assert [t.name for t in fig.data] == ["flow", "hot param", "system", "breaker"]
    assert fig.layout.legend.orientation == "h"
    orders = figures.orders_figure(pd.DataFrame({"placed": [1.0], "paid": [0.5]}, index=idx[:1]))
    assert orders.layout.yaxis.title.text == "orders / s"
    rt = figures.latency_figure(pd.DataFrame({"p50": [10.0], "p99": [40.0]}, index=idx[:1]))
    assert rt.layout.yaxis.title.text == "ms" and len(rt.data) == 2
    res = figures.resource_figure(
        pd.DataFrame({"pass": [3.0], "block_flow": [1.0], "error": [0.0]}, index=idx[:1]),
        pd.Series([12.0], index=idx[:1]),
        "order.place",
    )
    assert [t.name for t in res.data] == ["passed by the guard", "blocked: flow", "mean RT (ms, right)"]
    ful = figures.deliveries_figure(
        pd.DataFrame({"shipped": [4.0, 2.0], "delivered": [1.0, 3.0], "received": [0.0, 1.0]}, index=idx[:2]))
    assert ful.layout.yaxis.title.text == "sub-orders / min"
    assert "Fulfilment per minute" in ful.layout.title.text
    assert [(t.name, list(t.y)) for t in ful.data] == [
        ("shipped", [4.0, 2.0]), ("delivered", [1.0, 3.0]), ("received", [0.0, 1.0])]
    assert {t.name: t.line.color for t in ful.data}["received"] == figures.COLORS["received"]


def test_empty_figures_say_no_data():
    assert "No orders in this range" in _texts(figures.orders_figure(pd.DataFrame()))
    nothing = pd.DataFrame({c: [0.0] for c in queries.DELIVERY_STEPS}, index=pd.DatetimeIndex([NOW]))
    assert "No shipments or deliveries in this range" in _texts(figures.deliveries_figure(nothing))
    zero = pd.DataFrame({r: [0.0] for r in queries.REASONS}, index=pd.DatetimeIndex([NOW]))
    assert "Nothing blocked" in _texts(figures.blocked_figure(zero))
    assert "No payments yet" in _texts(figures.payment_success_figure(pd.Series([None], dtype=float)))
    assert "No recorded traffic" in _texts(figures.impact_figure(replay([], FlowProposal(threshold=1))))


def test_impact_figure_stacks_would_pass_and_would_block():
    r = replay([TrafficSample(second=100, passed=8, blocked=2)], FlowProposal(threshold=5))
    fig = figures.impact_figure(r)
    by_name = {t.name: list(t.y) for t in fig.data}
    assert by_name["would pass"] == [5] and by_name["would block"] == [5]
    assert by_name["blocked by rules in force"] == [2]
