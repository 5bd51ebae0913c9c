"""Turn a store's ``Row`` lists into gap-free pandas frames indexed by bucket start (UTC).

Stores return only the buckets that hold data; counts are filled with 0 so a quiet
second reads as zero traffic, while ratios and latencies stay missing (NaN) so a
chart leaves a gap instead of drawing a fake 0 ms or 0 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import pandas as pd

from collectors.query import Row
from dashboards.ranges import Window

REFUSED_PREFIX = "refused:"  # columns "refused:<reason>" of the Overview's orders rates: one per reason


def _index(w: Window) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(w.buckets(), name="time")


def _bucket_key(t: datetime, w: Window) -> pd.Timestamp:
    epoch = int(t.timestamp())
    return pd.Timestamp(epoch - epoch % w.bucket_s, unit="s", tz="UTC")


def frame(
    rows: Iterable[Row], fields: Sequence[str], w: Window, *, fill: float | None = 0.0, scale: float = 1.0
) -> pd.DataFrame:
    """One column per field, one row per bucket of ``w``; several rows in one bucket are summed."""
    data: dict[pd.Timestamp, dict[str, float]] = {}
    for row in rows:
        key = _bucket_key(row.time, w)
        slot = data.setdefault(key, {})
        for f in fields:
            v = row.values.get(f)
            if v is not None:
                slot[f] = slot.get(f, 0.0) + float(v)
    df = pd.DataFrame.from_dict(data, orient="index", columns=list(fields), dtype="float64")
    df = df.reindex(_index(w))
    if fill is not None:
        df = df.fillna(fill)
    return df * scale if scale != 1.0 else df


def frame_by(rows: Iterable[Row], field: str, tag: str, w: Window) -> pd.DataFrame:
    """One column per value of ``tag`` (largest total first), one row per bucket of ``w``: ``field``
    summed over the rows of that tag value and bucket (0 where none)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(str(row.tags.get(tag, "")), []).append(row)
    columns = {name: frame(group, [field], w)[field] for name, group in groups.items()}
    order = sorted(columns, key=lambda name: (-float(columns[name].sum()), name))
    return pd.DataFrame({name: columns[name] for name in order}, index=_index(w))


def per_second(df: pd.DataFrame, w: Window) -> pd.DataFrame:
    """Counts per bucket → mean rate per second over the seconds the bucket covers so far (the
    running bucket by its elapsed seconds, so it is not drawn as a dip)."""
    if len(df.index) != len(w.buckets()):
        return df / float(w.bucket_s)
    seconds = pd.Series(w.bucket_seconds(), index=df.index)
    return df.div(seconds, axis=0)


def ratio_percent(num: pd.Series, den: pd.Series) -> pd.Series:
    """100 × num / den, missing where den is 0."""
    den = den.where(den > 0)
    return (num / den * 100.0).rename(None)


def has_any(df: pd.DataFrame) -> bool:
    """True when the frame holds a non-zero, non-missing value."""
    if df.empty:
        return False
    values = df.fillna(0).to_numpy()
    return bool((values != 0).any())
