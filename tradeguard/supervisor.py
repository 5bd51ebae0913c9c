"""A small process supervisor for ``tradeguard demo`` (and benchmarks that run real processes).

- ``Supervisor.start(ChildSpec(...))`` starts a child (``python -m tradeguard.cli …``) in its
  own session, so a terminal Ctrl-C reaches only the supervisor, which then stops the
  children in reverse start order: terminate (SIGTERM), wait, kill.
- Each child's stdout and stderr are forwarded line by line with a ``[name]`` prefix to
  the supervisor's stderr (its stdout stays free for URLs and the final JSON line); the
  last JSON object a child printed on stdout is kept (``Child.last_json``).
- ``choose_port`` detects a port already in use before a child is started: a clear
  ``PortInUseError`` or the next free port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

log = logging.getLogger(__name__)


class PortInUseError(RuntimeError):
    """The port asked for is taken (and no free one was wanted or found)."""


class ChildFailed(RuntimeError):
    """A child exited before it was ready, or an essential child died."""


def port_in_use(host: str, port: int) -> bool:
    """True if ``host:port`` cannot be bound (another process listens on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def choose_port(host: str, preferred: int, *, next_free: bool = True, tries: int = 50) -> int:
    """``preferred`` if free; else the next free port above it (or ``PortInUseError``)."""
    if preferred == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    if not port_in_use(host, preferred):
        return preferred
    if not next_free:
        raise PortInUseError(
            f"port {preferred} on {host} is already in use; stop what runs there or pass another --port"
        )
    for port in range(preferred + 1, min(preferred + 1 + tries, 65536)):
        if not port_in_use(host, port):
            log.warning("port %d on %s is in use; using %d instead", preferred, host, port)
            return port
    raise PortInUseError(
        f"ports {preferred}..{preferred + tries} on {host} are all in use; pass another --port"
    )


def cli_argv(*args: str) -> list[str]:
    """argv running a tradeguard CLI command with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "tradeguard.cli", *args]


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None  # added to (not replacing) this process's environment
    ready_url: str | None = None  # started means: this URL answers 200
    ready_timeout_s: float = 30.0
    essential: bool = True  # if it exits unexpectedly, the supervisor stops everything
    cwd: str | None = None


@dataclass
class Child:
    spec: ChildSpec
    proc: subprocess.Popen[str]
    last_json: dict[str, Any] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    threads: list[threading.Thread] = field(default_factory=list)
    stopping: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def running(self) -> bool:
        return self.proc.poll() is None


class Supervisor:
    def __init__(self, *, out: TextIO | None = None, stop_timeout_s: float = 10.0) -> None:
        self.out = out or sys.stderr
        self.stop_timeout_s = stop_timeout_s
        self.children: list[Child] = []
        self.stop_event = threading.Event()
        self._out_lock = threading.Lock()
        self._previous_handlers: dict[int, Any] = {}

    # ----------------------------------------------------------------- start
    def start(self, spec: ChildSpec) -> Child:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(spec.env or {})}
        log.info("starting %s: %s", spec.name, " ".join(spec.argv))
        proc = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
        child = Child(spec=spec, proc=proc)
        for stream, is_stdout in ((proc.stdout, True), (proc.stderr, False)):
            t = threading.Thread(
                target=self._pump, args=(child, stream, is_stdout), name=f"pump-{spec.name}", daemon=True
            )
            t.start()
            child.threads.append(t)
        self.children.append(child)
        if spec.ready_url:
            self.wait_ready(child)
        return child

    def _pump(self, child: Child, stream: Any, is_stdout: bool) -> None:
        prefix = f"[{child.name}] "
        for raw in iter(stream.readline, ""):
            line = raw.rstrip("\n")
            child.tail.append(line)
            if is_stdout and line.startswith("{"):
                with contextlib.suppress(ValueError):
                    parsed = json.loads(line)
                    if isinstance(parsed, dict):
                        child.last_json = parsed
            with self._out_lock:
                try:
                    print(prefix + line, file=self.out, flush=True)
                except ValueError:  # our output was closed
                    pass
        stream.close()

    def wait_ready(self, child: Child) -> None:
        url, deadline = child.spec.ready_url, time.monotonic() + child.spec.ready_timeout_s
        assert url is not None
        last = ""
        while time.monotonic() < deadline:
            if not child.running:
                time.sleep(0.1)  # let the pumps print the child's last words
                raise ChildFailed(
                    f"{child.name} exited with code {child.proc.returncode} before it was ready; "
                    f"last output: {' | '.join(list(child.tail)[-5:])}"
                )
            if self.stop_event.is_set():
                raise ChildFailed(f"stopped while waiting for {child.name}")
            try:
                r = httpx.get(url, timeout=2.0)
                if r.status_code == 200:
                    log.info("%s is ready (%s)", child.name, url)
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ChildFailed(f"{child.name} not ready at {url} after {child.spec.ready_timeout_s:.0f} s: {last}")

    # ----------------------------------------------------------------- run
    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM ask the supervisor to stop (main thread only)."""

        def handler(signum: int, frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            self.stop_event.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.signal(sig, handler)

    def restore_signal_handlers(self) -> None:
        for sig, previous in self._previous_handlers.items():
            signal.signal(sig, previous)
        self._previous_handlers.clear()

    def wait(
        self,
        *,
        until: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
        poll_s: float = 0.2,
    ) -> str:
        """Block until a stop is asked ("stopped"), ``until()`` holds ("done"), the timeout passes
        ("timeout") or an essential child dies ("child_exited")."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self.stop_event.is_set():
                return "stopped"
            if until is not None and until():
                return "done"
            for child in self.children:
                if child.spec.essential and not child.running and not child.stopping:
                    log.error("%s exited with code %s", child.name, child.proc.returncode)
                    return "child_exited"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            self.stop_event.wait(poll_s)

    # ----------------------------------------------------------------- stop
    def stop_child(self, child: Child, timeout_s: float | None = None) -> int | None:
        """Terminate, wait, kill. Returns the exit code."""
        child.stopping = True
        timeout = self.stop_timeout_s if timeout_s is None else timeout_s
        if child.running:
            log.info("stopping %s (pid %d)", child.name, child.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)  # its whole session: it may have children
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", child.name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)
        for t in child.threads:
            t.join(2)
        return child.proc.returncode

    def stop_all(self) -> dict[str, int | None]:
        """Stop every child, the last started first."""
        codes = {}
        for child in reversed(self.children):
            codes[child.name] = self.stop_child(child)
        return codes

    def child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
