"""``tradeguard console``: the Streamlit command line, the child's environment, the entry script."""

from __future__ import annotations

from pathlib import Path

from tradeguard.commands import console as command
from tradeguard.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_streamlit_argv_runs_the_entry_script_headless_without_usage_stats():
    argv = command.streamlit_argv("127.0.0.1", 8601)
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert Path(argv[4]) == ROOT / "tradeguard" / "console_server.py"
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags["--server.port"] == "8601"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"


def test_env_passes_resolved_store_urls_and_inherits_secrets(tmp_path, monkeypatch):
    for name in ("TRADEGUARD_CONTROL_DB", "TRADEGUARD_METRICS_URL", "TRADEGUARD_APP"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(var_dir=tmp_path / "v", app="shop")
    env = command.streamlit_env(settings, base={"TRADEGUARD_METRICS_TOKEN": "secret"})
    assert env["TRADEGUARD_CONTROL_DB"] == settings.control_db
    assert env["TRADEGUARD_METRICS_URL"] == settings.metrics_url
    assert env["TRADEGUARD_METRICS_TOKEN"] == "secret"  # inherited, never on the command line
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = Settings()  # what the entry script reads in the Streamlit process
    assert (child.app, child.control_db, child.metrics_url) == (
        "shop",
        settings.control_db,
        settings.metrics_url,
    )
    assert child.metrics_credentials()["token"] == "secret"


def test_register_adds_the_console_subcommand():
    from tradeguard.cli import build_parser

    args = build_parser().parse_args(["console", "--port", "9999"])
    assert args.port == 9999 and args.func is command._handle
