"""One settings object for every tradeguard process, read from ``TRADEGUARD_*`` environment variables.

Every setting of every process lives here (the README's Settings table lists them; where each
process gets them: docs/architecture.md). Defaults put all state in SQLite files under ``./var``
(the embedded default); set a URL to move a store to a server (PostgreSQL for the trading and
control DBs, InfluxDB for metrics).

Store URLs left empty follow ``var_dir``: setting only ``TRADEGUARD_VAR_DIR=/tmp/x``
moves every embedded store there (handy in tests). Secrets are ``SecretStr`` and are
never logged or printed (``Settings.describe()`` masks them).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.redact import MASK, redact_url

ENV_PREFIX = "TRADEGUARD_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


def sqlite_file_url(directory: Path, filename: str) -> str:
    """``sqlite:///`` URL of ``directory/filename`` (relative stays relative, absolute stays absolute)."""
    return f"sqlite:///{(directory / filename).as_posix()}"


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///…`` URL points to, or None for another URL or an in-memory database."""
    for prefix in ("sqlite+pysqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            if not path or path == ":memory:":
                return None
            return Path(path)
    return None


def ensure_sqlite_parent(url: str) -> None:
    """Create the directory holding a SQLite file URL's database (no-op for any other URL)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


class Settings(BaseSettings):
    """All tradeguard settings. Field ``x`` is read from ``TRADEGUARD_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    # identity
    app: str = Field("tradeguard", description="Application name: rule documents and metrics are per app.")
    instance: str = Field(
        "",
        description="Instance id (heartbeats, metric tags); default HOST:PORT of the node.",
    )
    var_dir: Path = Field(Path("var"), description="Directory of the embedded stores (created on use).")

    # stores
    trading_db: str = Field(
        "", description="SQLAlchemy URL of the trading DB (default sqlite:///var/trading.db)."
    )
    control_db: str = Field(
        "",
        description="SQLAlchemy URL of the control DB: rules, alerts, heartbeats, chaos (sqlite:///var/control.db).",
    )
    metrics_url: str = Field(
        "",
        description="Metric store URL: sqlite:///… (embedded, default var/metrics.db) or influxdb://HOST:PORT/DB?…",
    )
    metrics_token: SecretStr | None = Field(None, description="InfluxDB token (v2 API). Never logged.")
    metrics_user: SecretStr | None = Field(None, description="InfluxDB user (v1 API). Never logged.")
    metrics_password: SecretStr | None = Field(None, description="InfluxDB password (v1 API). Never logged.")
    redis_url: str | None = Field(None, description="Redis URL for cluster-wide limits; unset: none.")
    origin_header: str = Field(
        "X-Caller",
        description="Header naming the caller's origin; believed only from a trusted proxy.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDRs whose X-Forwarded-For and origin header are "
        "believed; empty: none.",
    )
    broker_url: str | None = Field(
        None,
        description="RabbitMQ URL (amqp://…) the journal relay publishes domain events to; "
        "unset: in-process only, no broker. Credentials in it are never logged.",
    )

    # alerts
    alert_webhook_url: str | None = Field(None, description="Webhook receiving alert notifications (demo).")
    smtp_url: str | None = Field(None, description="SMTP URL for alert e-mail (smtp://host:port/…).")
    alert_interval_s: float = Field(10.0, gt=0, description="Alert evaluation interval of the worker.")

    # tests
    require_services: bool = Field(False, description="Tests fail instead of skip when a server is absent.")

    # node
    node_host: str = Field("127.0.0.1", description="Address `tradeguard node` binds to.")
    node_port: int = Field(8000, ge=0, le=65535, description="Port of `tradeguard node` (0: any free port).")
    node_backlog: int = Field(
        512,
        ge=16,
        le=65535,
        description="Listen backlog of `tradeguard node`: connections the kernel queues until the node "
        "accepts them. Short on purpose: a connection that waits longer than its client does is work "
        "for nothing (the kernel caps it at net.core.somaxconn).",
    )
    node_switch_interval_ms: float = Field(
        0.5,
        gt=0,
        le=100,
        description="GIL switch interval of `tradeguard node` (Python's default is 5 ms). Orders run in "
        "worker threads that give the GIL up on every SQLite call and lock wait; under a surge the event "
        "loop holds it, and each time they take it back they wait up to this long.",
    )
    payment_timeout_s: float = Field(900.0, gt=0, description="Unpaid orders are cancelled after this.")
    timeout_sweep_s: float = Field(5.0, gt=0, description="Interval of the timeout cancellation job.")
    payment_retry_s: float = Field(
        2.0, gt=0, description="Interval of the job charging queued (degraded) payments again."
    )
    queued_payment_grace_s: float = Field(
        300.0, ge=0, description="A queued payment keeps its order this long past the payment deadline."
    )
    chaos_poll_s: float = Field(1.0, gt=0, description="Interval of reading payment chaos settings.")
    heartbeat_s: float = Field(2.0, gt=0, description="Interval of node heartbeats (control DB).")
    rules_poll_s: float = Field(1.0, gt=0, description="Interval of polling the rule store.")
    gateway_latency_ms: float = Field(
        20.0, ge=0, le=60_000, description="Latency of the node's simulated payment gateway (±20% jitter)."
    )
    gateway_concurrency: int = Field(
        0,
        ge=0,
        description="Charges the simulated payment gateway takes at once (0: unlimited); "
        "more wait for a slot, so it completes at most concurrency*1000/latency_ms per second.",
    )

    # traffic simulator (docker-compose passes these to `tradeguard traffic`)
    traffic_url: str = Field(
        "", description="Node URL the traffic simulator drives (compose: http://node:8000)."
    )
    traffic_profile: str = Field("steady", description="Traffic profile: steady, diurnal or flash-sale.")
    traffic_rate: float = Field(10.0, gt=0, description="Simulator base arrival rate, requests/s.")
    traffic_multiplier: float = Field(20.0, ge=1, description="Flash-sale peak ÷ base rate.")

    # console
    console_host: str = Field("127.0.0.1", description="Address `tradeguard console` binds to.")
    console_port: int = Field(8501, ge=0, le=65535, description="Port of `tradeguard console`.")
    console_currency: str = Field("¥", description="Currency symbol of GMV on the console.")
    console_node_timeout_s: float = Field(2.0, gt=0, description="HTTP timeout of console → node calls.")

    console_session_idle_min: float = Field(
        60.0, gt=0, description="Console sessions expire after this many idle minutes."
    )
    console_session_max_hours: float = Field(
        12.0, gt=0, description="Console sessions end this many hours after sign-in, however active."
    )
    console_session_cookie: str = Field(
        "tg_console_session",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Name of the console's session cookie (HttpOnly, SameSite=Strict; holds only an "
        "opaque token whose hash is in the control DB).",
    )
    console_cookie_secure: bool | None = Field(
        None,
        description="Secure attribute of the session cookie: unset = when the console is reached over "
        "https (directly or via X-Forwarded-Proto); true/false forces it.",
    )

    # accounts and the node's control API
    ops_token: SecretStr | None = Field(
        None,
        description="Bearer token of the node's mutating /ops/* routes, GET /ops/rules, /ops/stats and "
        "merchant actions (POST /refunds/{id}/complete); unset: those answer 403. Never logged.",
    )
    bootstrap_admin: SecretStr | None = Field(
        None,
        description="NAME:PASSWORD of the first admin, used once when no admin exists, then ignored "
        "with a warning. Never logged.",
    )

    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_format: str = Field(
        "text", description="Log lines: text, or json (one JSON object a line with trace_id/span_id)."
    )

    # tracing
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector base URL (Jaeger, Tempo, an OpenTelemetry Collector) kept traces "
        "are exported to; unset: the embedded span store var/traces.db.",
    )
    trace_sample: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of ordinary requests whose trace is kept; errors, blocked and slow ones "
        "always are.",
    )

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return level

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        fmt = value.strip().lower()
        if fmt not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
        return fmt

    @model_validator(mode="after")
    def _fill_store_defaults(self) -> Settings:
        if not self.trading_db:
            self.trading_db = sqlite_file_url(self.var_dir, "trading.db")
        if not self.control_db:
            self.control_db = sqlite_file_url(self.var_dir, "control.db")
        if not self.metrics_url:
            self.metrics_url = sqlite_file_url(self.var_dir, "metrics.db")
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def payment_timeout(self) -> timedelta:
        return timedelta(seconds=self.payment_timeout_s)

    def ensure_var_dir(self) -> Path:
        """Create ``var_dir`` and the directories of every SQLite store URL; return ``var_dir``."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        for url in (self.trading_db, self.control_db, self.metrics_url):
            ensure_sqlite_parent(url)
        return self.var_dir

    def instance_id(self, port: int | None = None) -> str:
        """``instance`` if set, else ``HOST:PORT`` (or ``HOST-PID`` for a process without a port)."""
        if self.instance:
            return self.instance
        host = socket.gethostname()
        return f"{host}:{port}" if port else f"{host}-{os.getpid()}"

    def metrics_credentials(self) -> dict[str, str | None]:
        """Plain-text credentials for ``collectors.registry.open_store`` (never log the result)."""

        def plain(secret: SecretStr | None) -> str | None:
            return secret.get_secret_value() if secret is not None else None

        return {
            "token": plain(self.metrics_token),
            "user": plain(self.metrics_user),
            "password": plain(self.metrics_password),
        }

    def ops_token_value(self) -> str | None:
        """The plain ops token, or None when unset or blank (never log the result)."""
        if self.ops_token is None:
            return None
        return self.ops_token.get_secret_value().strip() or None

    def describe(self) -> dict[str, Any]:
        """Every setting as plain data, secrets masked (safe to log or print)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = MASK
            elif isinstance(value, Path):
                value = str(value)
            elif name in ("broker_url", "otlp_endpoint") and value:
                value = redact_url(value)
            out[name] = value
        return out


def env_name(field: str) -> str:
    """The environment variable of a settings field: ``trading_db`` → ``TRADEGUARD_TRADING_DB``."""
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; keyword overrides win (e.g. from CLI flags)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
