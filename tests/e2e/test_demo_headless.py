"""``tradeguard demo --headless --duration 20`` in a fresh directory: it places and pays orders, no 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.services import free_port

pytestmark = pytest.mark.e2e


def test_headless_demo_places_and_pays_orders_without_5xx(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEGUARD_") or k == "TRADEGUARD_REQUIRE_SERVICES"
    }
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradeguard.cli",
            "demo",
            "--headless",
            "--duration",
            "20",
            "--port",
            str(port),
            "--seed",
            "7",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    )
    assert lines and lines[0] == f"node: http://127.0.0.1:{port}"
    summary = json.loads(lines[-1])
    for key in ("orders_placed", "orders_paid", "refunds", "http_5xx"):
        assert key in summary, key
    assert summary["orders_placed"] > 0, summary
    assert summary["orders_paid"] > 0, summary
    assert summary["http_5xx"] == 0, proc.stderr[-4000:]
    assert (tmp_path / "var" / "trading.db").exists()
    assert "[node]" in proc.stderr and "[traffic]" in proc.stderr
