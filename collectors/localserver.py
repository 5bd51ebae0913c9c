"""Throwaway local metric servers (influxd 1.x, victoria-metrics) for tests and benchmarks.

Each runs on a loopback port with every directory inside a temp dir, logs to a file there,
and is stopped (and the dir removed) by ``stop()``. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import httpx

log = logging.getLogger(__name__)

INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  index-version = "inmem"

[coordinator]
  write-timeout = "10s"

[retention]
  enabled = true

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  flux-enabled = false

[continuous_queries]
  enabled = false

[[graphite]]
  enabled = false
[[collectd]]
  enabled = false
[[opentsdb]]
  enabled = false
[[udp]]
  enabled = false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    name = "server"

    def __init__(self, binary: str, root: str | None = None) -> None:
        self.binary = binary
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix=f"tradeguard-{self.name}-")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 30.0) -> LocalServer:
        self._log = open(os.path.join(self.root, f"{self.name}.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self._log.name}")
            try:
                if self.ready():
                    log.info("%s listening on %s (pid %d)", self.name, self.base_url, self.proc.pid)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready within {timeout_s}s")

    def pause(self) -> None:
        """Make the server unavailable without losing its data (SIGSTOP)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self, *, keep_data: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_root and not keep_data:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalInfluxd(LocalServer):
    """InfluxDB 1.x (``influxd``), HTTP API on 127.0.0.1:<free port>."""

    name = "influxd"

    def command(self) -> list[str]:
        config = os.path.join(self.root, "influxdb.conf")
        with open(config, "w") as f:
            f.write(INFLUXD_CONFIG.format(root=self.root, port=self.port, rpc_port=free_port()))
        return [self.binary, "run", "-config", config]

    def ready(self) -> bool:
        return httpx.get(f"{self.base_url}/ping", timeout=1.0).status_code == 204


class LocalVictoriaMetrics(LocalServer):
    """VictoriaMetrics single node (speaks InfluxDB's /write and /api/v2/write)."""

    name = "victoria-metrics"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.root}/data",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-loggerLevel=ERROR",
        ]

    def ready(self) -> bool:
        return httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200
