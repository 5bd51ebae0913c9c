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
    config = server_config(node.app, host, port, access_log=args.access_log, backlog=settings.node_backlog)
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


def server_config(app: Any, host: str, port: int, *, access_log: bool = False, backlog: int = 512) -> Any:
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
        # short: when the node stalls (a neighbour's CPU burst, a GC pause), shoppers whose answers are late
        # give up and reconnect, and a deep accept queue fills with connections their clients have left —
        # each one still accepted, parsed and answered, after the fresh ones. 4,096 took a 3 s stall at 50x
        # ~8 s to drain and twice the reconnections of 512 (bench/SURGE.md); beyond it the kernel drops
        # the SYN and the client retries, at no cost to the node
        backlog=backlog,
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

    Admitted requests run in worker threads (sync routes). Each time one needs the GIL back — after a
    SQLite call, or woken when the trading DB's one-writer lock is handed to it — it waits until the
    holder lets go, up to the switch interval (Python's default 5 ms); in a surge the holder is the
    event loop thread, busy answering refusals. Those waits pile up on the write lock's queue: at
    1,290 requests/s (50x the bench's capacity) the write lock's wait p99 was 756 ms at 5 ms against
    54 ms at 0.5 ms, and successful orders' p99 1.6 s against 0.73 s (bench/SURGE.md).
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
