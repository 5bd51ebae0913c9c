"""Chaos (demo aid): the payment gateway's latency, error rate and outage on the running nodes.

The settings live in the control DB and every node polls them (in force within 2 s);
the console changes them through any live node's ops API. A run issues 1 heartbeat
read and 1 node call (GET /ops/chaos/payment); applying adds 1 call.
"""

from __future__ import annotations

import streamlit as st

from console.runtime import services
from console.services.common import error_text

svc = services()
st.title("Chaos: payment gateway")
st.caption(
    "Demo aid: make the simulated payment gateway slow, flaky or down on every node, then watch "
    "the Overview (payment success, breakers) and the alerts react. Reset when done."
)

if msg := st.session_state.pop("chaos_flash", None):
    st.success(msg, icon=":material/check_circle:")

try:
    settings = svc.chaos_settings()
except Exception as exc:
    st.warning(f"**Chaos control unavailable.** {error_text(exc)}", icon=":material/warning:")
    st.stop()

latency = int(settings.get("latency_ms", 0) or 0)
error_rate = float(settings.get("error_rate", 0.0) or 0.0)
outage = bool(settings.get("outage", False))
calm = latency == 0 and error_rate == 0 and not outage
c = st.columns(3)
c[0].metric("Added latency", f"{latency} ms")
c[1].metric("Error rate", f"{100 * error_rate:.0f} %")
c[2].metric("Outage", "ON" if outage else "off")
if calm:
    st.success("The payment gateway is calm (no chaos).", icon=":material/wb_sunny:")
else:
    st.error("Chaos is ON for the payment gateway on every node.", icon=":material/thunderstorm:")

with st.form("chaos_form"):
    new_latency = st.slider("Added latency (ms)", 0, 5000, latency, 50, key="chaos_latency")
    new_rate = st.slider(
        "Error rate (share of charges that fail)", 0.0, 1.0, error_rate, 0.05, key="chaos_rate"
    )
    new_outage = st.toggle("Outage (every charge fails at once)", value=outage, key="chaos_outage")
    st.caption(f"Recorded as **{svc.principal.name}** (signed in).")
    c1, c2, _ = st.columns([1, 1, 4])
    may = svc.may("chaos.set")
    apply = c1.form_submit_button("Apply", type="primary", disabled=not may)
    reset = c2.form_submit_button("Reset (calm)", disabled=not may)
if refused := svc.refusal("chaos.set"):
    st.caption(f":material/lock: Read-only: {refused}.")
if apply or reset:
    try:
        if reset:
            result = svc.set_chaos(latency_ms=0, error_rate=0.0, outage=False)
        else:
            result = svc.set_chaos(
                latency_ms=int(new_latency),
                error_rate=float(new_rate),
                outage=bool(new_outage),
            )
    except Exception as exc:
        st.error(f"Not applied: {error_text(exc)}", icon=":material/error:")
    else:
        st.session_state.chaos_flash = (
            f"Chaos set: latency {int(result.get('latency_ms', 0))} ms, error rate "
            f"{100 * float(result.get('error_rate', 0)):.0f} %, "
            f"outage {'ON' if result.get('outage') else 'off'}"
            " — nodes apply it within 2 s."
        )
        st.rerun()
