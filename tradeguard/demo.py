"""``tradeguard demo``: everything on the embedded default (SQLite files under ./var).

Seeds the catalog, applies guardians' demo rules, then supervises the child processes —
node, traffic, worker and (unless headless) the console. The child list is ``demo_children``:
adding a process is one line there. URLs are printed one per line on stdout as ``NAME: http://HOST:PORT``; the
last stdout line is a JSON summary (``--headless --duration S`` ends by itself; else Ctrl-C).

Every child gets the node's control token (``TRADEGUARD_OPS_TOKEN``: the one set, else a random one
made here) in its environment. With the console, the demo users (admin, sre, oncall, and a merchant
of one demo shop) get new random passwords, printed once after the URLs as
``user NAME (ROLE[, shop ID]): PASSWORD``.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

from tradeguard.settings import Settings
from tradeguard.supervisor import ChildFailed, ChildSpec, PortInUseError, Supervisor, choose_port, cli_argv

log = logging.getLogger(__name__)

SUMMARY_KEYS = (
    "orders_placed",
    "orders_paid",
    "refunds",
    "orders_cancelled",
    "payments_failed",
    "payments_queued",
    "http_5xx",
    "sent",
    "http_2xx",
    "http_4xx",
    "blocked_429",
    "blocked_503",
    "timeouts",
    "conn_errors",
    "behind_schedule",
    "max_behind_ms",
    "p50_ms",
    "p99_ms",
)


@dataclass(frozen=True)
class DemoOptions:
    headless: bool = False
    duration: float | None = None
    host: str = "127.0.0.1"
    port: int | None = None  # node port; None: settings.node_port
    console_port: int | None = None
    strict_port: bool = False  # a port in use is an error instead of "take the next free one"
    rate: float = 10.0
    profile: str = "flash-sale"
    multiplier: float = 10.0
    seed: int | None = None
    rules: bool = True


@dataclass(frozen=True)
class Ports:
    node: int
    console: int | None


DEMO_MERCHANT_SHOP = "acme-electronics"
DEMO_USERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("demo-admin", "admin", ()),
    ("demo-sre", "sre", ()),
    ("demo-oncall", "oncall", ()),
    ("demo-merchant", "merchant", (DEMO_MERCHANT_SHOP,)),
)


def demo_users(settings: Settings) -> list[tuple[str, str, tuple[str, ...], str]]:
    """Create (or give a new password to, and enable) the demo users; (name, role, shops, password)."""
    from accounts.passwords import random_password
    from tradeguard.bootstrap import build_account_service

    service = build_account_service(settings)
    out = []
    try:
        for name, role, shops in DEMO_USERS:
            password = random_password()
            existing = service.store.get(name)
            if existing is None:
                service.add_user(name, role, password, shops=shops, by="demo")
            else:
                service.set_password(name, password, by="demo")
                if existing.disabled:
                    service.enable(name, by="demo")
            out.append((name, role, shops, password))
    finally:
        service.close()
    return out


def demo_children(opts: DemoOptions, ports: Ports, *, ops_token: str | None = None) -> list[ChildSpec]:
    """The processes of the demo, in start order (stopped in reverse); each gets ``ops_token``."""
    node_url = f"http://{opts.host}:{ports.node}"
    traffic = ["traffic", "--url", node_url, "--rate", str(opts.rate), "--profile", opts.profile]
    traffic += ["--multiplier", str(opts.multiplier)]
    if opts.duration:
        traffic += ["--duration", str(opts.duration)]
    if opts.seed is not None:
        traffic += ["--seed", str(opts.seed)]
    env = {"TRADEGUARD_OPS_TOKEN": ops_token} if ops_token else None
    children = [
        ChildSpec(
            "node",
            cli_argv("node", "--host", opts.host, "--port", str(ports.node)),
            ready_url=f"{node_url}/ops/health",
            ready_timeout_s=60,
            env=env,
        ),
        ChildSpec("traffic", cli_argv(*traffic), essential=not opts.headless, env=env),
        ChildSpec("worker", cli_argv("worker"), essential=False, env=env),
    ]
    if not opts.headless and ports.console is not None:
        children.append(
            ChildSpec("console", cli_argv("console", "--port", str(ports.console)), essential=False, env=env)
        )
    return children


def child_url(name: str, host: str, ports: Ports) -> str | None:
    if name == "node":
        return f"http://{host}:{ports.node}"
    if name == "console" and ports.console is not None:
        return f"http://{host}:{ports.console}"
    return None


def summarize(
    traffic: dict[str, Any] | None, node: dict[str, Any], exit_codes: dict[str, int | None], node_url: str
) -> dict[str, Any]:
    traffic = traffic or {}
    out: dict[str, Any] = {k: traffic.get(k, 0) for k in SUMMARY_KEYS}
    out["node"] = node_url
    out["node_status"] = node.get("health", {}).get("status", "unreachable")
    out["rules_version"] = node.get("rules_version")
    out["blocked_by_node"] = node.get("blocked")
    out["traffic_profile"] = traffic.get("profile")
    out["duration_s"] = traffic.get("duration_s")
    out["exit_codes"] = exit_codes
    if not traffic:
        out["error"] = "the traffic simulator printed no summary"
    return out


def node_facts(node_url: str, ops_token: str | None = None) -> dict[str, Any]:
    """What the node says about itself before it is stopped: health, rules version, blocked count."""
    facts: dict[str, Any] = {}
    auth = {"Authorization": f"Bearer {ops_token}"} if ops_token else {}
    try:
        facts["health"] = httpx.get(f"{node_url}/ops/health", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("node health unavailable: %s", exc)
    try:
        r = httpx.get(f"{node_url}/ops/rules", timeout=5, headers=auth)
        if r.status_code == 200:
            facts["rules_version"] = r.json().get("version")
        r = httpx.get(f"{node_url}/ops/stats", timeout=5, headers=auth)
        if r.status_code == 200:
            facts["blocked"] = _blocked_total(r.json())
    except (httpx.HTTPError, ValueError) as exc:
        log.info("node rules/stats unavailable: %s", exc)
    return facts


def _blocked_total(stats: Any) -> int | None:
    """Sum every ``block*`` counter found in a /ops/stats document (its shape is guardians')."""
    total, found = 0, False

    def walk(value: Any) -> None:
        nonlocal total, found
        if isinstance(value, dict):
            for k, v in value.items():
                if (
                    isinstance(k, str)
                    and k.startswith("block")
                    and isinstance(v, int | float)
                    and not isinstance(v, bool)
                ):
                    total += int(v)
                    found = True
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(stats)
    return total if found else None


def run_demo(
    settings: Settings, opts: DemoOptions, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    from tradeguard.bootstrap import apply_demo_rules, seed_catalog

    settings.ensure_var_dir()
    created = seed_catalog(settings)
    log.info("catalog seeded (new: %s)", created)
    if opts.rules:
        version = apply_demo_rules(settings)
        log.info("demo rules: version %s", version)
    try:
        node_port = choose_port(
            opts.host, settings.node_port if opts.port is None else opts.port, next_free=not opts.strict_port
        )
        console_port = None
        if not opts.headless:
            wanted = settings.console_port if opts.console_port is None else opts.console_port
            console_port = choose_port(opts.host, wanted, next_free=not opts.strict_port)
            if console_port == node_port:
                console_port = choose_port(opts.host, node_port + 1)
    except PortInUseError as exc:
        print(f"tradeguard demo: {exc}", file=err or sys.stderr)
        return 2
    ports = Ports(node=node_port, console=console_port)
    node_url = f"http://{opts.host}:{node_port}"
    ops_token = settings.ops_token_value() or secrets.token_urlsafe(32)
    users = demo_users(settings) if console_port is not None else []
    supervisor = Supervisor(out=err)
    supervisor.install_signal_handlers()
    reason = "stopped"
    try:
        for spec in demo_children(opts, ports, ops_token=ops_token):
            supervisor.start(spec)
            url = child_url(spec.name, opts.host, ports)
            if url:
                print(f"{spec.name}: {url}", file=out, flush=True)
        for name, role, shops, password in users:  # printed once, here only
            scope = f", shop {', '.join(shops)}" if shops else ""
            print(f"user {name} ({role}{scope}): {password}", file=out, flush=True)
        traffic = supervisor.child("traffic")
        if opts.headless:
            limit = (opts.duration or 60) + 30
            reason = supervisor.wait(
                until=lambda: traffic is not None and not traffic.running, timeout_s=limit
            )
        else:
            reason = supervisor.wait(timeout_s=opts.duration)
        log.info("demo ending: %s", reason)
    except ChildFailed as exc:
        print(f"tradeguard demo: {exc}", file=err or sys.stderr)
        codes = supervisor.stop_all()
        supervisor.restore_signal_handlers()
        summary = summarize(None, {}, codes, node_url)
        summary["error"] = str(exc)
        print(json.dumps(summary), file=out, flush=True)
        return 1
    facts = node_facts(node_url, ops_token)
    codes = supervisor.stop_all()
    supervisor.restore_signal_handlers()
    traffic_child = supervisor.child("traffic")
    summary = summarize(traffic_child.last_json if traffic_child else None, facts, codes, node_url)
    print(json.dumps(summary), file=out, flush=True)
    failed = reason == "child_exited" or "error" in summary
    return 1 if failed else 0
