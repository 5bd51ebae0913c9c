"""Fixtures of the real-browser tests: chromium (one per module) and the console stack (one per
session, shared by the tests that ask for ``stack``: they run last, so the stack's traffic does not
load the other e2e tests and it stops when they are done)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.console_stack import chromium, live_stack, need_chromium


def pytest_collection_modifyitems(session, config, items) -> None:
    users = [it for it in items if "stack" in getattr(it, "fixturenames", ())]
    if users:
        items[:] = [it for it in items if it not in users] + users


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[dict]:
    need_chromium()  # before starting anything
    with live_stack(tmp_path_factory.mktemp("console-e2e")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b
