import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from guardians.store import RuleStore

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[3]


def test_an_apply_in_one_process_is_in_force_in_another(control_db_url, app_name):
    store = RuleStore(control_db_url)
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("watch_child.py")), control_db_url, app_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    lines: queue.Queue[dict] = queue.Queue()

    def pump():
        for line in child.stdout:
            try:
                lines.put(json.loads(line))
            except ValueError:
                pass

    threading.Thread(target=pump, daemon=True).start()

    def wait_for(pred, timeout=20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = lines.get(timeout=0.2)
            except queue.Empty:
                if child.poll() is not None:
                    raise AssertionError(f"child exited: {child.stderr.read()}") from None
                continue
            if pred(msg):
                return msg
        raise AssertionError("child never reported the expected state")

    try:
        wait_for(lambda m: m.get("ready"))
        v = store.apply(app_name, {"flow": [{"resource": "order.place", "threshold": 3}]}, "sre", "surge")
        msg = wait_for(lambda m: m.get("version") == v)
        assert msg["passed_of_10"] == 3  # the child enforces the rule it picked up from the store
        v2 = store.rollback(app_name, v, "sre", "same again")  # a new version, same content
        assert wait_for(lambda m: m.get("version") == v2)
    finally:
        child.kill()
        child.wait(5)
        store.close()
