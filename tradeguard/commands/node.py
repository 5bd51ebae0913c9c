"""``tradeguard node [--port P] [--host H]``: serve the guarded trading core over HTTP (uvicorn)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import sys
from typing import Any

from tradeguard.settings import Settings, load_settings
from tradeguard.supervisor import port_in_use

log = logging.getLogger(__name__)


def _handle(args: argparse.Namespace) -> int:
    import uvicorn

    from tradeguard.bootstrap import build_node

    settings = load_settings()
    host = args.host or settings.node_host
    port = settings.node_port if args.port is None else args.port
    if port and port_in_use(host, port):
        print(
            f"tradeguard node: port {port} on {host} is already in use; stop what runs there, "
            f"or pass another --port (or set TRADEGUARD_NODE_PORT)",
            file=sys.stderr,
        )
        return 2
    node = build_node(
        settings, host=host, port=port, guardians=not args.no_guardians, collectors=not args.no_metrics
    )
    config = server_config(node.app, host, port, access_log=args.access_log)
    tune_runtime(settings)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the handler
    # that was there before it started: make that handler end the process through our cleanup.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    node.start()
    log.info("node %s serving on http://%s:%d (http %s, loop %s)", node.ctx.instance, host, port,
             *server_stack())
    try:
        server.run()
    except _Stop:
        pass
    finally:
        node.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def server_config(app: Any, host: str, port: int, *, access_log: bool = False) -> Any:
    """The node's uvicorn configuration (one process, one event loop)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep tradeguard's logging setup
        access_log=access_log,  # off unless asked: a line per request is CPU a surge does not have
        timeout_graceful_shutdown=5,
        server_header=False,
        # client addresses come from X-Forwarded-For only through TRADEGUARD_TRUSTED_PROXIES (the guard's
        # own rule); uvicorn's default would also believe any 127.0.0.1 peer, before the guard sees it
        proxy_headers=False,
        backlog=4096,  # a surge opens hundreds of connections a second (the kernel caps it at somaxconn)
        # http/loop "auto": httptools (C parser) and uvloop, dependencies of tradeguard; h11 and asyncio
        # only where they do not install. Under a 50x surge they halve the event loop's CPU per refused
        # request (bench/SURGE.md)
        http="auto",
        loop="auto",
    )


def server_stack() -> tuple[str, str]:
    """(HTTP parser, event loop) uvicorn's "auto" picks in this environment."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return http, loop


def tune_runtime(settings: Settings) -> None:
    """Process-wide runtime tuning of a node: the GIL switch interval.

    Admitted requests run in worker threads (sync routes); their SQLite calls release the GIL and take
    it back, while the event loop thread, answering hundreds of refusals a second in a surge, holds it.
    A thread asking for the GIL waits up to the switch interval (5 ms by default) for the holder to
    drop it, once per SQL statement, and the trading DB's write transactions run one at a time under a
    lock: at 5 ms, a place or pay transaction of a dozen statements took ~60 ms of wall time for ~2 ms
    of CPU, the write lock became the bottleneck and admitted orders timed out (bench/SURGE.md).
    """
    sys.setswitchinterval(settings.node_switch_interval_ms / 1000.0)


class _Stop(Exception):
    """A stop signal arrived after uvicorn's graceful shutdown."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "node",
        help="serve the guarded trading core over HTTP",
        description="The trading core's HTTP API plus /ops/health, /ops/stats, /ops/rules, "
        "/ops/chaos/payment.",
    )
    p.add_argument("--port", type=int, default=None, help="port (default TRADEGUARD_NODE_PORT or 8000)")
    p.add_argument("--host", default=None, help="address to bind (default TRADEGUARD_NODE_HOST or 127.0.0.1)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--no-guardians", action="store_true", help="run unguarded (benchmarks: the baseline)")
    p.add_argument("--no-metrics", action="store_true", help="do not run the collectors")
    p.set_defaults(func=_handle)
