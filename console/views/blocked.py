"""The Resources page's "who is blocked" section (``show_blocked(svc, range_key)``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.runtime import show_errors


def show_blocked(svc: Any, range_key: str) -> None:
    """Top origins, client IPs, buyers and SKUs refused in the range (the guardians' block log)."""
    data = svc.blocked(range_key)
    st.subheader("Who is blocked")
    show_errors(data.errors)
    if data.empty:
        st.caption("No blocked call in this range.")
        return
    st.caption(f"{data.total} blocked calls, all instances (top {len(data.origins)} of each).")
    cols = st.columns(4)
    for col, (title, rows) in zip(
        cols,
        (("origin", data.origins), ("client IP", data.client_ips), ("buyer", data.buyers),
         ("SKU", data.skus)),
        strict=True,
    ):
        with col:
            st.markdown(f"**{title}**")
            if rows:
                st.dataframe([{title: v, "blocked": n} for v, n in rows], hide_index=True)
            else:
                st.caption("none")
