"""Child process for the live-apply test: a node-like engine + watcher printing what is in force."""

import json
import sys
import time

from guardians import Blocked, Engine
from guardians.store import RuleStore
from guardians.watcher import RuleWatcher


def main() -> None:
    url, app = sys.argv[1], sys.argv[2]
    engine = Engine()
    watcher = RuleWatcher(RuleStore(url), engine, app, interval_s=1.0)
    watcher.start()
    print(json.dumps({"ready": True}), flush=True)
    last = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine.rule_version != last:
            last = engine.rule_version
            passed = 0
            for _ in range(10):
                try:
                    engine.guard("order.place", lambda: None)
                    passed += 1
                except Blocked:
                    pass
            print(json.dumps({"version": last, "passed_of_10": passed}), flush=True)
        time.sleep(0.02)
    watcher.stop()


if __name__ == "__main__":
    main()
