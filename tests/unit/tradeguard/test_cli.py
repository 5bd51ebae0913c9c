from __future__ import annotations

import json
import sys
import types

import pytest

from tradeguard import cli
from tradeguard.commands import bench as bench_cmd


def test_every_command_module_is_discovered_and_registers():
    names = cli.command_modules()
    assert "tradeguard.commands.bench" in names
    parser = cli.build_parser()
    args = parser.parse_args(["bench", "--json", "x", "--n", "3"])
    assert args.name == "x" and args.json and args.rest == ["--n", "3"]
    assert args.func is not None


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_log_level_is_validated(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--log-level", "loud", "bench"])
    assert "--log-level" in capsys.readouterr().err


def test_bench_unknown_name_is_a_clear_error(capsys):
    assert cli.main(["bench", "no_such_bench_xyz"]) == 2
    assert "unknown benchmark 'no_such_bench_xyz'" in capsys.readouterr().err


def test_bench_dispatch_prints_the_result_as_the_last_json_line(monkeypatch, capsys):
    module = types.ModuleType("bench.fake_for_test")

    def add_arguments(parser):
        parser.add_argument("--n", type=int, default=1)

    def run(args):
        print("progress...", file=sys.stderr)
        return {"n": args.n, "ok": True}

    module.add_arguments = add_arguments
    module.run = run
    monkeypatch.setitem(sys.modules, "bench.fake_for_test", module)
    assert cli.main(["bench", "fake_for_test", "--json", "--n", "7"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == {"n": 7, "ok": True}


def test_bench_module_without_run_is_rejected(monkeypatch):
    module = types.ModuleType("bench.broken_for_test")
    monkeypatch.setitem(sys.modules, "bench.broken_for_test", module)
    with pytest.raises(LookupError, match="no add_arguments"):
        bench_cmd.load_benchmark("broken_for_test")


def test_invalid_settings_are_reported_with_the_env_name(monkeypatch, capsys):
    from tradeguard.settings import load_settings

    def handler(args):
        load_settings()
        return 0

    monkeypatch.setenv("TRADEGUARD_NODE_PORT", "nope")
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.add_parser("settings-probe").set_defaults(func=handler)
    assert cli.main(["settings-probe"]) == 2
    assert "TRADEGUARD_NODE_PORT" in capsys.readouterr().err


def test_traffic_flags_default_to_the_traffic_settings(monkeypatch, capsys):
    from tradeguard.commands import traffic as traffic_cmd

    seen = {}

    def fake_run(config):
        seen["config"] = config
        return {"sent": 0}

    monkeypatch.setattr(traffic_cmd, "run_traffic", fake_run)
    monkeypatch.delenv("TRADEGUARD_TRAFFIC_URL", raising=False)
    assert cli.main(["traffic"]) == 2
    assert "TRADEGUARD_TRAFFIC_URL" in capsys.readouterr().err

    monkeypatch.setenv("TRADEGUARD_TRAFFIC_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TRADEGUARD_TRAFFIC_PROFILE", "flash-sale")
    monkeypatch.setenv("TRADEGUARD_TRAFFIC_RATE", "7")
    assert cli.main(["traffic", "--multiplier", "3"]) == 0
    config = seen["config"]
    assert (config.url, config.profile, config.rate, config.multiplier) == (
        "http://127.0.0.1:9", "flash-sale", 7.0, 3.0)
