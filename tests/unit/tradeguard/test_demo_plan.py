from __future__ import annotations

from tradeguard.demo import DemoOptions, Ports, _blocked_total, child_url, demo_children, summarize


def names(children):
    return [c.name for c in children]


def test_headless_demo_runs_node_and_timed_traffic_without_console():
    opts = DemoOptions(headless=True, duration=20, seed=3)
    children = demo_children(opts, Ports(node=8123, console=None))
    assert names(children) == ["node", "traffic", "worker"]
    node, traffic, worker = children
    assert node.argv[-4:] == ["--host", "127.0.0.1", "--port", "8123"]
    assert node.ready_url == "http://127.0.0.1:8123/ops/health"
    argv = list(traffic.argv)
    assert argv[argv.index("--url") + 1] == "http://127.0.0.1:8123"
    assert argv[argv.index("--duration") + 1] == "20"
    assert argv[argv.index("--seed") + 1] == "3"
    assert not traffic.essential  # it ends by itself in headless mode
    assert worker.argv[-1] == "worker" and not worker.essential


def test_the_demo_runs_every_part_and_the_console_unless_headless():
    children = demo_children(DemoOptions(), Ports(node=8000, console=8501))
    assert names(children) == ["node", "traffic", "worker", "console"]
    assert list(children[-1].argv[-3:]) == ["console", "--port", "8501"]
    headless = demo_children(DemoOptions(headless=True), Ports(node=8000, console=None))
    assert names(headless) == ["node", "traffic", "worker"]


def test_every_child_is_a_command_of_the_cli():
    from tradeguard.cli import build_parser

    actions = build_parser()._actions
    subcommands = next(a.choices for a in actions if isinstance(getattr(a, "choices", None), dict))
    for child in demo_children(DemoOptions(), Ports(node=8000, console=8501)):
        argv = list(child.argv)
        assert argv[argv.index("tradeguard.cli") + 1] in subcommands


def test_urls_are_printed_for_servers_only():
    ports = Ports(node=8000, console=8501)
    assert child_url("node", "127.0.0.1", ports) == "http://127.0.0.1:8000"
    assert child_url("console", "127.0.0.1", ports) == "http://127.0.0.1:8501"
    assert child_url("traffic", "127.0.0.1", ports) is None


def test_summary_has_the_required_keys_from_the_traffic_summary():
    traffic = {"orders_placed": 40, "orders_paid": 30, "refunds": 2, "http_5xx": 0, "sent": 100}
    node = {"health": {"status": "ok"}, "rules_version": 1, "blocked": 7}
    s = summarize(traffic, node, {"node": 0, "traffic": 0}, "http://x")
    assert (s["orders_placed"], s["orders_paid"], s["refunds"], s["http_5xx"]) == (40, 30, 2, 0)
    assert s["node_status"] == "ok" and s["blocked_by_node"] == 7 and "error" not in s
    missing = summarize(None, {}, {}, "http://x")
    assert missing["error"] and missing["orders_placed"] == 0 and missing["node_status"] == "unreachable"


def test_blocked_total_sums_block_counters_wherever_they_are():
    stats = {"resources": {"order.place": {"pass": 5, "block_flow": 3, "block_param": 1}, "x": {"pass": 1}}}
    assert _blocked_total(stats) == 4
    assert _blocked_total([{"resource": "a", "blocked": 2}]) == 2
    assert _blocked_total({"resources": {}}) is None
