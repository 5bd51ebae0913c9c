"""Weak references to the guard's callables never corrupt memory, compiled or not.

Compiled by mypyc on Python 3.11, a lambda, a nested function (the ``@engine.entry`` wrappers, the
param matchers, the HTTP middleware's receive/send channels) or a class with an interpreted base (the
breaker's pybreaker listener) was an object with a ``__dict__`` and a ``__weakref__`` slot that mypyc's
code visited and cleared as a reference it owned and never told the weak references about: a weak
reference to one, once the object was freed, was decremented below zero and freed too while still
referenced, and the next garbage collection crashed in whatever code ran it (guardians/README.md, "The
compiled hot path"). Here every kind of such object is weakly referenced, two at a time so that one
goes through the free list mypyc keeps and the other is freed for good, then collected: before the
fix the child process died with SIGSEGV in the collector; now each weak reference is either refused
(a native object without the slot) or dead once its object is gone.

In a child process, so that a crash is a failed test rather than the end of the session; it imports
what the session imports (``TRADEGUARD_INTERPRETED`` passes through: ``make test`` runs both forms).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

CHILD = r"""
import gc, weakref
from common.clock import FakeClock
from guardians import Engine, parse_document
from guardians import http
from guardians.param.checker import value_matcher

eng = Engine(FakeClock())
def rules(n):
    return parse_document({
        "breaker": [{"resource": f"pay{n}", "strategy": "error_count", "threshold": 3, "min_requests": 3,
                     "stat_interval_ms": 1000, "recovery_s": 5}],
        "param": [{"resource": "GET /x", "param": "header:x", "threshold": 5, "match_strategy": s,
                   "pattern": "a"} for s in ("exact", "prefix", "regex")],
    })

def f():
    return 1

async def af():
    return 1

async def receive():
    return {}

async def send(message):
    pass

def objects():
    yield eng.entry("r")(f)
    yield eng.entry("r")(af)
    yield http._replay(b"", False, receive)
    if hasattr(http, "_StatusSend"):  # (the closure it replaced was made inside a request)
        yield http._StatusSend(send)
    for r in eng.ruleset.param:
        yield value_matcher(r)
    for b in eng._breaker.breakers():
        yield from b.cb.listeners

refs, refused = [], 0
for n in range(20):
    eng.apply(rules(n))
    pairs = list(zip(objects(), objects()))
    for pair in pairs:
        for obj in pair:
            try:
                refs.append((weakref.ref(obj), type(obj).__name__))
            except TypeError:
                refused += 1
    del pairs, pair, obj
    gc.collect()
eng.apply(parse_document({}))
gc.collect()
alive = sorted({name for ref, name in refs if ref() is not None})
print(len(refs), refused, alive)
"""


def test_weak_references_to_the_guards_callables_die_with_them_and_never_crash_the_collector():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", CHILD],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    made, refused, alive = done.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(made) + int(refused) >= 20 * 2 * 7, done.stdout
    assert alive == "[]", f"weak references still answering for freed objects: {alive}"


def test_no_type_of_a_compiled_module_has_the_weakref_slot_mypyc_mishandles():
    """Compiled, a lambda, a nested function or a class with an interpreted base added to one of
    ``MODULES`` would bring the slot back (its generated class is listed here by name)."""
    import gc

    import guardians
    import guardians.engine  # every compiled module is imported by these two
    import guardians.http
    from guardians._native import MODULES

    if not guardians.COMPILED:
        pytest.skip("the hot path runs as plain Python here: its classes are ordinary classes")
    types = [o for o in gc.get_objects() if isinstance(o, type) and o.__dict__.get("__module__") in MODULES]
    assert len(types) > 20  # the native classes and the generated generator classes
    assert [t.__qualname__ for t in types if t.__weakrefoffset__] == []


REENTER = r"""
from guardians import context

raw = context.caller_context.__wrapped__  # the generator function behind the context manager
keep = []

class Reenter(str):
    def __del__(self):  # runs while the first generator's fields are cleared
        keep.append(raw("origin-B", "entrance-B"))

first = raw(Reenter("origin-A"), "entrance-A")
del first  # freed before it ran: its dealloc clears the Reenter, whose finalizer makes another
second = keep[0]
next(second)
print(context.current_caller())
"""


def test_a_generator_made_while_another_is_freed_is_whole():
    """mypyc published a freed generator for reuse before clearing its fields: one made by a finalizer
    during that clearing got the half-cleared object and ended at once (StopIteration) — the build
    turns that reuse off (setup.py, ``_no_freed_instance_reuse``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", REENTER],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert done.stdout.strip().splitlines()[-1] == "('origin-B', 'entrance-B')"
