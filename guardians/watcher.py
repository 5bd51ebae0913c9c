"""RuleWatcher: keeps an engine's rules equal to the store's newest version.

It polls the version number (default every second) on a daemon thread started
by ``start()``, and swaps the engine's whole rule set when it changes. If the
store is unreachable (or returns something unusable) the engine keeps its last
good rules and ``status()`` says so, with the error and since when.

Canary: a watcher given its node's ``instance`` also reads the app's running canary (one more cheap
query per poll); when its instance is a target it runs the canary's document instead (``canary_id``
says which), and goes back to the version in force when the canary ends (promoted or aborted).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from common.clock import Clock, SystemClock
from common.redact import redact_text
from guardians.engine import Engine
from guardians.store import RuleStore

log = logging.getLogger(__name__)


class RuleWatcher:
    def __init__(
        self,
        store: RuleStore,
        engine: Engine,
        app: str = "tradeguard",
        interval_s: float = 1.0,
        *,
        clock: Clock | None = None,
        instance: str | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.app = app
        self.interval_s = interval_s
        self.clock = clock or engine.clock or SystemClock()
        self.version: int | None = None  # version in force (None: nothing applied from the store yet)
        self.ok = True
        self.last_error: str | None = None
        self.failing_since: float | None = None
        self.last_poll_at: float | None = None
        self.last_success_at: float | None = None
        self.instance = instance
        self.canary_id: int | None = None  # the canary this node runs (None: the version in force)
        self.canary_base: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> bool:
        """Check the store once; apply a new version if there is one. Returns whether rules changed."""
        now = self.clock.time()
        self.last_poll_at = now
        try:
            v = self.store.current_version(self.app)
            changed = False
            canary = self.store.active_canary(self.app) if self.instance else None
            if canary is not None and self.instance in canary.targets:
                if canary.id != self.canary_id:
                    self.engine.apply(canary.ruleset, version=canary.base_version)
                    log.info("rules %s canary %d in force on %s (on v%d)", self.app, canary.id,
                             self.instance, canary.base_version)
                    self.canary_id, self.canary_base = canary.id, canary.base_version
                    self.version = None  # re-read the version in force when the canary ends
                    changed = True
            elif v and (v != self.version or self.canary_id is not None):
                rv = self.store.version(self.app, v)
                ruleset = rv.ruleset
                self.engine.apply(ruleset, version=v)
                log.info("rules %s v%d in force (was %s%s)", self.app, v, self.version,
                         f", canary {self.canary_id}" if self.canary_id else "")
                self.version = v
                self.canary_id = self.canary_base = None
                changed = True
        except Exception as exc:
            error = redact_text(f"{type(exc).__name__}: {exc}")[:500]  # shown in /ops/health
            if self.ok:
                log.warning("rule store unreachable for %s; keeping rules v%s: %s", self.app, self.version,
                            error)
                self.failing_since = now
            self.ok = False
            self.last_error = error
            return False
        if not self.ok:
            log.info("rule store reachable again for %s", self.app)
        self.ok = True
        self.last_error = None
        self.failing_since = None
        self.last_success_at = now
        return changed

    def _run(self) -> None:
        log.info("rule watcher for %s polling every %.1fs", self.app, self.interval_s)
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)
        log.info("rule watcher for %s stopped", self.app)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"rule-watcher-{self.app}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> dict[str, Any]:
        now = self.clock.time()
        return {
            "app": self.app,
            "ok": self.ok,
            "store_reachable": self.ok,
            "version": self.version if self.canary_id is None else self.canary_base,
            "canary": self.canary_id,
            "keeping_last_good_rules": not self.ok,
            "last_error": self.last_error,
            "failing_for_s": round(now - self.failing_since, 3) if self.failing_since is not None else None,
            "last_poll_age_s": round(now - self.last_poll_at, 3) if self.last_poll_at is not None else None,
            "last_success_age_s": round(now - self.last_success_at, 3)
            if self.last_success_at is not None
            else None,
            "interval_s": self.interval_s,
            "running": self._thread is not None and self._thread.is_alive(),
        }
