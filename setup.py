"""Build: the project metadata is in pyproject.toml; this adds the compiled hot path of the guard.

The modules listed in ``guardians/_native.py`` (``MODULES``) are compiled with mypyc into optional C
extensions: without a C compiler (or Python headers) the build warns and the install goes on in
pure Python; ``TRADEGUARD_PURE_PYTHON=1`` skips compiling altogether. mypyc itself is a build
requirement (``[build-system] requires``); if it cannot be imported the install is pure Python too.
"""

from __future__ import annotations

import os
import re
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
        for source in ext.sources:
            if source.endswith(".c"):
                _no_freed_instance_reuse(source)
    return exts


# mypyc's dealloc of a generator / coroutine / closure environment publishes the object as its class's
# one reusable "free instance" *before* clearing its fields; clearing a field can run Python code (a
# finalizer) that makes another object of that class, which is handed the half-cleared one, whose
# fields the outer dealloc then goes on clearing (guardians/README.md, "The compiled hot path"). The
# reuse saves one allocation per generator; the guard does without it: the condition that publishes
# the instance is made false, so such objects are cleared and freed like any other.
_REUSE = re.compile(r"if \((\w+_free_instance) == NULL\) \{")
REUSE_OFF = "if (0 && {} == NULL) {{  /* tradeguard: no freed-instance reuse (setup.py) */"


def _no_freed_instance_reuse(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        code = f.read()
    code, n = _REUSE.subn(lambda m: REUSE_OFF.format(m.group(1)), code)
    if n:
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
        _say(f"{os.path.basename(path)}: freed-instance reuse turned off in {n} dealloc function(s)")


setup(ext_modules=ext_modules())
