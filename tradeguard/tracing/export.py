"""Export off the request path: a bounded queue of kept traces drained by one thread."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from common.redact import redact_text
from tradeguard.tracing.sampling import KeptTrace

log = logging.getLogger(__name__)


class ExportQueue:
    """A bounded queue of kept traces drained by one daemon thread into ``export(batch)``.

    ``put`` never blocks: when full, the oldest trace is dropped (``dropped``). A failing
    ``export`` (collector down, store locked) counts its traces as dropped too and is retried
    by nothing: tracing is best effort, the request never waits for it.
    """

    def __init__(self, export: Callable[[list[KeptTrace]], None], *, maxlen: int = 2048,
                 batch: int = 256, interval_s: float = 0.5, name: str = "trace-export") -> None:
        self._export = export
        self._q: deque[KeptTrace] = deque()
        self.maxlen = maxlen
        self.batch = batch
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name
        self.exported = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None

    def put(self, item: KeptTrace) -> None:
        with self._lock:
            self._q.append(item)
            if len(self._q) > self.maxlen:
                self._q.popleft()
                self.dropped += 1
            full = len(self._q) >= self.batch
        if full:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._q)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _take(self) -> list[KeptTrace]:
        with self._lock:
            n = min(self.batch, len(self._q))
            return [self._q.popleft() for _ in range(n)]

    def drain_once(self) -> int:
        """Export one batch now (the worker's step; tests call it directly). Returns traces taken."""
        items = self._take()
        if not items:
            return 0
        try:
            self._export(items)
            self.exported += len(items)
        except Exception as exc:
            self.dropped += len(items)
            self.failures += 1
            self.last_error = redact_text(f"{type(exc).__name__}: {exc}")[:300]
            log.debug("trace export failed: %s", self.last_error)
        return len(items)

    def flush(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._q and time.monotonic() < deadline:
            self.drain_once()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            while self.drain_once():
                if self._stop.is_set():
                    break

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush(timeout_s)

    def status(self) -> dict[str, Any]:
        return {"queued": len(self._q), "capacity": self.maxlen, "exported": self.exported,
                "dropped": self.dropped, "export_failures": self.failures, "last_error": self.last_error}
