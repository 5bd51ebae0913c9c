"""``tradeguard demo`` (interactive) stops every child cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.services import free_port

pytestmark = pytest.mark.e2e


def test_ctrl_c_stops_every_child_and_ends_with_a_summary(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEGUARD_") or k == "TRADEGUARD_REQUIRE_SERVICES"
    }
    env["PYTHONUNBUFFERED"] = "1"
    port, console_port = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "tradeguard.cli",
        "demo",
        "--port",
        str(port),
        "--console-port",
        str(console_port),
    ]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        first = proc.stdout.readline().strip()
        assert first == f"node: http://127.0.0.1:{port}"
        time.sleep(5)  # let every child start and the traffic simulator get going
        # the URLs are printed once the node answers; the other children may still be starting
        deadline = time.monotonic() + 30
        children = psutil.Process(proc.pid).children(recursive=True)
        while len(children) < 4 and time.monotonic() < deadline:  # node, traffic, worker, console
            time.sleep(0.2)
            children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4, [c.cmdline() for c in children]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed midway: leave no orphaned demo children behind
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
    assert proc.returncode == 0
    lines = [first, *[line for line in out.splitlines() if line.strip()]]
    summary = json.loads(lines[-1])
    assert summary["exit_codes"]["node"] == 0
    assert "orders_placed" in summary and "error" not in summary
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children
    ):
        time.sleep(0.2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"children left running: {[c.cmdline() for c in alive]}"
