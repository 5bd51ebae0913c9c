"""The compiled hot path (guardians/_native.py): compiled when asked, never stale."""

from __future__ import annotations

import importlib.machinery
import os
import sys

import pytest

import guardians
from guardians import _native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_a_build_asked_to_compile_runs_every_hot_module_compiled() -> None:
    """CI (.ci/run) sets TRADEGUARD_REQUIRE_COMPILED=1: the tests it runs must have run compiled code."""
    if os.environ.get("TRADEGUARD_REQUIRE_COMPILED") != "1":
        pytest.skip("TRADEGUARD_REQUIRE_COMPILED=1 not set (a pure-Python install is allowed)")
    if _native.interpreted_requested():
        pytest.skip("TRADEGUARD_INTERPRETED=1: this run tests the sources (make test runs both)")
    assert guardians.COMPILED, f"not compiled: {set(_native.MODULES) - set(guardians.COMPILED_MODULES)}"
    for m in _native.MODULES:
        __import__(m)
        loader = sys.modules[m].__spec__.loader
        assert isinstance(loader, importlib.machinery.ExtensionFileLoader), (m, sys.modules[m].__file__)


def test_compiled_all_or_nothing() -> None:
    """One shared library holds every hot module: a partial set means a build of another list."""
    assert guardians.COMPILED_MODULES in ((), _native.MODULES)
    assert guardians.COMPILED is (guardians.COMPILED_MODULES == _native.MODULES)


def test_interpreted_runs_the_sources_where_extensions_exist() -> None:
    """TRADEGUARD_INTERPRETED=1 (make test's second guardians run): every hot module from its source."""
    code = (
        "import sys, guardians\n"
        "from guardians import _native\n"
        "for m in _native.MODULES: __import__(m)\n"
        "print(guardians.COMPILED, guardians.COMPILED_MODULES,"
        " all(sys.modules[m].__file__.endswith('.py') for m in _native.MODULES))\n"
    )
    import subprocess

    env = {**os.environ, "TRADEGUARD_INTERPRETED": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "()", "True"], out.stderr


def _tree(tmp_path, modules=("guardians.engine", "guardians.stat")):  # type: ignore[no-untyped-def]
    (tmp_path / "setup.py").write_text("")  # a source tree built in place
    for m in modules:
        src = _native.source_of(m, tmp_path)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text("x = 1\n")
        os.utime(src, (1000, 1000))
        ext = src.with_name(src.stem + SUFFIX)
        ext.write_bytes(b"")
        os.utime(ext, (2000, 2000))
    return tmp_path


def test_a_source_newer_than_its_extension_is_stale_and_named(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_native, "MODULES", ("guardians.stat", "guardians.engine"))
    root = _tree(tmp_path)
    assert _native.stale(root) == []
    os.utime(_native.source_of("guardians.engine", root), (3000, 3000))  # an edit after the build
    found = _native.stale(root)
    assert [m for m, _, _ in found] == ["guardians.engine"]
    msg = _native.stale_message(found)
    assert "guardians.engine" in msg and "make native" in msg and "--clean" in msg


def test_the_shared_library_built_after_the_edit_holds_its_code(tmp_path, monkeypatch) -> None:
    """A rebuild rewrites the shared library (the code); a module's shim may stay as it was."""
    monkeypatch.setattr(_native, "MODULES", ("guardians.stat", "guardians.engine"))
    root = _tree(tmp_path)
    os.utime(_native.source_of("guardians.engine", root), (3000, 3000))
    lib = root / "guardians" / ("hot__mypyc" + SUFFIX)
    lib.write_bytes(b"")
    os.utime(lib, (4000, 4000))
    assert _native.stale(root) == []
    os.utime(lib, (2500, 2500))
    assert [m for m, _, _ in _native.stale(root)] == ["guardians.engine"]


def test_an_installed_copy_is_never_stale(tmp_path, monkeypatch) -> None:
    """pip writes an installed package's files in any order: only a source tree is checked."""
    monkeypatch.setattr(_native, "MODULES", ("guardians.stat", "guardians.engine"))
    root = _tree(tmp_path)
    os.utime(_native.source_of("guardians.engine", root), (3000, 3000))
    (root / "setup.py").unlink()
    assert _native.stale(root) == []


def test_a_module_left_uncompiled_beside_compiled_ones_is_stale(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_native, "MODULES", ("guardians.stat", "guardians.engine", "guardians.http"))
    root = _tree(tmp_path)
    _native.source_of("guardians.http", root).write_text("x = 1\n")
    assert [m for m, _, _ in _native.stale(root)] == ["guardians.http"]
    assert "guardians.http (not compiled)" in _native.stale_message(_native.stale(root))


def test_an_extension_no_longer_listed_is_still_checked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_native, "MODULES", ("guardians.stat",))
    root = _tree(tmp_path, ("guardians.stat", "guardians.flow.checker"))
    os.utime(_native.source_of("guardians.flow.checker", root), (3000, 3000))
    assert [m for m, _, _ in _native.stale(root)] == ["guardians.flow.checker"]


def test_clean_removes_every_extension_so_the_sources_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_native, "MODULES", ("guardians.stat", "guardians.engine"))
    root = _tree(tmp_path)
    lib = root / "guardians" / ("hot__mypyc" + SUFFIX)
    lib.write_bytes(b"")
    gone = _native.clean(root)
    assert len(gone) == 3 and not lib.exists()
    assert _native.stale(root) == [] and not _native.extensions_of("guardians.engine", root)


def test_rebuild_with_pure_python_requested_removes_stale_extensions(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_native, "MODULES", ("guardians.stat", "guardians.engine"))
    _tree(tmp_path)
    monkeypatch.setenv(_native.PURE_ENV, "1")
    os.utime(_native.source_of("guardians.stat", tmp_path), (3000, 3000))
    assert _native.rebuild_stale(tmp_path) == 0
    assert not _native.extensions_of("guardians.stat", tmp_path)
    assert not _native.extensions_of("guardians.engine", tmp_path)


def test_this_checkout_has_no_stale_compiled_module() -> None:
    assert _native.stale() == [], _native.stale_message(_native.stale())


def test_node_health_reports_the_hot_path() -> None:
    from tradeguard.bootstrap import guard_hot_path

    hot = guard_hot_path()
    assert hot["status"] == "ok" and hot["compiled"] is guardians.COMPILED
    assert hot["modules"] == list(guardians.COMPILED_MODULES)
