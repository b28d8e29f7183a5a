"""The arbiter in this process, over real stand-in child processes."""

from __future__ import annotations

import io
import os
import signal
import socket
import time

import pytest

from luzia.supervisor.control import BadRequest, UnknownProgram
from luzia.supervisor.notify import Notifier
from luzia.supervisor.process import Program
from luzia.supervisor.states import ProcState
from tests.supervisor.conftest import HANG_TEST, until
from tests.supervisor.standins import EXIT_AT_ONCE, FOREVER, STUBBORN, chatty, ponger


def test_killed_child_is_restarted_after_its_backoff(arbiter, short_tmp):
    # the real first backoff (0.5 s), and a child that answers pings like broker and agent;
    # how soon it is back is measured in bench/, not here
    a = arbiter([Program("pong", ponger(f"ipc://{short_tmp}/p"), f"ipc://{short_tmp}/p")],
                backoff_initial=0.5, backoff_max=30)
    child = a.children["pong"]
    until(a, lambda: child.state is ProcState.RUNNING)
    pid = child.pid
    seen: list[tuple[ProcState, str]] = [(child.state, child.message)]
    backoff_until: list[float] = []
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        if not seen or seen[-1][0] is not child.state:
            seen.append((child.state, child.message))
            if child.state is ProcState.BACKOFF:
                backoff_until.append(child.restart_at)
        return child.state is ProcState.RUNNING and child.pid not in (0, pid)
    until(a, back)
    # the policy's order of events, each seen between two loop turns: the death, the
    # backoff delay, a new start (not before the delay is over), its first health answer
    assert [state for state, _ in seen] == [ProcState.RUNNING, ProcState.BACKOFF,
                                            ProcState.STARTING, ProcState.RUNNING]
    assert seen[1][1] == "killed by SIGKILL; restart in 0.5s"
    assert child.started_at >= backoff_until[0]
    assert child.restarts == 1 and child.exit_status == -signal.SIGKILL


def test_child_that_exits_at_once_goes_fatal_and_is_retried_after_the_cooldown(arbiter):
    a = arbiter([Program("flappy", EXIT_AT_ONCE)])
    child = a.children["flappy"]
    until(a, lambda: child.state is ProcState.FATAL)
    assert child.restarts == 2                         # 3 deaths: the first run and 2 restarts
    row = a.command("status", {})[0]
    assert row["state"] == "fatal" and row["exit_status"] == 3 and "flapping" in row["message"]
    cooled = child.restart_at                          # the death + fatal_cooldown (0.5 s)
    until(a, lambda: child.restarts >= 3)              # not abandoned: tried after the cool-down
    assert child.started_at >= cooled


def test_child_that_stops_answering_pings_is_killed_and_restarted(arbiter, short_tmp):
    ep = f"ipc://{short_tmp}/h1"
    # all the time it needs to start on a loaded box; little patience once it runs
    a = arbiter([Program("hangs", ponger(ep, answers=2), ep)], start_grace=30, **HANG_TEST)
    child = a.children["hangs"]
    until(a, lambda: child.state is ProcState.RUNNING)
    first = child.pid
    until(a, lambda: child.state is ProcState.BACKOFF)
    assert child.message.startswith("hung: no answer to health pings")
    assert not _alive(first)
    until(a, lambda: child.state is ProcState.RUNNING and child.pid not in (0, first))
    assert child.restarts == 1


def test_child_that_never_answers_is_killed_after_the_start_grace(arbiter, short_tmp):
    a = arbiter([Program("mute", FOREVER, f"ipc://{short_tmp}/nobody")], **HANG_TEST)
    child = a.children["mute"]
    first = child.pid
    until(a, lambda: child.state is ProcState.BACKOFF)
    assert child.message.startswith("hung: never answered")
    until(a, lambda: child.restarts >= 1 and child.pid not in (0, first))


def test_operator_stop_is_not_undone_and_start_brings_it_back(arbiter):
    a = arbiter([Program("forever", FOREVER)])
    child = a.children["forever"]
    until(a, lambda: child.state is ProcState.RUNNING)
    a.command("stop", {"name": "forever"})
    until(a, lambda: child.state is ProcState.STOPPED)
    deadline = time.monotonic() + 0.5                 # well past every restart delay
    until(a, lambda: time.monotonic() > deadline)
    assert (child.state, child.pid) == (ProcState.STOPPED, 0)
    assert "operator" in child.message
    a.command("start", {"name": "forever"})
    until(a, lambda: child.state is ProcState.RUNNING)
    old = child.pid
    a.command("restart", {"name": "forever"})
    until(a, lambda: child.state is ProcState.RUNNING and child.pid != old)
    assert child.restarts == 2
    with pytest.raises(UnknownProgram):
        a.command("stop", {"name": "nope"})
    with pytest.raises(BadRequest):
        a.command("explode", {})


