"""The guard's hot path compiled with mypyc: which modules, whether they run compiled, whether stale.

``MODULES`` are compiled by ``setup.py`` (``mypyc.build.mypycify``) into C extensions placed next to
their sources (``guardians/engine.cpython-311-x86_64-linux-gnu.so`` beside ``engine.py``) and one
shared library ``guardians/hot__mypyc…so``; Python's import system then loads the extension instead
of the source. The extensions are optional: without a C compiler, or with
``TRADEGUARD_PURE_PYTHON=1`` at install time, the same modules run as plain Python with the same
semantics (only slower).

An extension does not notice its source changing: after an edit it keeps running the old code.
``stale()`` names every compiled module whose source is newer than its extension; ``make`` rebuilds
them (``make native``), the test session and the node refuse to start silently with one.

Standard library only, no import of ``guardians``: ``setup.py``, the Makefile
(``python guardians/_native.py --check``) and the test conftest read it before anything is built
or imported.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

# the hot path, in dependency order (stat ← checkers ← engine ← http)
MODULES: tuple[str, ...] = (
    "guardians.context",
    "guardians.stat",
    "guardians.authority.checker",
    "guardians.flow.checker",
    "guardians.param.checker",
    "guardians.breaker.checker",
    "guardians.blocklog",
    "guardians.engine",
    "guardians.http",
)
GROUP = "guardians.hot"  # mypyc's shared library: guardians/hot__mypyc.<suffix>
PURE_ENV = "TRADEGUARD_PURE_PYTHON"
INTERPRETED_ENV = "TRADEGUARD_INTERPRETED"  # at run time: import the sources even where extensions exist
REBUILD = "make native  (or: python guardians/_native.py --rebuild)"
CLEAN = "python guardians/_native.py --clean"

ROOT = Path(__file__).resolve().parent.parent


COMPILE_ENV = "TRADEGUARD_COMPILE"


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("0", "false", "no", "off")


def pure_requested() -> bool:
    """Build and run without compiling: ``TRADEGUARD_PURE_PYTHON=1`` (or ``TRADEGUARD_COMPILE=0``).
    Compiling is the default; without a C compiler the build warns and stays pure Python anyway."""
    return _on(PURE_ENV) or _off(COMPILE_ENV)


def source_of(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def extensions_of(module: str, root: Path = ROOT) -> list[Path]:
    """The compiled extension files of ``module`` beside its source (any platform suffix)."""
    src = source_of(module, root)
    return sorted(
        p for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (p := src.with_name(src.stem + suffix)).exists()
    )


def shared_libraries(root: Path = ROOT) -> list[Path]:
    pkg = root.joinpath(*GROUP.split(".")[:-1])
    stem = GROUP.split(".")[-1] + "__mypyc"
    return sorted(p for s in importlib.machinery.EXTENSION_SUFFIXES if (p := pkg / (stem + s)).exists())


def _compiled_files(root: Path) -> list[tuple[str, Path, Path]]:
    """``(module, source, extension)`` of every extension beside a source in the package, listed in
    ``MODULES`` or not (one left from a build with a longer list would still be imported)."""
    pkg = root / "guardians"
    out = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in pkg.rglob("*" + suffix):
            src = ext.with_name(ext.name[: -len(suffix)] + ".py")
            if src.exists():
                module = ".".join(src.relative_to(root).with_suffix("").parts)
                out.append((module, src, ext))
    return sorted(out)


def stale(root: Path = ROOT) -> list[tuple[str, Path, Path]]:
    """``(module, source, extension)`` of every compiled module whose source is newer than its compiled
    code (importing it would run the code that was built, not the source), and of every module of
    ``MODULES`` left uncompiled beside compiled ones (a build of an older list). The code is in the
    shared library (a module's own extension is a shim a rebuild may leave alone): its time counts.
    Only in a source tree built in place (``setup.py`` beside the package)."""
    if not (root / "setup.py").exists():
        return []  # an installed copy (site-packages): pip wrote sources and extensions in any order
    found = _compiled_files(root)
    libs = shared_libraries(root)
    built = max(p.stat().st_mtime for p in libs) if libs else None
    out = [
        (m, src, ext) for m, src, ext in found
        if src.stat().st_mtime > (built if built is not None else ext.stat().st_mtime)
    ]
    if found:
        have = {m for m, _, _ in found}
        out += [(m, source_of(m, root), source_of(m, root).with_suffix(".so")) for m in MODULES
                if m not in have]
    return out


def stale_message(found: list[tuple[str, Path, Path]]) -> str:
    names = ", ".join(
        f"{m} ({m.replace('.', '/')}.py edited after the build)" if ext.exists()
        else f"{m} (not compiled)"
        for m, src, ext in found
    )
    return (
        f"stale compiled guardians modules: {names}. The old compiled code would run, not your edit. "
        f"Rebuild: {REBUILD}; or run pure Python: {CLEAN}"
    )


def interpreted_requested() -> bool:
    """``TRADEGUARD_INTERPRETED=1`` at run time: the hot path's sources run, extensions or not (CI runs
    the guardians' tests so too, without rebuilding; a way to rule the compiled code out)."""
    return os.environ.get(INTERPRETED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _SourcesFirst:
    """A meta path finder that loads the modules of ``MODULES`` from their sources (the import system's
    own finder would take the extension beside each)."""

    @staticmethod
    def find_spec(
        name: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in MODULES:
            return None
        src = source_of(name)
        if not src.exists():
            return None
        return importlib.util.spec_from_file_location(name, src)


def prefer_sources() -> bool:
    """Make the hot path import from its sources (before it is imported). False when a module of it is
    already imported: too late, nothing changed."""
    if any(m in sys.modules for m in MODULES):
        return False
    if not any(f is _SourcesFirst for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst)  # type: ignore[arg-type]
    return True


def compiled_modules() -> tuple[str, ...]:
    """The modules of ``MODULES`` that run compiled: imported from an extension, or (not yet imported)
    resolving to one (the import system prefers an extension to the source beside it)."""
    out = []
    for m in MODULES:
        mod = sys.modules.get(m)
        if mod is not None and getattr(mod, "__spec__", None) is not None:
            spec = mod.__spec__
        else:
            spec = importlib.util.find_spec(m)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            out.append(m)
    return tuple(out)


def clean(root: Path = ROOT) -> list[Path]:
    """Delete the compiled extensions (back to pure Python); returns what was removed."""
    gone = [ext for _, _, ext in _compiled_files(root)] + shared_libraries(root)
    for p in gone:
        p.unlink()
    return gone


def touch(root: Path = ROOT) -> None:
    """Stamp the extensions as built now (a rebuild that found them unchanged may not rewrite them)."""
    for p in [ext for _, _, ext in _compiled_files(root)] + shared_libraries(root):
        os.utime(p)


def rebuild_stale(root: Path = ROOT, python: str = sys.executable, always: bool = False) -> int:
    """``make native``: rebuild in place when a compiled module is stale (``always``: in any case, ``make
    compiled``). Never leaves a stale one: with ``TRADEGUARD_PURE_PYTHON=1``, or when the build fails
    (it is optional), they are removed, so the sources run as pure Python."""
    found = stale(root)
    if not found and not always:
        return 0
    if found:
        print(stale_message(found), file=sys.stderr)
    clean(root)  # whatever happens next, the old compiled code never runs again
    if pure_requested():
        print(f"[native] not compiled ({PURE_ENV}=1): the hot path runs as pure Python", file=sys.stderr)
        return 0
    print("[native] rebuilding in place: python setup.py build_ext --inplace", file=sys.stderr)
    import subprocess

    subprocess.run([python, "setup.py", "-q", "build_ext", "--inplace"], cwd=root, check=False)
    if all(extensions_of(m, root) for m in MODULES):
        # made by this build (copied from build/, keeping the time it was compiled: an edit that leaves
        # the generated C alike is not compiled again)
        touch(root)
    else:
        clean(root)
        print("[native] the compiled modules could not be rebuilt: the hot path runs as pure Python",
              file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if "--rebuild" in argv:
        return rebuild_stale()
    if "--build" in argv:
        return rebuild_stale(always=True)
    if "--check" in argv:  # exit 1 naming the stale modules (the Makefile rebuilds then)
        found = stale()
        if found:
            print(stale_message(found), file=sys.stderr)
            return 1
        return 0
    if "--clean" in argv:
        for p in clean():
            print(f"removed {p.relative_to(ROOT)}")
        return 0
    if "--touch" in argv:
        touch()
        return 0
    if "--list" in argv:
        print("\n".join(str(source_of(m).relative_to(ROOT)) for m in MODULES))
        return 0
    print("usage: python guardians/_native.py --check | --rebuild | --build | --clean | --touch | --list",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
