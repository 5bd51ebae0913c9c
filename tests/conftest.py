"""Session checks for every test run."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

# read by path: importing ``guardians`` would load the compiled modules this check is about
_native = runpy.run_path(str(Path(__file__).resolve().parent.parent / "guardians" / "_native.py"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """A compiled guardians module older than its source would test the old code: refuse to run."""
    found = _native["stale"]()
    if found:
        raise pytest.UsageError(_native["stale_message"](found))
