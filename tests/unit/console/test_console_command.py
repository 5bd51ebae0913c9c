"""``tradeguard console``: the Streamlit command line and the environment the console reads."""

from __future__ import annotations

from pathlib import Path

from console.config import ConsoleConfig
from tradeguard.commands import console as command
from tradeguard.settings import Settings


def test_streamlit_argv_runs_the_console_headless_without_usage_stats():
    argv = command.streamlit_argv("127.0.0.1", 8601)
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert Path(argv[4]) == Path(__file__).resolve().parents[3] / "console" / "app.py"
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags["--server.port"] == "8601"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"


def test_env_passes_resolved_store_urls_that_the_console_reads(tmp_path, monkeypatch):
    for name in ("TRADEGUARD_CONTROL_DB", "TRADEGUARD_METRICS_URL", "TRADEGUARD_APP"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(var_dir=tmp_path / "v", app="shop")
    env = command.streamlit_env(settings, base={"TRADEGUARD_METRICS_TOKEN": "secret"})
    assert env["TRADEGUARD_CONTROL_DB"] == settings.control_db
    assert env["TRADEGUARD_METRICS_URL"] == settings.metrics_url
    assert env["TRADEGUARD_METRICS_TOKEN"] == "secret"  # inherited, never on the command line
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = ConsoleConfig()
    assert (config.app, config.control_db_url(), config.metrics_store_url()) == (
        "shop",
        settings.control_db,
        settings.metrics_url,
    )
    assert config.credentials()["token"] == "secret"


def test_console_defaults_mirror_the_settings_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("TRADEGUARD_CONTROL_DB", "TRADEGUARD_METRICS_URL", "TRADEGUARD_APP", "TRADEGUARD_VAR_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings, config = Settings(), ConsoleConfig()
    assert config.app == settings.app
    assert config.control_db_url() == settings.control_db
    assert config.metrics_store_url() == settings.metrics_url
    assert config.console_currency == settings.console_currency
    assert config.console_node_timeout_s == settings.console_node_timeout_s


def test_register_adds_the_console_subcommand():
    from tradeguard.cli import build_parser

    args = build_parser().parse_args(["console", "--port", "9999"])
    assert args.port == 9999 and args.func is command._handle
