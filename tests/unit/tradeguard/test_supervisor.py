from __future__ import annotations

import io
import socket
import sys
import time

import pytest

from tradeguard.supervisor import (
    ChildFailed,
    ChildSpec,
    PortInUseError,
    Supervisor,
    choose_port,
    port_in_use,
)


@pytest.fixture
def listening():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_a_listening_port_is_in_use(listening):
    assert port_in_use("127.0.0.1", listening)


def test_choose_port_takes_the_next_free_one(listening):
    chosen = choose_port("127.0.0.1", listening)
    assert chosen > listening and not port_in_use("127.0.0.1", chosen)


def test_choose_port_can_refuse_with_a_clear_error(listening):
    with pytest.raises(PortInUseError, match=f"port {listening} on 127.0.0.1 is already in use"):
        choose_port("127.0.0.1", listening, next_free=False)


def test_choose_port_keeps_a_free_port_and_picks_one_for_zero(listening):
    free = choose_port("127.0.0.1", 0)
    assert free > 0 and choose_port("127.0.0.1", free) == free


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_output_is_forwarded_with_a_prefix_and_the_last_json_kept():
    out = io.StringIO()
    sup = Supervisor(out=out)
    code = "import sys, json; print('hello'); print('oops', file=sys.stderr); print(json.dumps({'n': 3}))"
    child = sup.start(ChildSpec("kid", py(code)))
    assert sup.wait(until=lambda: not child.running, timeout_s=20) == "done"
    sup.stop_all()
    text = out.getvalue()
    assert "[kid] hello" in text and "[kid] oops" in text
    assert child.last_json == {"n": 3}


def test_stop_terminates_then_kills_a_stubborn_child():
    sup = Supervisor(out=io.StringIO(), stop_timeout_s=1.0)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(60)"
    )
    polite = "import time; print('ready', flush=True); time.sleep(60)"
    a = sup.start(ChildSpec("polite", py(polite)))
    b = sup.start(ChildSpec("stubborn", py(stubborn)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (a.tail and b.tail):
        time.sleep(0.05)
    codes = sup.stop_all()
    assert codes["polite"] == -15  # SIGTERM
    assert codes["stubborn"] == -9  # SIGKILL after the timeout
    assert not a.running and not b.running


def test_an_essential_child_dying_is_reported():
    sup = Supervisor(out=io.StringIO())
    sup.start(ChildSpec("sleeper", py("import time; time.sleep(30)")))
    sup.start(ChildSpec("crasher", py("raise SystemExit(3)")))
    assert sup.wait(timeout_s=20) == "child_exited"
    assert sup.stop_all()["crasher"] == 3


def test_a_child_that_exits_before_ready_fails_clearly():
    sup = Supervisor(out=io.StringIO())
    spec = ChildSpec("node", py("print('port taken'); raise SystemExit(1)"), ready_url="http://127.0.0.1:9/x")
    with pytest.raises(ChildFailed, match="node exited with code 1 before it was ready"):
        sup.start(spec)
    sup.stop_all()


def test_a_stop_request_ends_the_wait():
    sup = Supervisor(out=io.StringIO())
    sup.stop_event.set()
    assert sup.wait(timeout_s=5) == "stopped"
