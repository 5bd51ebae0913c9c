"""Helpers every store uses: query validation and URL option durations.

Credential redaction is ``common.redact.redact_url``; the duration grammar is ``common.durations``.
"""

from __future__ import annotations

from datetime import timedelta

from collectors.errors import ConfigError, QueryError
from collectors.query import AGGREGATES, Query
from common.durations import parse_duration as _parse


def parse_duration(text: str, *, name: str) -> timedelta:
    """A positive duration of a URL option (``90s``, ``15m``, ``1h30m``, ``30d``, ``2w``…, see
    ``common.durations``); ConfigError naming the option ``name`` otherwise."""
    try:
        value = _parse(str(text))
    except ValueError:
        value = timedelta(0)
    if value <= timedelta(0):
        raise ConfigError(f"{name}={text!r} is not a positive duration; use e.g. 90s, 15m, 1h30m, 30d, 2w")
    return value


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

