from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tradeguard.settings import Settings, env_name, load_settings, sqlite_path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_"):
            monkeypatch.delenv(key)


def test_defaults_put_every_embedded_store_under_var():
    s = load_settings()
    assert s.app == "tradeguard"
    assert s.trading_db == "sqlite:///var/trading.db"
    assert s.control_db == "sqlite:///var/control.db"
    assert s.metrics_url == "sqlite:///var/metrics.db"
    assert s.redis_url is None
    assert s.require_services is False
    assert s.payment_timeout.total_seconds() == 900


def test_every_shared_name_is_read_from_the_environment(monkeypatch):
    env = {
        "TRADEGUARD_TRADING_DB": "postgresql+psycopg://u@h/trading",
        "TRADEGUARD_CONTROL_DB": "postgresql+psycopg://u@h/control",
        "TRADEGUARD_METRICS_URL": "influxdb://h:8086/tg?api=v1",
        "TRADEGUARD_METRICS_TOKEN": "tok",
        "TRADEGUARD_METRICS_USER": "usr",
        "TRADEGUARD_METRICS_PASSWORD": "pw",
        "TRADEGUARD_REDIS_URL": "redis://h:6379/0",
        "TRADEGUARD_ALERT_WEBHOOK_URL": "http://h/hook",
        "TRADEGUARD_SMTP_URL": "smtp://h:25",
        "TRADEGUARD_REQUIRE_SERVICES": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    for k, v in env.items():
        field = k.removeprefix("TRADEGUARD_").lower()
        value = getattr(s, field)
        if field == "require_services":
            assert value is True
        elif hasattr(value, "get_secret_value"):
            assert value.get_secret_value() == v
        else:
            assert value == v
    assert s.metrics_credentials() == {"token": "tok", "user": "usr", "password": "pw"}


def test_secrets_never_appear_in_repr_or_describe(monkeypatch):
    monkeypatch.setenv("TRADEGUARD_METRICS_TOKEN", "supersecret")
    monkeypatch.setenv("TRADEGUARD_METRICS_PASSWORD", "hunter2")
    s = load_settings()
    assert "supersecret" not in repr(s) and "hunter2" not in repr(s)
    described = str(s.describe())
    assert "supersecret" not in described and "hunter2" not in described


def test_var_dir_moves_the_embedded_stores_and_is_created_on_use(tmp_path):
    var = tmp_path / "state" / "var"
    s = load_settings(var_dir=var)
    assert not var.exists()
    assert s.trading_db == f"sqlite:///{var}/trading.db"
    assert sqlite_path(s.control_db) == var / "control.db"
    s.ensure_var_dir()
    assert var.is_dir()


def test_explicit_url_wins_over_var_dir(tmp_path):
    s = load_settings(var_dir=tmp_path, trading_db="sqlite:///elsewhere.db")
    assert s.trading_db == "sqlite:///elsewhere.db"
    assert s.control_db.startswith(f"sqlite:///{tmp_path}")


def test_invalid_values_name_the_field(monkeypatch):
    monkeypatch.setenv("TRADEGUARD_NODE_PORT", "99999")
    with pytest.raises(ValidationError) as info:
        load_settings()
    assert "node_port" in str(info.value)
    monkeypatch.delenv("TRADEGUARD_NODE_PORT")
    with pytest.raises(ValidationError, match="log_level must be one of DEBUG"):
        Settings(log_level="loud")


def test_instance_id_defaults_to_host_and_port():
    s = load_settings()
    assert s.instance_id(8123).endswith(":8123")
    assert load_settings(instance="node-a").instance_id(8123) == "node-a"


def test_sqlite_path_and_env_name():
    assert sqlite_path("sqlite:///var/x.db") == Path("var/x.db")
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://h/db") is None
    assert env_name("trading_db") == "TRADEGUARD_TRADING_DB"


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    missing = [env_name(name) for name in Settings.model_fields if f"`{env_name(name)}`" not in readme]
    assert not missing, f"settings missing from the README's settings table: {missing}"
