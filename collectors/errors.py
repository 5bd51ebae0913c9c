"""Errors of the collectors package. Each message says what is wrong and what is allowed."""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every collectors error."""


class ConfigError(CollectorError, ValueError):
    """A metric-store URL or option is invalid (raised by ``collectors.registry.open_store``)."""


class PointError(CollectorError, ValueError):
    """A point does not fit the schema: unknown measurement, tag or field, or a non-finite field value."""

    def __init__(self, measurement: str, message: str, *, field: str | None = None) -> None:
        self.measurement = measurement
        self.field = field
        where = f"{measurement}.{field}" if field else measurement
        super().__init__(f"{where}: {message}")


class StoreError(CollectorError):
    """A write or query failed."""


class StoreUnavailable(StoreError):
    """The store could not be reached or answered with a transient error; retry later."""


class StoreRejected(StoreError):
    """The store refused the batch as malformed (HTTP 400 or equivalent); retrying will not help."""


class QueryError(CollectorError, ValueError):
    """A ``Query`` is invalid (unknown aggregate, empty field list, empty time range…)."""
