"""The ``tradeguard`` command line.

Every module in ``tradeguard/commands/`` (found with pkgutil) exposes
``register(subparsers)`` and adds its subcommand(s) with
``set_defaults(func=handler)`` where ``handler(args) -> int`` is the exit code.
A command module that fails to import is reported on stderr and skipped, so one
broken command never takes the whole CLI down.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from common.redact import RedactingFilter, url_secrets
from tradeguard import commands as commands_pkg
from tradeguard.settings import LOG_FORMATS, LOG_LEVELS, env_name

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced later)."""

    _tradeguard = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY)$")


def secrets_from_env(environ: Mapping[str, str] | None = None) -> set[str]:
    """The secret values of the ``TRADEGUARD_*`` settings, as the logging filter masks them.

    Tokens and passwords (``TRADEGUARD_METRICS_TOKEN``, ``_PASSWORD``, ``TRADEGUARD_OPS_TOKEN``…),
    the password of ``TRADEGUARD_BOOTSTRAP_ADMIN`` (NAME:PASSWORD), and of every URL setting what
    ``common.redact.url_secrets`` finds in it (password, ``?token=``, a webhook's token).
    Read from the environment, the settings' only source, so it works even when the settings
    themselves do not validate (their error is logged too).
    """
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if not name.startswith("TRADEGUARD_") or not value:
            continue
        if _SECRET_NAME.search(name):
            found.add(value)
        elif name == "TRADEGUARD_BOOTSTRAP_ADMIN" and ":" in value:
            found.add(value.split(":", 1)[1])
        elif "://" in value:
            found.update(url_secrets(value))
    return {v for v in found if v}


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` / ``span_id`` of the current OpenTelemetry span ("" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        record.trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else ""
        record.span_id = f"{ctx.span_id:016x}" if ctx.is_valid else ""
        return True


class TextFormatter(logging.Formatter):
    """``LOG_FORMAT``, plus `` trace_id=…`` on the lines logged while serving a request."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", "")
        return f"{line} trace_id={trace_id}" if trace_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, trace_id, span_id (+ exc_info)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "trace_id", ""):
            out["trace_id"] = record.trace_id  # type: ignore[attr-defined]
            out["span_id"] = record.span_id  # type: ignore[attr-defined]
        if record.exc_text:  # already redacted by the RedactingFilter
            out["exc_info"] = record.exc_text
        elif record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def log_format_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    fmt = env.get("TRADEGUARD_LOG_FORMAT", "text").strip().lower()
    return fmt if fmt in LOG_FORMATS else "text"


def setup_logging(level: str = "INFO", environ: Mapping[str, str] | None = None,
                  fmt: str | None = None) -> None:
    """Log to stderr (stdout is kept for command output and JSON lines), secrets masked.

    The handler carries a ``RedactingFilter`` seeded with the secrets of the settings (see
    ``secrets_from_env``): every record of the process, ours or a library's, passes through it.
    ``fmt`` (default ``TRADEGUARD_LOG_FORMAT``): ``text`` or ``json`` lines; both carry the trace id
    of the request being served (``TraceContextFilter``). Redaction runs first, on the message.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tradeguard", False):  # only replace our own handler
            root.removeHandler(old)
    handler = StderrHandler()
    fmt = (fmt or log_format_from_env(environ)).lower()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(LOG_FORMAT))
    handler.addFilter(RedactingFilter(secrets_from_env(environ)))
    handler.addFilter(TraceContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # third-party chatter stays at WARNING unless DEBUG is asked for
    if level.upper() != "DEBUG":
        for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.access", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def command_modules() -> list[str]:
    """Names of the modules in ``tradeguard.commands``, sorted."""
    return sorted(
        f"{commands_pkg.__name__}.{info.name}"
        for info in pkgutil.iter_modules(commands_pkg.__path__)
        if not info.name.startswith("_")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradeguard",
        description="Operations control plane of an e-commerce trading core: "
        "node, guardians, collectors, console, alerts.",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=LOG_LEVELS,
        help="log level on stderr (default: TRADEGUARD_LOG_LEVEL or INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():  # every one is shipped: a broken one is a bug, not a missing part
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level
    if level is None:
        level = os.environ.get("TRADEGUARD_LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            level = "INFO"
    setup_logging(level)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = func(args)
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        print(f"tradeguard: invalid settings or arguments:\n{format_validation_error(exc)}", file=sys.stderr)
        return 2
    return int(code or 0)


def format_validation_error(exc: ValidationError) -> str:
    """One line per error: the environment variable / field name and what is wrong."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        lines.append(f"  {env_name(loc) if loc else '?'}: {err.get('msg')} (got {err.get('input')!r})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
