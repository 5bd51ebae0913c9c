"""``tradeguard console [--port P] [--host H]``: run the Streamlit console.

Streamlit runs as a child process (``python -m streamlit run tradeguard/console_server.py``: the
``st.App`` that serves the script ``console_main.py`` with the session-cookie routes): the script
builds the console's services in the composition root (``bootstrap.build_console_services``) and
runs ``console.app.main`` on them. The settings
reach the child through the environment: every store URL is resolved here (so a
``TRADEGUARD_VAR_DIR`` alone moves the console's stores with the node's) and passed as
``TRADEGUARD_*`` variables; secrets are inherited from this process's environment,
never put on a command line or logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from common.redact import redact_url
from tradeguard.settings import Settings, env_name, load_settings
from tradeguard.supervisor import port_in_use

log = logging.getLogger(__name__)


def app_path() -> Path:
    """The Streamlit entry (it lives in the composition root: it opens the stores): the ``st.App`` of
    ``console_server.py``, which runs the script ``console_main.py``."""
    return Path(__file__).resolve().parent.parent / "console_server.py"


def streamlit_argv(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--theme.base", "dark",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def streamlit_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: this one plus every resolved (non-secret) store setting."""
    env = dict(os.environ if base is None else base)
    for field in ("app", "var_dir", "control_db", "metrics_url", "log_level"):
        env[env_name(field)] = str(getattr(settings, field))
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return env


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()
    host = args.host or settings.console_host
    port = settings.console_port if args.port is None else args.port
    if port_in_use(host, port):
        print(
            f"tradeguard console: port {port} on {host} is already in use; stop what runs there, "
            "or pass another --port (or set TRADEGUARD_CONSOLE_PORT)",
            file=sys.stderr,
        )
        return 2
    settings.ensure_var_dir()
    from tradeguard.bootstrap import apply_bootstrap_admin

    apply_bootstrap_admin(settings)  # TRADEGUARD_BOOTSTRAP_ADMIN: the first admin, once
    argv = streamlit_argv(host, port)
    log.info(
        "console starting: streamlit run %s (app %s, control DB %s)",
        app_path(),
        settings.app,
        redact_url(settings.control_db),
    )
    child = subprocess.Popen(argv, env=streamlit_env(settings))
    log.info("console: http://%s:%d", host, port)

    def forward(signum, _frame) -> None:  # type: ignore[no-untyped-def]
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info("console stopped (exit %s)", code)
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "console",
        help="run the Streamlit console (order-flow health, rules, instances, chaos)",
        description="Streamlit console: live order-flow health, resources, rule editing with an impact "
        "preview, node heartbeats and payment-gateway chaos. Stores come from the TRADEGUARD_* settings.",
    )
    p.add_argument("--port", type=int, default=None, help="port (default TRADEGUARD_CONSOLE_PORT or 8501)")
    p.add_argument(
        "--host", default=None, help="address to bind (default TRADEGUARD_CONSOLE_HOST, 127.0.0.1)"
    )
    p.set_defaults(func=_handle)
