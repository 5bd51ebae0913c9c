"""Time ranges of the live pages and the time window (start, end, bucket) each one reads.

A window's last bucket is the one holding the current time (``now``): the running bucket is
included, so a figure over 24 h (10-minute buckets) holds what happened in the last minutes too and
is never smaller than the same figure over 1 h. ``end`` is that bucket's (exclusive) end and may lie
after ``now``; the window holds exactly ``range_s / bucket_s`` buckets. Rates divide each bucket by
the seconds it covers (``covered_s``): the running bucket by the seconds elapsed so far, so it is not
drawn as a dip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# key -> (range seconds, bucket seconds). Buckets keep every chart at <= 180 points.
RANGES: dict[str, tuple[int, int]] = {
    "5m": (300, 2),
    "15m": (900, 5),
    "1h": (3600, 20),
    "24h": (86400, 600),
}
RANGE_LABELS: dict[str, str] = {"5m": "5 min", "15m": "15 min", "1h": "1 hour", "24h": "24 hours"}
DEFAULT_RANGE = "5m"


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive, aware UTC
    end: datetime  # exclusive, aware UTC
    bucket_s: int
    now: datetime | None = None  # when the window was read (inside the last bucket); None: ``end``

    @property
    def until(self) -> datetime:
        """The instant the data reaches: ``now`` (within the window), else ``end``."""
        if self.now is None:
            return self.end
        return min(max(self.now, self.start), self.end)

    @property
    def covered_s(self) -> float:
        """Seconds of the window that have happened (the whole span, less the running bucket's future)."""
        return max(1.0, (self.until - self.start).total_seconds())

    def bucket_seconds(self) -> list[float]:
        """Seconds each bucket covers so far: ``bucket_s`` each, the running bucket the elapsed part
        (at least 1 s, so a rate of a bucket that just began is not divided by zero)."""
        until = self.until
        out = []
        for b in self.buckets():
            elapsed = (until - b).total_seconds()
            out.append(float(self.bucket_s) if elapsed >= self.bucket_s else max(1.0, elapsed))
        return out

    def label(self) -> str:
        """``2026-11-11 07:10:00 – 2026-11-12 07:14:07 UTC``: dated when the window spans a date line or
        a day; only times otherwise (``07:10:00 – 07:14:07 UTC``)."""
        a, b = self.start.astimezone(UTC), self.until.astimezone(UTC)
        if a.date() != b.date() or self.seconds >= 86_400:
            return f"{a:%Y-%m-%d %H:%M:%S} – {b:%Y-%m-%d %H:%M:%S} UTC"
        return f"{a:%Y-%m-%d} {a:%H:%M:%S} – {b:%H:%M:%S} UTC"

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def buckets(self) -> list[datetime]:
        """Every bucket start in the window, oldest first."""
        n = self.seconds // self.bucket_s
        return [self.start + timedelta(seconds=i * self.bucket_s) for i in range(n)]

    def coarser(self, bucket_s: int) -> Window:
        """The same span re-bucketed at ``bucket_s`` (at least the current width); the last, partly
        filled bucket holding ``end`` is included so a live per-minute chart shows the running minute."""
        width = max(bucket_s, self.bucket_s)
        end = floor_time(self.end, width)
        if end < self.end:
            end += timedelta(seconds=width)
        span = max(width, (self.seconds // width) * width)
        return Window(start=end - timedelta(seconds=span), end=end, bucket_s=width, now=self.now)


def floor_time(at: datetime, bucket_s: int) -> datetime:
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % bucket_s, tz=UTC)


def window(range_key: str, now: datetime) -> Window:
    """The window of ``range_key`` (one of RANGES) whose last bucket holds ``now`` (the running bucket
    is included); a bad key names the allowed ones."""
    if range_key not in RANGES:
        raise ValueError(f"range must be one of {', '.join(RANGES)}, got {range_key!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    range_s, bucket_s = RANGES[range_key]
    end = floor_time(now, bucket_s) + timedelta(seconds=bucket_s)
    return Window(start=end - timedelta(seconds=range_s), end=end, bucket_s=bucket_s, now=now)


def last_seconds(now: datetime, seconds: int, *, bucket_s: int = 1) -> Window:
    """A window of the last ``seconds`` completed seconds (for the impact preview and tables)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    end = floor_time(now, bucket_s)
    return Window(start=end - timedelta(seconds=seconds), end=end, bucket_s=bucket_s)


def recent(now: datetime, seconds: int, *, lag_s: int = 0) -> Window:
    """The last ``seconds`` completed seconds ending ``lag_s`` before ``now``, as one bucket (the
    headline "now" figures; the lag leaves out seconds whose points are not written yet)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if lag_s < 0:
        raise ValueError(f"lag_s must be >= 0, got {lag_s}")
    end = floor_time(now, 1) - timedelta(seconds=lag_s)
    return Window(start=end - timedelta(seconds=seconds), end=end, bucket_s=seconds, now=end)
