"""The Traces page through ``AppTest``: search, waterfall, service map, deep link, empty state."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.services.traces import TraceFilter, alert_exemplars, find_traces, service_map
from tradeguard.tracing import SpanRecord, SpanStore, TraceReader

PAGE = Path(__file__).resolve().parents[3] / "console" / "views" / "traces.py"
TID_OK = "a" * 32
TID_BAD = "b" * 32


def _span(tid, sid, parent, name, kind, start_ms, dur_ms, *, status="ok", t0=0, **attrs):
    start, end = t0 + int(start_ms * 1e6), t0 + int((start_ms + dur_ms) * 1e6)
    message = "declined" if status == "error" else ""
    return SpanRecord(tid, sid, parent, name, kind, start, end, status, message, attrs, "node-1")


@pytest.fixture
def reader(tmp_path, svc, clock):
    store = SpanStore(tmp_path / "traces.db")
    t0 = int(clock.now().timestamp() * 1e9) - 60 * 10**9
    ok = [
        _span(TID_OK, "1" * 16, None, "POST /orders", "server", 0, 30, t0=t0,
              **{"tradeguard.order_id": "o_1"}),
        _span(TID_OK, "2" * 16, "1" * 16, "order.place", "internal", 2, 25, t0=t0,
              **{"tradeguard.guard.decision": "passed"}),
        _span(TID_OK, "3" * 16, "2" * 16, "UPDATE trading.db", "client", 5, 3, t0=t0,
              **{"db.system": "sqlite"}),
    ]
    bad = [
        _span(TID_BAD, "4" * 16, None, "POST /orders/{order_id}/pay", "server", 0, 80, t0=t0 + 10**9,
              **{"tradeguard.order_id": "o_2"}),
        _span(TID_BAD, "5" * 16, "4" * 16, "payment.charge", "client", 5, 70, status="error", t0=t0 + 10**9,
              **{"peer.service": "payment-gateway"}),
    ]
    store.write([(ok, "sampled"), (bad, "error")])
    svc.traces = TraceReader(store)
    yield svc.traces
    store.close()


@pytest.fixture
def page(monkeypatch, svc):
    monkeypatch.setattr("console.runtime.services", lambda: svc)

    def open_page(**query) -> AppTest:
        at = AppTest.from_file(str(PAGE), default_timeout=30)
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_page


def test_traces_page_lists_draws_and_filters(page, reader):
    at = page()
    table = at.dataframe[0].value
    assert list(table["trace id"]) == [TID_BAD, TID_OK]  # newest first
    assert list(table["outcome"]) == ["error", "sampled"]
    assert len(at.get("plotly_chart")) == 2  # the waterfall of the chosen trace and the service map
    at.selectbox(key="traces_outcome").set_value("sampled")
    at.button[0].click().run()
    assert not at.exception
    assert list(at.dataframe[0].value["trace id"]) == [TID_OK]
    assert at.selectbox(key="traces_selected").value == TID_OK


def test_deep_link_by_order_and_bad_trace_id(page, reader):
    at = page(order_id="o_2")
    assert list(at.dataframe[0].value["order"]) == ["traces?order_id=o_2"]  # a link to the order's traces
    at = page(trace_id="not-hex")
    assert any("32 hex digits" in str(w.value) for w in at.warning)


def test_empty_store_and_no_store(page, svc, tmp_path):
    at = page()
    assert any("span store" in str(w.value) for w in at.warning)  # no reader attached
    store = SpanStore(tmp_path / "empty.db")
    svc.traces = TraceReader(store)
    at = page()
    assert any("No trace kept" in str(i.value) for i in at.info)
    store.close()


def test_service_map_edges_have_rate_errors_and_p99(reader, clock):
    now_ns = int(clock.now().timestamp() * 1e9)
    edges, errors = service_map(reader, now_ns, minutes=15)
    assert errors == []
    by = {e.target: e for e in edges}
    assert by["payment-gateway"].error_rate_pct == 100.0 and by["payment-gateway"].p99_ms == pytest.approx(70)
    assert by["database (sqlite)"].calls == 1 and by["database (sqlite)"].error_rate_pct == 0.0
    assert by["database (sqlite)"].rate_per_s == pytest.approx(1 / 900, abs=1e-3)
    assert find_traces(reader, TraceFilter(resource="payment.charge")).rows[0]["trace_id"] == TID_BAD


def test_deep_link_by_resource_and_outcome_fills_the_form(page, reader):
    at = page(resource="payment.charge", outcome="error")
    assert at.text_input(key="traces_resource").value == "payment.charge"
    assert at.selectbox(key="traces_outcome").value == "error"
    assert list(at.dataframe[0].value["trace id"]) == [TID_BAD]
    at = page(resource="order.place", outcome="blocked")
    assert not at.dataframe and any("No trace kept" in str(i.value) for i in at.info)


def _alert(clock, *, seconds_after_t0: float, **labels) -> dict:
    from datetime import timedelta

    fired = clock.now() - timedelta(seconds=60) + timedelta(seconds=seconds_after_t0)
    return {"id": 1, "rule": "PaymentErrors", "labels": labels, "fired_at": fired.isoformat()}


def test_alert_exemplars_are_the_resources_kept_traces_before_it_fired(reader, clock):
    # fired 30 s after the failed charge: that trace is the exemplar (errors before sampled ones)
    found = alert_exemplars(reader, _alert(clock, seconds_after_t0=30, resource="payment.charge"))
    assert [t["trace_id"] for t in found.rows] == [TID_BAD]
    both = alert_exemplars(reader, _alert(clock, seconds_after_t0=30, resource="order.place"))
    assert [t["trace_id"] for t in both.rows] == [TID_OK]  # only sampled ones: shown rather than none
    # another node's alert, or one that fired long after: none, and the note says why
    assert alert_exemplars(reader, _alert(clock, seconds_after_t0=30, resource="payment.charge",
                                          instance="node-2")).rows == []
    late = alert_exemplars(reader, _alert(clock, seconds_after_t0=3600, resource="payment.charge"))
    assert late.rows == [] and "No kept trace of payment.charge" in late.note
    # not a resource alert: nothing to look up
    assert alert_exemplars(reader, _alert(clock, seconds_after_t0=30, instance="node-1")).rows == []
    none = alert_exemplars(None, _alert(clock, seconds_after_t0=30, resource="x"))
    assert "no span store" in none.note.lower()