def test_operator_stop_of_a_fatal_child_keeps_it_stopped(arbiter):
    a = arbiter([Program("flappy", EXIT_AT_ONCE)], fatal_cooldown=0.2)
    child = a.children["flappy"]
    until(a, lambda: child.state is ProcState.FATAL)
    a.command("stop", {"name": "flappy"})
    starts = child.starts
    deadline = time.monotonic() + 0.6                 # past the cool-down
    until(a, lambda: time.monotonic() > deadline)
    assert child.state is ProcState.STOPPED and child.starts == starts


def test_child_output_goes_to_a_rotated_log_and_tail_follows(arbiter, short_tmp):
    echo = io.StringIO()
    a = arbiter([Program("chatty", chatty(1000))])
    a.children["chatty"].output.echo, a.children["chatty"].output.stream = True, echo
    logs = short_tmp / "h" / "log"
    until(a, lambda: a.children["chatty"].output.seq == 1000)
    assert (logs / "chatty.log.1").exists() and (logs / "chatty.log.2").exists()
    assert not (logs / "chatty.log.3").exists()      # log_backups = 2
    assert all(p.stat().st_size <= 2000 for p in logs.glob("chatty.log*"))
    got = a.command("tail", {"name": "chatty", "lines": 5})
    assert got["lines"][-1] == "line 999" and len(got["lines"]) == 5 and got["seq"] == 1000
    got = a.command("tail", {"name": "chatty", "after": 997})
    assert got["lines"] == ["line 997", "line 998", "line 999"]
    assert a.command("tail", {"name": "chatty", "after": 1000})["lines"] == []
    assert " chatty | line 999\n" in echo.getvalue()
    with pytest.raises(BadRequest):
        a.command("tail", {"name": "chatty", "lines": "all"})


def test_graceful_stop_kills_a_child_that_ignores_sigterm_and_restarts_nothing(arbiter):
    a = arbiter([Program("stubborn", STUBBORN), Program("forever", FOREVER)], stop_timeout=0.5)
    until(a, lambda: all(c.state is ProcState.RUNNING for c in a.children.values())
          and a.children["stubborn"].output.seq >= 1)   # its SIGTERM handler is in place
    pids = [c.pid for c in a.children.values()]
    a.request_stop()
    t0 = time.monotonic()
    until(a, lambda: a.done)
    assert time.monotonic() - t0 >= 0.5                # stubborn had its stop_timeout
    assert {c.state for c in a.children.values()} == {ProcState.EXITED}
    assert a.children["stubborn"].exit_status == -signal.SIGKILL
    assert a.children["forever"].exit_status == -signal.SIGTERM
    assert all(c.starts == 1 for c in a.children.values())
    assert not any(_alive(p) for p in pids)
    with pytest.raises(BadRequest):
        a.command("start", {"name": "forever"})


def test_second_stop_request_kills_at_once(arbiter):
    a = arbiter([Program("stubborn", STUBBORN)], stop_timeout=30)
    child = a.children["stubborn"]
    until(a, lambda: child.output.seq >= 1)
    a.request_stop()
    a.turn(0.01)
    assert child.state is ProcState.STOPPING
    a.request_stop()
    until(a, lambda: a.done, 20)                       # long before its 30 s stop timeout
    assert child.exit_status == -signal.SIGKILL


class SystemdSocket:
    """The notify socket systemd would listen on: the datagrams the arbiter sent."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.got: list[str] = []

    def received(self, word: str) -> bool:
        try:
            while True:
                self.got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        return any(word in g for g in self.got)

    def first(self, word: str) -> str:
        return next(g for g in self.got if word in g)


@pytest.fixture
def systemd(short_tmp):
    s = SystemdSocket(str(short_tmp / "notify"))
    yield s
    s.sock.close()


def test_notify_socket_gets_ready_watchdog_status_and_stopping(arbiter, short_tmp, systemd):
    ep = f"ipc://{short_tmp}/p"
    a = arbiter([Program("pong", ponger(ep), ep)], notifier=Notifier(systemd.path, "400000"))
    until(a, lambda: systemd.received("READY=1"))
    # READY only once the child is up (it has start_grace + ping_timeout, 15.3 s, to answer)
    assert "STATUS=pong running" in systemd.first("READY=1")
    systemd.got.clear()
    until(a, lambda: systemd.received("WATCHDOG=1"))      # every 0.2 s: half of WATCHDOG_USEC
    systemd.got.clear()
    until(a, lambda: systemd.received("WATCHDOG=1"))
    a.request_stop()
    until(a, lambda: systemd.received("STOPPING=1"))
    assert sum("READY=1" in g for g in systemd.got) == 0  # READY is sent once


def test_ready_goes_out_at_the_latest_after_the_start_grace_saying_who_is_not_up(
        arbiter, short_tmp, systemd):
    # a child that never answers must not fail the unit's start as well (the decision in
    # luzia/supervisor/arbiter.py): READY after start_grace + ping_timeout (0.9 s here)
    a = arbiter([Program("mute", FOREVER, f"ipc://{short_tmp}/nobody")],
                notifier=Notifier(systemd.path, ""), **HANG_TEST)
    until(a, lambda: systemd.received("READY=1"))
    assert "STATUS=mute starting" in systemd.first("READY=1")
    assert time.monotonic() - a.began >= 0.9


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
