"""Time ranges of the live pages and the time window (start, end, bucket) each one reads.

A window's ``end`` is the current time floored to the bucket width, so the
partially filled bucket being written right now is never drawn as a dip; the
window holds exactly ``range_s / bucket_s`` buckets.
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
        return Window(start=end - timedelta(seconds=span), end=end, bucket_s=width)


def floor_time(at: datetime, bucket_s: int) -> datetime:
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % bucket_s, tz=UTC)


def window(range_key: str, now: datetime) -> Window:
    """The window of ``range_key`` (one of RANGES) ending at ``now``; a bad key names the allowed ones."""
    if range_key not in RANGES:
        raise ValueError(f"range must be one of {', '.join(RANGES)}, got {range_key!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    range_s, bucket_s = RANGES[range_key]
    end = floor_time(now, bucket_s)
    return Window(start=end - timedelta(seconds=range_s), end=end, bucket_s=bucket_s)


def last_seconds(now: datetime, seconds: int, *, bucket_s: int = 1) -> Window:
    """A window of the last ``seconds`` completed seconds (for the impact preview and tables)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    end = floor_time(now, bucket_s)
    return Window(start=end - timedelta(seconds=seconds), end=end, bucket_s=bucket_s)
