"""A node-like writer for the crash-safety test: enqueues numbered points into an outbox
while a flusher thread sends them to a store. It announces every acknowledged put
(``acked N``) and every batch the store accepted before the outbox deleted it
(``written N``), pausing there so the test can kill -9 it exactly mid-flush.

Usage: python -m tests.integration.collectors.crash_writer OUTBOX_PATH STORE_URL
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from collectors.outbox import Flusher, Outbox
from collectors.points import make_point
from collectors.registry import open_store

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PER_PUT = 50
_OUT = threading.Lock()


def say(line: str) -> None:
    with _OUT:  # one whole line at a time: the flusher thread and the main thread both talk
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def point(seq: int):
    return make_point(
        "resource_stats",
        {"app": "crash", "instance": "n1", "resource": f"r{seq % 10}"},
        {"pass": float(seq)},
        T0 + timedelta(seconds=seq // 10),
    )


class Clock:
    def now(self):
        return datetime.now(UTC)


class AnnouncingStore:
    def __init__(self, inner):
        self.inner = inner
        if hasattr(inner, "write_lines"):  # offer the same capabilities as the real store
            self.write_lines = self._write_lines

    def write(self, points):
        self.inner.write(points)
        self._accepted(len(points))

    def _write_lines(self, lines):
        self.inner.write_lines(lines)
        self._accepted(len(lines))

    def _accepted(self, n: int) -> None:
        say(f"written {n}")
        time.sleep(0.02)  # accepted by the store, not yet deleted from the outbox

    def health(self):
        return self.inner.health()


def main() -> None:
    outbox = Outbox(sys.argv[1])
    store = AnnouncingStore(open_store(sys.argv[2]))
    flusher = Flusher(outbox, store, clock=Clock(), batch_size=200)

    def flush_forever():
        while True:
            flusher.flush()
            time.sleep(0.005)

    threading.Thread(target=flush_forever, daemon=True).start()
    seq = 0
    while True:
        outbox.put([point(s) for s in range(seq, seq + PER_PUT)])
        seq += PER_PUT
        say(f"acked {seq}")
        time.sleep(0.002)


if __name__ == "__main__":
    main()
