"""Traces: find kept traces (order id, trace id, resource, outcome, duration), one trace as a
waterfall with each span's attributes, and the node's service map.

Deep links (``console.trace_links``): ``?trace_id=…`` opens that trace, ``?order_id=…`` lists the
order's traces, ``?resource=…&outcome=…`` a resource's blocked / slow / error traces (from the
Resources page and an alert's detail); every order id in the table links to its traces. Each run
issues at most 3 span-store reads (search, the chosen trace, the service map's client spans).
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from console.runtime import chart, services, show_errors
from console.services.traces import OUTCOMES, TraceFilter, find_traces, service_map, trace_detail
from console.trace_links import traces_url
from dashboards.traces import service_map_figure, waterfall_figure

st.title("Traces")
svc = services()
store = svc.traces
params = st.query_params

with st.form("traces_search"):
    c1, c2, c3 = st.columns(3)
    order_id = c1.text_input("Order id", value=params.get("order_id", ""), key="traces_order")
    trace_id = c2.text_input("Trace id", value=params.get("trace_id", ""), key="traces_trace")
    resource = c3.text_input("Resource", value=params.get("resource", ""),
                             placeholder="payment.charge or POST /orders", key="traces_resource")
    c4, c5, _ = st.columns(3)
    wanted = params.get("outcome", "")
    outcome = c4.selectbox("Outcome", options=["", *OUTCOMES], format_func=lambda o: o or "any",
                           index=1 + OUTCOMES.index(wanted) if wanted in OUTCOMES else 0,
                           key="traces_outcome")
    min_ms = c5.number_input("Slower than (ms)", min_value=0.0, value=0.0, step=10.0, key="traces_min_ms")
    st.form_submit_button("Search", icon=":material/search:")

found = find_traces(store, TraceFilter(trace_id=trace_id, order_id=order_id, resource=resource,
                                       outcome=outcome, min_ms=min_ms or None))
show_errors(found.errors)

if not found.rows and not found.errors:
    st.info("**No trace kept matches.** Errors, blocked and slow requests are always kept; the rest at "
            "TRADEGUARD_TRACE_SAMPLE.", icon=":material/hourglass_empty:")
if found.rows:
    table = [
        {
            "started (UTC)": datetime.fromtimestamp(t["start_ns"] / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3],
            "route": t["root"],
            "duration (ms)": round(t["duration_ms"], 2),
            "outcome": t["outcome"],
            "status": t.get("status_code"),
            "rule": t.get("rule") or "",
            "order": traces_url(order_id=t["order_id"]) if t.get("order_id") else None,
            "node": t["instance"],
            "spans": t["spans"],
            "trace id": t["trace_id"],
        }
        for t in found.rows
    ]
    st.caption(f"{len(table)} kept trace(s), newest first.")
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "order": st.column_config.LinkColumn("order", display_text=r"order_id=(.*)$",
                                             help="the order's traces (placement, payment…)")})
    ids = [t["trace_id"] for t in found.rows]
    chosen = st.selectbox(
        "Trace",
        options=ids,
        format_func=lambda i: next(f"{r['route']} · {r['duration (ms)']} ms · {r['outcome']} · {i}"
                                   for r in table if r["trace id"] == i),
        key="traces_selected",
    )
    detail = trace_detail(store, chosen)
    show_errors(detail.errors)
    if detail.spans:
        st.subheader(f"Trace {detail.trace_id}")
        chart(waterfall_figure(detail.spans), key="traces_waterfall")
        with st.expander("Span attributes"):
            for s in detail.spans:
                status = " · **ERROR** " + s.get("status_message", "") if s["status"] == "error" else ""
                st.markdown(f"{'  ' * s['depth']}`{s['name']}` {s['duration_ms']:.2f} ms{status}")
                st.json(s["attributes"], expanded=False)

st.subheader("Service map")
now_ns = int(svc.now().timestamp() * 1e9)
edges, map_errors = service_map(store, now_ns, minutes=15)
show_errors(map_errors)
if edges:
    st.caption("Calls from nodes to their dependencies over the last 15 min, from kept traces only "
               "(sampling keeps errors and slow calls, so rates are of kept calls).")
    chart(service_map_figure(edges), key="traces_service_map")
elif not map_errors:
    st.caption("No dependency call in the kept traces of the last 15 min.")
