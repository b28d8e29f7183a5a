"""States, the restart policy and the notify protocol, without child processes."""

from __future__ import annotations

import socket

import pytest

from luzia.errors import IllegalTransition
from luzia.supervisor.logs import ChildOutput, RotatingLog
from luzia.supervisor.notify import Notifier
from luzia.supervisor.process import Child, Program, describe_exit
from luzia.supervisor.states import TRANSITIONS, ProcState
from tests.supervisor.conftest import make_cfg


def test_illegal_transitions_raise():
    with pytest.raises(IllegalTransition):
        ProcState.STOPPED.check(ProcState.RUNNING)
    with pytest.raises(IllegalTransition):
        ProcState.FATAL.check(ProcState.RUNNING)
    assert set(TRANSITIONS) == set(ProcState)
    assert ProcState.BACKOFF.check(ProcState.STARTING) is ProcState.STARTING


def make_child(tmp, **settings) -> Child:
    cfg = make_cfg(tmp / "h", **settings)
    out = ChildOutput("x", RotatingLog(tmp / "x.log", 0, 0))
    child = Child(Program("x", ["true"]), cfg.supervisor, out)
    child.move(ProcState.STARTING)
    return child


def die(child: Child, now: float, up: float = 0.0) -> None:
    child.started_at = now - up
    child.died(now, 1)


def test_backoff_doubles_to_the_max_and_resets_after_a_stable_run(short_tmp):
    child = make_child(short_tmp, backoff_initial=0.5, backoff_max=30, flap_deaths=100,
                       flap_window=1, stable_after=60)
    delays = []
    for i in range(9):
        die(child, now=100.0 + 10 * i)
        delays.append(child.backoff)
        assert child.state is ProcState.BACKOFF and child.restart_at == 100.0 + 10 * i + child.backoff
        child.move(ProcState.STARTING)
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    die(child, now=1000.0, up=61)          # stayed up past stable_after: from the beginning
    assert child.backoff == 0.5


def test_deaths_within_the_window_make_it_fatal_with_a_cooldown(short_tmp):
    child = make_child(short_tmp, flap_deaths=3, flap_window=10, fatal_cooldown=300)
    die(child, 100.0)
    child.move(ProcState.STARTING)
    die(child, 120.0)                      # the first death is out of the window by now
    child.move(ProcState.STARTING)
    die(child, 121.0)
    assert child.state is ProcState.BACKOFF
    child.move(ProcState.STARTING)
    die(child, 122.0)
    assert (child.state, child.restart_at) == (ProcState.FATAL, 422.0) and "flapping" in child.message
    assert "exited with status 1" in child.message


def test_exit_descriptions():
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-9) == "killed by SIGKILL"


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_sends_datagrams_to_path_and_abstract_sockets(short_tmp, abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"\0lzt-{short_tmp.name}" if abstract else str(short_tmp / "n")
    sock.bind(name)
    sock.settimeout(5)
    try:
        n = Notifier("@" + name[1:] if abstract else name, watchdog_usec="30000000")
        assert n.enabled and n.watchdog_interval == 15.0
        n.ready("broker running")
        assert sock.recv(4096) == b"READY=1\nSTATUS=broker running"
        n.watchdog_ping("ok")
        assert sock.recv(4096) == b"WATCHDOG=1\nSTATUS=ok"
        n.stopping()
        assert sock.recv(4096).startswith(b"STOPPING=1")
        n.close()
    finally:
        sock.close()


def test_notifier_without_a_socket_is_silent():
    n = Notifier("", "")
    assert not n.enabled and n.watchdog_interval == 5.0
    n.ready("x")   # no error, nothing sent
