"""Nothing accepted is lost on kill -9: a writer process is killed mid-flush (after the
store accepted a batch, before the outbox deleted it); after a restart every point the
outbox had acknowledged is in the store exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from collectors.outbox import Flusher, Outbox
from collectors.query import Query
from collectors.registry import open_store

from .conftest import influx_v1_url
from .crash_writer import T0

ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def now(self):
        from datetime import UTC, datetime

        return datetime.now(UTC)


def run_and_kill(outbox_path: str, url: str, *, min_acked: int) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.collectors.crash_writer", outbox_path, url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = 0
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            assert time.monotonic() < deadline, "the writer never reported an accepted batch"
            kind, n = line.split()
            if kind == "acked":
                acked = int(n)
            elif kind == "written" and acked >= min_acked:
                os.kill(proc.pid, signal.SIGKILL)  # mid-flush: accepted by the store, not yet deleted
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize("backend", ["embedded", "influxdb-v1"])
def test_kill_9_mid_flush_then_restart_delivers_every_acked_point_once(backend, tmp_path, request):
    if backend == "embedded":
        url = f"sqlite:///{tmp_path}/metrics.db"
    else:
        url = influx_v1_url(request.getfixturevalue("influxd"))
    outbox_path = str(tmp_path / "outbox.db")
    acked = run_and_kill(outbox_path, url, min_acked=1500)
    assert acked >= 1500

    # restart: a new process opens the same outbox and drains it
    outbox = Outbox(outbox_path)
    store = open_store(url)
    pending = outbox.depth()
    assert pending >= 1  # at least the batch the store accepted just before the kill
    result = Flusher(outbox, store, clock=Clock()).flush()
    assert result.error is None and outbox.depth() == 0 and result.sent == pending

    end = T0 + timedelta(hours=1)
    rows = store.query(
        Query("resource_stats", ["pass"], T0, end, aggregate="last", bucket_s=1, group_by=["resource"])
    )
    seen = sorted(int(r.values["pass"]) for r in rows)
    total = store.query(Query("resource_stats", ["pass"], T0, end, aggregate="count"))[0].values["pass"]
    assert total == len(seen) == len(set(seen))  # exactly once in the store's view
    assert seen[:acked] == list(range(acked))  # every acknowledged point arrived
    assert seen == list(range(len(seen)))  # and nothing but whole, real puts (no gaps)
    for r in rows:  # each point landed under its own tags and time
        seq = int(r.values["pass"])
        assert r.tags["resource"] == f"r{seq % 10}" and r.time == T0 + timedelta(seconds=seq // 10)
    outbox.close()
    store.close()
