"""Build: the project metadata is in pyproject.toml; this adds the compiled hot path of the guard.

The modules listed in ``guardians/_native.py`` (``MODULES``) are compiled with mypyc into optional C
extensions: without a C compiler (or Python headers) the build warns and the install goes on in
pure Python; ``TRADEGUARD_PURE_PYTHON=1`` skips compiling altogether. mypyc itself is a build
requirement (``[build-system] requires``); if it cannot be imported the install is pure Python too.
"""

from __future__ import annotations

import os
import runpy
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
native = runpy.run_path(os.path.join(HERE, "guardians", "_native.py"))


def _say(msg: str) -> None:
    print(f"[tradeguard build] {msg}", file=sys.stderr)


def ext_modules() -> list:
    if native["pure_requested"]():
        _say(f"the guard's hot path stays pure Python ({native['COMPILE_ENV']}=1 compiles it)")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        _say(f"mypyc unavailable ({exc}): the guard's hot path stays pure Python")
        return []
    paths = [os.path.relpath(native["source_of"](m), HERE) for m in native["MODULES"]]
    _say(f"compiling with mypyc: {' '.join(paths)}")
    # the compiled modules must type-check; modules they import are read for their types only
    opts = ["--follow-imports=silent", "--ignore-missing-imports"]
    exts = mypycify([*opts, *paths], group_name=native["GROUP"], opt_level="3", debug_level="0")
    for ext in exts:
        ext.optional = True  # no C compiler: build_ext warns and the install stays pure Python
    return exts


setup(ext_modules=ext_modules())
