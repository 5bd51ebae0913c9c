"""The Sales page: figures against hand-computed values (tests/unit/console/sales_seed.py), and a
merchant of shop A never obtains a figure of shop B — through the services, page query parameters,
edited session state or the CSV downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from common.identity import Forbidden, Principal
from console import runtime
from console.services import ConsoleServices, period
from domain.adapters.sku_sales import SkuSalesModel
from domain.adapters.unit_of_work import build_trading_db

from . import sales_seed as seed
from .fakes import FakeAlerts, FakeChaos, FakeClock, FakeFleet, FakeRuleStore

PAGE = Path(__file__).resolve().parents[3] / "console" / "views" / "sales.py"
MIA = Principal("mia", "merchant", ("shop-a",))
SAM = Principal("sam", "sre")


@pytest.fixture
def sales_svc(tmp_path, metrics):
    trading = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    seed.seed(metrics, trading.engine)
    svc = ConsoleServices(
        app=seed.APP, metrics=metrics, rules=FakeRuleStore(), fleet=FakeFleet(), chaos=FakeChaos(),
        alerts=FakeAlerts(), clock=FakeClock(seed.NOW), skus=SkuSalesModel(trading.engine),
    )
    yield svc
    trading.engine.dispose()


def test_figures_against_hand_computed_values(sales_svc):
    report = sales_svc.as_user(SAM).sales_report("shop-a", period(seed.FIRST, seed.LAST))
    cur, prev = report.current, report.previous
    assert (cur.placed, cur.paid, cur.units) == (10, 8, 14)
    money = (cur.gross_cents, cur.discount_cents, cur.refund_cents, cur.net_cents)
    assert money == (85000, 4951, 5525, 74524)
    assert cur.aov_cents == 8005 and cur.refund_rate == 1 / 8 and cur.paid_conversion == 8 / 10
    assert (prev.placed, prev.net_cents, prev.aov_cents, prev.refund_rate) == (5, 50000, 10000, 0.0)
    shown = {k.label: (k.text(k.current, "¥"), k.text(k.previous, "¥"), k.change_pct) for k in report.kpis}
    for label, (now_text, prev_text, change) in seed.EXPECTED.items():
        assert shown[label][:2] == (now_text, prev_text), label
        if change is None:
            assert shown[label][2] is None, label
        else:
            assert shown[label][2] == pytest.approx(change, abs=0.01), label
    channel = report.by_channel.set_index("channel")
    assert channel.loc["app", "orders"] == 8 and channel.loc["app", "gross"] == "¥690.00"
    assert channel.loc["app", "discounts"] == "¥40.01"
    assert channel.loc["app", "sales after discounts"] == "¥649.99"
    assert channel.loc["web", "sales after discounts"] == "¥150.50"
    assert channel.loc["app", "share %"] == "81.2"
    assert dict(zip(report.by_tx_type["tx_type"], report.by_tx_type["orders"], strict=True)) == {
        "flash_sale": 6, "fixed_price": 4}
    assert list(report.top_revenue["sku"]) == ["A-1", "A-2"]  # A-3 sold in the previous period only
    assert list(report.top_units["sku"]) == ["A-2", "A-1"]
    first = report.top_revenue.iloc[0]
    assert first["revenue"] == "¥300.00" and first["refunded"] == "¥55.25"
    heat = report.heatmap
    assert (heat.loc["Tue", 9], heat.loc["Tue", 20], heat.loc["Wed", 20]) == (4, 2, 4)
    assert int(heat.values.sum()) == 10
    today = sales_svc.as_user(SAM).sales_today("shop-a")
    assert (today.totals.placed, today.last_5min_orders, today.totals.net_cents) == (4, 3, 4000)
    f = report.fulfilment
    assert (f.shipped, f.delivered, f.received, f.auto_received, f.failed) == (6, 4, 2, 1, 1)
    assert (f.cod_collected, f.cod_cents) == (1, 4990)
    assert report.by_fulfilment.to_dict("records") == [
        {"tx_type": "fixed_price", "shipped": 4, "delivered": 3, "received": 2, "of which automatically": 1,
         "delivery failed": 0, "cash collected": 0, "cash collected amount": "¥0.00"},
        {"tx_type": "cod", "shipped": 2, "delivered": 1, "received": 0, "of which automatically": 0,
         "delivery failed": 1, "cash collected": 1, "cash collected amount": "¥49.90"},
    ]
    assert report.by_carrier.to_dict("records") == [
        {"carrier": "SF", "shipped": 5, "share %": "83.3"},
        {"carrier": "YTO", "shipped": 1, "share %": "16.7"},
    ]
    assert report.queries == 8


def test_a_merchant_gets_no_figure_of_another_shop_through_the_services(sales_svc):
    mine = sales_svc.as_user(MIA)
    assert mine.sales_shops() == ["shop-a"]
    assert sales_svc.as_user(SAM).sales_shops() == ["shop-a", "shop-b"]
    p = period(seed.FIRST, seed.LAST)
    calls = (lambda: mine.sales_report("shop-b", p), lambda: mine.sales_today("shop-b"),
             lambda: sales_svc.sales_report(MIA, "shop-b", p), lambda: sales_svc.sales_today(MIA, "shop-b"))
    for call in calls:
        with pytest.raises(Forbidden, match="user mia \\(merchant\\) may not read sales of shop shop-b"):
            call()
    # nor any operational figure, nor the raw stores
    with pytest.raises(Forbidden, match="may not read the operational pages"):
        mine.overview("5m")
    with pytest.raises(AttributeError, match="not available to console pages"):
        _ = mine.metrics
    assert mine.sales_report("shop-a", p).current.placed == 10


@pytest.fixture
def csvs(monkeypatch):
    """Every CSV the page offers for download, as text."""
    got: list[str] = []
    real = streamlit.download_button

    def capture(label, data, *args, **kwargs):
        got.append(data.decode() if isinstance(data, bytes) else str(data))
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", capture)
    return got


def _open(sales_svc, monkeypatch, user: Principal, query: dict | None = None) -> AppTest:
    runtime.install(sales_svc)
    monkeypatch.setattr(runtime, "_installed", sales_svc)
    at = AppTest.from_file(str(PAGE), default_timeout=30)
    at.session_state[runtime.PRINCIPAL_KEY] = user
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.session_state["sales_dates"] = (seed.FIRST, seed.LAST)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _everything(at: AppTest, csv_texts: list[str]) -> str:
    parts = [str(e.value) for kind in ("markdown", "caption", "error", "info", "warning", "success", "title")
             for e in at.get(kind)]
    parts += [f"{m.label} {m.value} {m.proto.body}" for m in at.metric]
    parts += [d.value.to_csv() for d in at.dataframe]
    parts += [str(s.options) for s in at.selectbox]
    return "\n".join(parts + csv_texts)


def _no_shop_b(text: str) -> None:
    for marker in seed.SHOP_B_MARKERS:
        assert marker not in text, marker


def test_page_shows_the_figures_and_offers_a_csv_of_every_table(sales_svc, monkeypatch, csvs):
    at = _open(sales_svc, monkeypatch, MIA)
    assert "Sales" in [t.value for t in at.title]
    metric = {m.label: m.value for m in at.metric}
    assert metric["Net sales"] == "¥745.24" and metric["Average order value"] == "¥80.05"
    assert metric["Refund rate"] == "12.5 %" and metric["Orders today"] == "4"
    assert metric["Orders, last 5 min"] == "3"
    assert len(csvs) == 8  # summary, 2 breakdowns, 2 top-10s, fulfilment by tx type and carrier, heat map
    assert "Net sales,¥745.24,¥500.00,+49.0" in csvs[0]
    # no previous refunds: the change is "new", never "None"
    assert "Refund rate,12.5 %,0.0 %,new" in csvs[0] and "None" not in csvs[0]
    for label, value in seed.FULFILMENT.items():
        assert metric[label] == value, label
    delta = {m.label: m.proto.delta for m in at.metric}
    assert delta["Refund rate"] == "new (none in the previous period)"
    assert delta["Net sales"] == "+49.0 % vs previous period"
    summary = next(d.value for d in at.dataframe if "change %" in d.value.columns)
    assert list(summary["change %"]) == ["+49.0", "+100.0", "-20.0", "+180.0", "new", "-20.0"]
    _no_shop_b(_everything(at, csvs))


def test_merchant_query_parameter_for_another_shop_is_refused(sales_svc, monkeypatch, csvs):
    at = _open(sales_svc, monkeypatch, MIA, {"shop": "shop-b"})
    errors = "\n".join(e.value for e in at.error)
    assert "Shop shop-b: not allowed" in errors and "may not read sales of shop shop-b" in errors
    assert at.selectbox(key="sales_shop").options == ["shop-a"]
    _no_shop_b(_everything(at, csvs))


def test_merchant_edited_widget_state_for_another_shop_is_refused(sales_svc, monkeypatch, csvs):
    """Whatever the shop picker's state says (a tampered widget value outside its options, a
    session state edit), the services refuse a shop the merchant is not bound to."""
    at = _open(sales_svc, monkeypatch, MIA)
    csvs.clear()
    from streamlit.delta_generator import DeltaGenerator

    real = DeltaGenerator.selectbox

    def tampered(self, label, options, *args, **kwargs):
        value = real(self, label, options, *args, **kwargs)
        return "shop-b" if kwargs.get("key") == "sales_shop" else value

    monkeypatch.setattr(DeltaGenerator, "selectbox", tampered)
    at.run()
    assert not at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "Not allowed." in errors and "may not read sales of shop shop-b" in errors
    assert not at.metric and not at.dataframe and not csvs
    _no_shop_b(_everything(at, csvs))


def test_sre_may_pick_any_shop(sales_svc, monkeypatch, csvs):
    at = _open(sales_svc, monkeypatch, SAM, {"shop": "shop-b"})
    assert at.selectbox(key="sales_shop").value == "shop-b"
    assert {m.label: m.value for m in at.metric}["Orders"] == "999"


def test_change_is_new_or_a_dash_never_none():
    """Task: the "change %" column/metric showed ``None`` with no previous period."""
    from dashboards import sales as figures

    assert figures.change_text(150, 100) == "+50.0" and figures.change_text(50, 100) == "-50.0"
    assert figures.change_text(0, 100) == "-100.0"
    assert figures.change_text(5, 0) == figures.change_text(0.125, None) == "new"
    assert figures.change_text(0, 0) == figures.change_text(None, None) == figures.change_text(None, 3) == "–"
    first_period = figures.kpis(figures.Totals(placed=4, paid=2, units=5, gmv_cents=1000), figures.Totals())
    frame = figures.kpi_frame(first_period, "¥")
    assert list(frame["change %"]) == ["new", "new", "new", "new", "–", "new"]  # refund rate: 0 of 2, none
    assert list(frame["previous period"]) == ["¥0.00", "0", "–", "0", "–", "–"]
    assert "None" not in frame.to_csv(index=False) and "nan" not in frame.to_csv(index=False)
    assert [k.delta_text() for k in first_period][:2] == ["new (none in the previous period)"] * 2
    assert first_period[4].delta_text() is None
    empty = figures.breakdown([], "channel", "¥")
    assert empty.empty


def test_page_of_a_shop_with_no_previous_period_shows_new_not_none(sales_svc, monkeypatch, csvs):
    """11-08 (shop-a's first day with orders) against 11-07 (none): every change is "new" or "–", on
    screen, in the metrics' deltas and in the CSV."""
    at = _open(sales_svc, monkeypatch, MIA)
    first_day = seed.FIRST.replace(day=8)
    at.session_state["sales_dates"] = (first_day, first_day)
    csvs.clear()
    at.run()
    assert not at.exception
    summary = next(d.value for d in at.dataframe if "change %" in d.value.columns)
    assert set(summary["change %"]) <= {"new", "–"} and "new" in set(summary["change %"])
    assert all("None" not in str(m.proto.delta) for m in at.metric)
    assert "None" not in csvs[0] and ",new" in csvs[0]
