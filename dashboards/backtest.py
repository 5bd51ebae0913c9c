"""The back-test figure of the Alert rules page: data in, figure out, no Streamlit.

The rule's value per series (``alerts.backtest`` result dicts: ``series`` of ``{"time", "value"}``),
the proposed threshold (and the one in force, when it differs) as dashed lines, and the spans the
proposed rule would have fired (red) or been pending (amber) shaded above the axis, with the rule in
force's firing spans shaded below it for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dashboards.figures import COLORS, empty_figure, layout

SERIES_COLORS = ("#5dade2", "#48c9b0", "#bb8fce", "#f7dc6f", "#85c1e9", "#a3e4d7", "#d7bde2", "#f0b27a")
MAX_SERIES = 8
CURRENT = "#95a5a6"
PENDING = "#f39c12"


def _t(iso: str) -> pd.Timestamp:
    return pd.Timestamp(iso).tz_convert("UTC").tz_localize(None)


def backtest_figure(
    proposed: Mapping[str, Any], current: Mapping[str, Any] | None, title: str = "Back-test"
) -> go.Figure:
    """``proposed`` / ``current``: one rule's back-test dict (``RuleBacktest.to_dict``)."""
    unit = "rule value"
    series = proposed.get("series") or {}
    if not any(p.get("value") is not None for pts in series.values() for p in pts):
        return empty_figure(title, unit, "No recorded data for this rule's query in the range")
    fig = go.Figure()
    for i, (key, pts) in enumerate(sorted(series.items())[:MAX_SERIES]):
        fig.add_trace(
            go.Scatter(
                x=[_t(p["time"]) for p in pts],
                y=[None if p["value"] is None else round(float(p["value"]), 4) for p in pts],
                name=key or "value",
                mode="lines",
                line={"color": SERIES_COLORS[i % len(SERIES_COLORS)], "width": 2},
                connectgaps=False,
            )
        )
    layout(fig, title, unit)
    _threshold(fig, proposed, COLORS["error"], "proposed", "top right")
    if current is not None and current.get("threshold") != proposed.get("threshold"):
        _threshold(fig, current, CURRENT, "in force", "bottom right")
    # spans: proposed above the middle of the plot area, the rule in force below it
    for span in proposed.get("intervals") or []:
        color = COLORS["error"] if span["state"] == "firing" else PENDING
        fig.add_vrect(
            x0=_t(span["start"]),
            x1=_t(span["end"]),
            y0=0.5,
            y1=1.0,
            fillcolor=color,
            opacity=0.25 if span["state"] == "firing" else 0.12,
            line_width=0,
        )
    for span in (current or {}).get("intervals") or []:
        if span["state"] != "firing":
            continue
        fig.add_vrect(
            x0=_t(span["start"]),
            x1=_t(span["end"]),
            y0=0.0,
            y1=0.5,
            fillcolor=CURRENT,
            opacity=0.3,
            line_width=0,
        )
    # legend entries for the shaded spans
    fig.add_trace(_legend("proposed: firing", COLORS["error"]))
    fig.add_trace(_legend("proposed: pending", PENDING))
    if current is not None:
        fig.add_trace(_legend("in force: firing", CURRENT))
    return fig


def _threshold(fig: go.Figure, rule: Mapping[str, Any], color: str, who: str, position: str) -> None:
    threshold = rule.get("threshold")
    if threshold is None:
        return
    fig.add_hline(
        y=float(threshold),
        line={"color": color, "dash": "dash", "width": 2},
        annotation_text=f"{who}: fires when {rule.get('op', '')} {float(threshold):g}",
        annotation_position=position,  # type: ignore[arg-type]
        annotation_font={"color": color},
    )


def _legend(name: str, color: str) -> go.Scatter:
    return go.Scatter(
        x=[None], y=[None], mode="markers", name=name, marker={"size": 12, "symbol": "square", "color": color}
    )
