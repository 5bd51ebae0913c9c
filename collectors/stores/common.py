"""Helpers every store uses: query validation, durations, credential redaction."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from collectors.errors import ConfigError, QueryError
from collectors.query import AGGREGATES, Query

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, name: str) -> timedelta:
    """``90s``, ``15m``, ``6h``, ``30d``, ``2w`` → timedelta; ConfigError naming ``name`` otherwise."""
    m = _DURATION.match(str(text))
    if not m or int(m.group(1)) <= 0:
        raise ConfigError(f"{name}={text!r} is not a positive duration; use e.g. 90s, 15m, 6h, 30d, 2w")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def check_query(query: Query) -> None:
    if query.aggregate not in AGGREGATES:
        raise QueryError(f"aggregate {query.aggregate!r} unknown; allowed: {', '.join(AGGREGATES)}")
    if not query.fields:
        raise QueryError("query.fields must name at least one field")
    if query.start.tzinfo is None or query.end.tzinfo is None:
        raise QueryError("query.start and query.end must be timezone-aware (UTC)")
    if query.end <= query.start:
        raise QueryError(
            f"query.end ({query.end.isoformat()}) must be after query.start ({query.start.isoformat()})"
        )
    if query.bucket_s is not None and (not isinstance(query.bucket_s, int) or query.bucket_s < 1):
        raise QueryError(
            f"query.bucket_s must be a positive integer number of seconds or None, got {query.bucket_s!r}"
        )


def redact_url(url: str) -> str:
    """The URL without any user:password part (safe to log)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    return urlunsplit(parts)
