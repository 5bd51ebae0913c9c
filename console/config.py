"""What the console process needs to know, read from the same ``TRADEGUARD_*`` environment.

The console sits below the composition root (``tradeguard``) in the import layers,
so it cannot import ``tradeguard.settings``. ``tradeguard console`` resolves the full
settings and passes every store URL explicitly in the environment of the Streamlit
process; the defaults here mirror ``tradeguard.settings.Settings`` (a unit test holds
them equal) for a console started by hand with ``streamlit run console/app.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEGUARD_", extra="ignore", frozen=True)

    app: str = Field("tradeguard", description="Application whose rules and metrics the console shows.")
    var_dir: Path = Field(Path("var"), description="Directory of the embedded stores.")
    control_db: str = Field("", description="SQLAlchemy URL of the control DB (default var/control.db).")
    metrics_url: str = Field("", description="Metric store URL (default embedded var/metrics.db).")
    metrics_token: SecretStr | None = None
    metrics_user: SecretStr | None = None
    metrics_password: SecretStr | None = None
    console_currency: str = Field("¥", description="Currency symbol of GMV on the console.")
    console_node_timeout_s: float = Field(2.0, gt=0, description="HTTP timeout of console → node calls.")
    ops_token: SecretStr | None = Field(None, description="Bearer token of the nodes' /ops/* control routes.")

    def ops_token_value(self) -> str | None:
        """The plain ops token for the ``Authorization`` header (never log it), or None."""
        return (self.ops_token.get_secret_value().strip() or None) if self.ops_token else None

    def control_db_url(self) -> str:
        return self.control_db or f"sqlite:///{(self.var_dir / 'control.db').as_posix()}"

    def metrics_store_url(self) -> str:
        return self.metrics_url or f"sqlite:///{(self.var_dir / 'metrics.db').as_posix()}"

    def credentials(self) -> dict[str, str | None]:
        def plain(secret: SecretStr | None) -> str | None:
            return secret.get_secret_value() if secret is not None else None

        return {
            "token": plain(self.metrics_token),
            "user": plain(self.metrics_user),
            "password": plain(self.metrics_password),
        }

    def cache_key(self) -> tuple:
        """Everything that decides which stores the facade opens (the facade cache's key)."""
        creds = self.credentials()
        return (
            self.app,
            self.control_db_url(),
            self.metrics_store_url(),
            creds["token"],
            creds["user"],
            creds["password"],
            self.console_currency,
            self.console_node_timeout_s,
        )
