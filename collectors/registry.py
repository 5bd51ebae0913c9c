"""One registry that opens a metric store from a URL.

- ``sqlite:///path/metrics.db`` (or a bare file path, or ``sqlite://`` for in-memory) → the
  embedded store. Options as query parameters: ``raw_retention=6h``, ``rollup_retention=30d``.
- ``influxdb://HOST:PORT/DATABASE_OR_BUCKET?api=v1|v2&org=ORG[&tls=true][&retention=30d]`` →
  InfluxDB (``api`` defaults to v2). Credentials come as arguments (from
  ``TRADEGUARD_METRICS_TOKEN`` or ``_USER``/``_PASSWORD``), never from the URL, and are never logged.

Anything else raises :class:`collectors.errors.ConfigError` naming what is wrong and what is allowed.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlsplit

from collectors.errors import ConfigError
from collectors.query import MetricStore
from collectors.stores.common import parse_duration
from common.redact import redact_url

SCHEMES = ("sqlite", "influxdb")
_EMBEDDED_OPTIONS = ("raw_retention", "rollup_retention")
_INFLUX_OPTIONS = ("api", "org", "tls", "retention", "timeout")


def open_store(
    url: str,
    *,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    clock=None,
) -> MetricStore:
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            "metric store URL is empty; use sqlite:///var/metrics.db or influxdb://HOST:PORT/DB?api=v2"
        )
    url = url.strip()
    if "://" not in url:
        # a bare path: the embedded store in that file
        return _open_embedded(f"sqlite:///{os.path.abspath(url)}", {}, clock)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme.startswith("sqlite"):
        if scheme != "sqlite":
            raise ConfigError(f"metric store URL scheme {parts.scheme!r} unsupported; use sqlite:///path")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - set(_EMBEDDED_OPTIONS))
        if unknown:
            raise ConfigError(
                f"metric store URL option(s) {unknown} unknown for sqlite; allowed: {list(_EMBEDDED_OPTIONS)}"
            )
        clean = url.split("?", 1)[0]
        if clean.startswith("sqlite:///") and clean not in ("sqlite:///", "sqlite:///:memory:"):
            path = clean[len("sqlite:///") :]
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
        elif clean not in ("sqlite://", "sqlite:///:memory:"):
            raise ConfigError(f"metric store URL {redact_url(url)!r} invalid; use sqlite:///relative/path.db")
        return _open_embedded(clean, options, clock)
    if scheme == "influxdb":
        return _open_influx(parts, token=token, user=user, password=password)
    raise ConfigError(
        f"metric store URL scheme {parts.scheme!r} unknown; allowed: {', '.join(SCHEMES)}"
        " (e.g. sqlite:///var/metrics.db, influxdb://localhost:8086/tradeguard?api=v2&org=acme)"
    )


def _open_embedded(url: str, options: dict[str, str], clock) -> MetricStore:
    from collectors.stores.embedded import EmbeddedStore

    kwargs = {}
    for key in _EMBEDDED_OPTIONS:
        if key in options:
            kwargs[key] = parse_duration(options[key], name=key)
    return EmbeddedStore(url, clock=clock, **kwargs)


def _open_influx(parts, *, token, user, password) -> MetricStore:
    from collectors.stores.influx import InfluxConfig, InfluxStore

    if parts.username or parts.password:
        raise ConfigError(
            "do not put credentials in the metric store URL; set TRADEGUARD_METRICS_TOKEN"
            " or TRADEGUARD_METRICS_USER and TRADEGUARD_METRICS_PASSWORD"
        )
    host = parts.hostname
    if not host:
        raise ConfigError("influxdb URL needs a host: influxdb://HOST:PORT/DATABASE_OR_BUCKET")
    try:
        port = parts.port or 8086
    except ValueError as exc:
        raise ConfigError(f"influxdb URL port invalid: {exc}") from exc
    database = parts.path.strip("/")
    if not database or "/" in database:
        raise ConfigError(
            "influxdb URL needs exactly one path segment, the database or bucket: influxdb://HOST:PORT/DB"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_INFLUX_OPTIONS))
    if unknown:
        raise ConfigError(f"influxdb URL option(s) {unknown} unknown; allowed: {list(_INFLUX_OPTIONS)}")
    api = options.get("api", "v2")
    if api not in ("v1", "v2"):
        raise ConfigError(f"influxdb URL option api={api!r} invalid; allowed: v1, v2")
    tls_text = options.get("tls", "false").lower()
    if tls_text not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"influxdb URL option tls={options['tls']!r} invalid; allowed: true, false")
    tls = tls_text in ("true", "1", "yes")
    retention = parse_duration(options["retention"], name="retention") if "retention" in options else None
    timeout_s = 10.0
    if "timeout" in options:
        timeout_s = parse_duration(options["timeout"], name="timeout").total_seconds()
    if (user is None) != (password is None):
        raise ConfigError(
            "InfluxDB credentials: set both TRADEGUARD_METRICS_USER and TRADEGUARD_METRICS_PASSWORD"
        )
    config = InfluxConfig(
        host=host,
        port=port,
        database=database,
        api=api,
        org=options.get("org") or None,
        tls=tls,
        token=token,
        user=user,
        password=password,
        retention=retention,
        timeout_s=timeout_s,
    )
    return InfluxStore(config)
