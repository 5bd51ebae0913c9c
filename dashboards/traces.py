"""Trace figures: one trace as a waterfall, the node's service map. Pure functions of plain data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from dashboards.figures import TEMPLATE

_COLORS = {"server": "#4c78a8", "client": "#f58518", "internal": "#54a24b", "error": "#e45756"}
_SHOWN = ("tradeguard.guard.decision", "tradeguard.guard.rule", "tradeguard.guard.reason",
          "tradeguard.guard.wait_ms", "tradeguard.order_id", "http.response.status_code", "db.statement")


def _hover(span: dict[str, Any]) -> str:
    attrs = span.get("attributes", {})
    lines = [f"<b>{span['name']}</b>", f"{span['duration_ms']:.2f} ms at +{span['offset_ms']:.2f} ms"]
    if span.get("status") == "error":
        lines.append(f"ERROR {span.get('status_message', '')}")
    lines += [f"{k}: {str(attrs[k])[:90]}" for k in _SHOWN if k in attrs]
    return "<br>".join(lines)


def waterfall_figure(spans: Sequence[dict[str, Any]], *, title: str = "") -> go.Figure:
    """Spans in tree order (``depth``, ``offset_ms``, ``duration_ms``) as horizontal bars."""
    labels = [f"{'  ' * s['depth']}{s['name']} · {i}" for i, s in enumerate(spans)]
    colors = [_COLORS["error"] if s.get("status") == "error" else _COLORS.get(s.get("kind", ""), "#999")
              for s in spans]
    fig = go.Figure(go.Bar(
        y=labels, x=[max(s["duration_ms"], 0.01) for s in spans], base=[s["offset_ms"] for s in spans],
        orientation="h", marker_color=colors, hovertext=[_hover(s) for s in spans], hoverinfo="text",
        text=[f"{s['duration_ms']:.1f} ms" for s in spans], textposition="outside",
    ))
    fig.update_layout(template=TEMPLATE, title=title or None, height=max(220, 26 * len(spans) + 80),
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 30}, showlegend=False,
                      xaxis_title="ms since the trace started")
    fig.update_yaxes(autorange="reversed", tickfont={"family": "monospace"})
    return fig


def service_map_figure(edges: Sequence[Any]) -> go.Figure:
    """The node in the middle, one node per dependency, each edge labelled calls/s · errors · p99."""
    fig = go.Figure()
    n = max(1, len(edges))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers+text", text=["tradeguard node"],
                             textposition="bottom center", marker={"size": 34, "color": _COLORS["server"]},
                             hoverinfo="text"))
    for i, e in enumerate(edges):
        y = (n - 1) / 2 - i
        bad = e.error_rate_pct > 0
        p99 = f"{e.p99_ms:.1f} ms" if e.p99_ms is not None else "–"
        label = f"{e.rate_per_s:.2f}/s · {e.error_rate_pct:.1f}% err · p99 {p99}"
        fig.add_trace(go.Scatter(x=[0, 2], y=[0, y], mode="lines",
                                 line={"width": 2, "color": _COLORS["error"] if bad else "#888"},
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=[2], y=[y], mode="markers+text", text=[e.target],
                                 textposition="middle right", marker={"size": 24, "color": _COLORS["client"]},
                                 hovertext=[f"{e.calls} call(s) · {label}"], hoverinfo="text"))
        fig.add_annotation(x=1, y=y / 2, text=label, showarrow=False, yshift=10, font={"size": 11})
    fig.update_layout(template=TEMPLATE, showlegend=False, height=max(240, 90 * n + 60),
                      margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"visible": False, "range": [-0.6, 3.4]}, yaxis={"visible": False})
    return fig
