"""docker-compose.yml cannot be started here (no Docker engine): check what can be checked.

The file parses; every service's command is a real ``tradeguard`` subcommand (parsed by the
real CLI parser, ``sh -c`` commands after expanding the service's own environment); every
``TRADEGUARD_*`` variable a service sets is a Settings field and the values validate; every
service has a health check; the Grafana provisioning and dashboard files parse and query
only measurements and fields of collectors/SCHEMA.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeguard.cli import build_parser
from tradeguard.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GRAFANA = ROOT / "deploy" / "grafana"
TRADEGUARD_SERVICES = {"init", "node", "worker", "console", "traffic"}
REQUIRED_SERVICES = {"influxdb", "grafana", "redis", "postgres"} | TRADEGUARD_SERVICES
COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}")
REQUIRED_VALUE = "value-of-{}"  # what an operator must set (``${VAR:?message}``: compose refuses without)


def interpolate(value: str) -> str:
    """Compose-level ``${VAR:-default}`` with an empty environment (what a bare `up` does); ``$$`` → ``$``.
    ``${VAR:?message}`` (required) becomes ``value-of-VAR``."""
    out = REQUIRED_VAR.sub(lambda m: REQUIRED_VALUE.format(m.group(1)), value)
    out = COMPOSE_VAR.sub(lambda m: m.group(2) or "", out)
    return out.replace("$$", "$")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return dict(load_compose()["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def tradeguard_invocations(command: Any, env: dict[str, str]) -> list[list[str]]:
    """The ``tradeguard …`` argv lists a command runs (directly, or inside ``sh -c``)."""
    if isinstance(command, str):
        command = shlex.split(interpolate(command))
    argv = [interpolate(str(a)) for a in command]
    if argv[:2] == ["sh", "-c"]:
        script = argv[2]
        for name, value in env.items():
            script = script.replace(f'"${name}"', shlex.quote(value)).replace(f"${name}", shlex.quote(value))
        assert "$" not in script, f"unexpanded variable in {script!r}"
        found = []
        for part in re.split(r"&&|\|\||;", script):
            words = shlex.split(part)
            if words and words[0] == "exec":
                words = words[1:]
            if words and words[0] == "tradeguard":
                found.append(words)
        return found
    return [argv] if argv and argv[0] == "tradeguard" else []


def test_compose_parses_and_has_the_stack() -> None:
    doc = load_compose()
    assert isinstance(doc, dict)
    assert set(doc["services"]) >= REQUIRED_SERVICES, sorted(doc["services"])
    node = doc["services"]["node"]
    assert node.get("deploy", {}).get("replicas", 1) >= 2, "the stack runs two nodes"


@pytest.mark.parametrize("name", sorted(REQUIRED_SERVICES))
def test_every_service_has_a_healthcheck(name: str) -> None:
    service = services()[name]
    check = service.get("healthcheck")
    assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    assert check["test"][0] in ("CMD", "CMD-SHELL"), check["test"]


@pytest.mark.parametrize("name", sorted(TRADEGUARD_SERVICES))
def test_tradeguard_commands_exist_in_the_cli(name: str) -> None:
    service = services()[name]
    assert service.get("image") == "tradeguard:local" and service.get("build") == "."
    env = environment(service)
    invocations = tradeguard_invocations(service["command"], env)
    assert invocations, f"{name}: command runs no tradeguard subcommand: {service['command']}"
    parser = build_parser()
    for argv in invocations:
        args = parser.parse_args(argv[1:])  # SystemExit (a test error) on an unknown command or option
        assert callable(getattr(args, "func", None)), f"{name}: {argv} selects no handler"
    check = service["healthcheck"]["test"]
    if check[0] == "CMD" and check[1] == "tradeguard":
        assert callable(getattr(parser.parse_args(check[2:]), "func", None))


def test_a_bad_command_would_be_caught() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["no-such-command"])
    with pytest.raises(SystemExit):  # sh -c scripts are checked with the same parser
        build_parser().parse_args(
            tradeguard_invocations(
                ["sh", "-c", 'exec tradeguard traffic --url "$U" --profile "$P"'],
                {"U": "http://x", "P": "hourly"},
            )[0][1:]
        )


@pytest.mark.parametrize("name", sorted(REQUIRED_SERVICES))
def test_tradeguard_variables_are_settings_fields(name: str) -> None:
    env = environment(services()[name])
    fields = set(Settings.model_fields)
    for var in env:
        if var.startswith(ENV_PREFIX):
            assert var[len(ENV_PREFIX) :].lower() in fields, f"{name}: {var} is not a tradeguard setting"


@pytest.mark.parametrize("name", sorted(TRADEGUARD_SERVICES))
def test_service_environment_validates(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(var)
    for var, value in environment(services()[name]).items():
        if var.startswith(ENV_PREFIX):
            monkeypatch.setenv(var, value)
    settings = Settings()  # raises ValidationError naming the field if a value is wrong
    if name != "traffic":
        assert settings.trading_db.startswith("postgresql+psycopg://")
        assert settings.control_db.startswith("postgresql+psycopg://")
        assert settings.metrics_url.startswith("influxdb://")
        assert settings.metrics_token is not None
    else:
        assert settings.traffic_url and settings.traffic_profile in ("steady", "diurnal", "flash-sale")


def test_trading_and_control_dbs_are_separate_databases() -> None:
    env = environment(services()["node"])
    assert env["TRADEGUARD_TRADING_DB"] != env["TRADEGUARD_CONTROL_DB"]
    sql = (ROOT / "deploy" / "postgres" / "01-databases.sql").read_text()
    control_db = env["TRADEGUARD_CONTROL_DB"].rsplit("/", 1)[1]
    assert f"CREATE DATABASE {control_db}" in sql


def test_influxdb_is_set_up_with_bucket_and_token() -> None:
    influx = services()["influxdb"]
    env = environment(influx)
    assert influx["image"].startswith("influxdb:2")
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] and env["DOCKER_INFLUXDB_INIT_ORG"]
    token = env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    node_env = environment(services()["node"])
    assert node_env["TRADEGUARD_METRICS_TOKEN"] == token
    assert f"/{env['DOCKER_INFLUXDB_INIT_BUCKET']}?" in node_env["TRADEGUARD_METRICS_URL"]
    assert f"org={env['DOCKER_INFLUXDB_INIT_ORG']}" in node_env["TRADEGUARD_METRICS_URL"]


def test_mounted_files_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert (ROOT / "Dockerfile").exists()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "pip install ." in dockerfile


# ---------------------------------------------------------------- grafana
def schema() -> dict[str, set[str]]:
    """measurement → fields, from the table in collectors/SCHEMA.md."""
    out: dict[str, set[str]] = {}
    for line in (ROOT / "collectors" / "SCHEMA.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 4 and cells[1].startswith("`") and cells[1].endswith("`"):
            fields = set(re.findall(r"\b([a-z_]+)\b", re.sub(r"\([^)]*\)", "", cells[3])))
            out[cells[1].strip("`")] = fields
    return out


def test_grafana_provisioning_parses() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "influxdb.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "influxdb" and source["url"] == "http://influxdb:8086"
    assert source["jsonData"]["dbName"] == "tradeguard"
    assert source["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token $INFLUXDB_TOKEN"
    assert "INFLUXDB_TOKEN" in environment(services()["grafana"])
    boards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tradeguard.yaml").read_text())
    assert boards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_grafana_dashboard_queries_the_schema() -> None:
    known = schema()
    assert {"orders", "resource_stats", "payments", "breaker_events"} <= set(known)
    dashboards = list((GRAFANA / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        board = json.loads(path.read_text())
        assert board["uid"] and board["panels"]
        for panel in board["panels"]:
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "tradeguard-influxdb"
                query = target["query"]
                assert query.startswith("SELECT ") and "$timeFilter" in query, query
                measurement = re.search(r'FROM "([a-z_]+)"', query)
                assert measurement and measurement.group(1) in known, query
                for field in re.findall(r'(?:sum|mean|max|min|last|count)\("([a-z_]+)"\)', query):
                    assert field in known[measurement.group(1)], (
                        f"{field} not in {measurement.group(1)}: {query}"
                    )


def test_the_ops_token_is_required_and_given_to_every_caller_of_the_nodes() -> None:
    raw = load_compose()["services"]
    for name in ("node", "worker", "console", "traffic"):
        env = raw[name]["environment"]
        assert str(env["TRADEGUARD_OPS_TOKEN"]).startswith("${OPS_TOKEN:?"), name  # no default token
        assert environment(raw[name])["TRADEGUARD_OPS_TOKEN"] == REQUIRED_VALUE.format("OPS_TOKEN")
    assert raw["console"]["environment"]["TRADEGUARD_BOOTSTRAP_ADMIN"] == "${BOOTSTRAP_ADMIN:-}"  # no default


def test_only_the_console_and_grafana_are_published() -> None:
    published = {name for name, svc in services().items() if svc.get("ports")}
    assert published == {"console", "grafana"}
