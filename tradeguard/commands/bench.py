"""``tradeguard bench NAME [--json] ...``: run the benchmark module ``bench.NAME``.

``bench`` is a layer above ``tradeguard`` (it may import anything), so it is only
ever imported dynamically here. A benchmark module exposes ``add_arguments(parser)``
and ``run(args) -> dict``; progress goes to stderr and the result dict is printed as
ONE JSON line, last on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
from types import ModuleType

log = logging.getLogger(__name__)

BENCH_PACKAGE = "bench"


def available_benchmarks() -> list[str]:
    pkg = importlib.import_module(BENCH_PACKAGE)
    return sorted(i.name for i in pkgutil.iter_modules(pkg.__path__) if not i.name.startswith("_"))


def load_benchmark(name: str) -> ModuleType:
    """Import ``bench.NAME``; a clear error naming the available ones if it does not exist."""
    if not name.isidentifier():
        raise LookupError(f"benchmark name must be a Python identifier, got {name!r}")
    module_name = f"{BENCH_PACKAGE}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            known = ", ".join(available_benchmarks()) or "none"
            raise LookupError(f"unknown benchmark {name!r}; available: {known}") from exc
        raise
    for attr in ("add_arguments", "run"):
        if not callable(getattr(module, attr, None)):
            raise LookupError(f"benchmark module {module_name} has no {attr}() function")
    return module


def run_benchmark(name: str, argv: list[str], as_json: bool) -> int:
    try:
        module = load_benchmark(name)
    except LookupError as exc:
        print(f"tradeguard bench: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"tradeguard bench {name}")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line last")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    args.json = args.json or as_json
    log.info("running benchmark %s", name)
    result = module.run(args)
    if not isinstance(result, dict):
        print(
            f"tradeguard bench: {name}.run() returned {type(result).__name__}, expected dict", file=sys.stderr
        )
        return 1
    if not args.json:
        for key, value in result.items():
            print(f"{key}: {value}", file=sys.stderr)
    sys.stdout.flush()
    print(json.dumps(result, default=str, sort_keys=False), flush=True)
    return 0


def _handle(args: argparse.Namespace) -> int:
    if args.name is None:
        known = ", ".join(available_benchmarks()) or "none yet"
        print(f"usage: tradeguard bench NAME [--json] ...  (available: {known})", file=sys.stderr)
        return 2
    return run_benchmark(args.name, list(args.rest), args.json)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="run a benchmark from bench/ (prints one JSON line last)",
        description="Run bench/NAME.py; options after NAME go to the benchmark.",
    )
    p.add_argument("--json", action="store_true", help="print only the result JSON line on stdout")
    p.add_argument("name", nargs="?", help="benchmark name (module bench/NAME.py)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options for the benchmark")
    p.set_defaults(func=_handle)
