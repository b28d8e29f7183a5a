"""The supervisor with stand-in children (in-process arbiter) and for real (a subprocess
running the real broker and agent)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from luzia import config
from luzia.supervisor.arbiter import Arbiter
from luzia.supervisor.notify import Notifier
from luzia.supervisor.process import Program
from luzia.supervisor.states import ProcState
from luzia.errors import IllegalTransition
from tests.fleet import PY, LocalFleet
from tests.helpers import wait_for

FOREVER = [PY, "-c", "import time; time.sleep(600)"]
EXIT_AT_ONCE = [PY, "-c", "raise SystemExit(3)"]


def make_cfg(home, extra: str = ""):
    home.mkdir(parents=True, exist_ok=True)
    (home / "luzia.toml").write_text(
        f'home = "{home}"\n[supervisor]\nbackoff_initial = 0.1\nbackoff_max = 0.2\n'
        f'flap_deaths = 3\nflap_window = 30\nfatal_cooldown = 0.5\nping_interval = 0.1\n'
        f'ping_timeout = 0.5\nstart_grace = 0.3\nstop_timeout = 2\nlog_max_bytes = 2000\n{extra}')
    return config.load(env={"LUZIA_CONFIG": str(home / "luzia.toml")})


@pytest.fixture
def arbiter(short_tmp):
    made = []

    def build(programs, notifier=None):
        a = Arbiter(make_cfg(short_tmp / "h"), programs=programs, notifier=notifier or Notifier(""))
        now = time.monotonic()
        for child in a.children.values():
            a._start(child, now)
        made.append(a)
        return a
    yield build
    for a in made:
        a.shutdown()
        wait_for(lambda: (a.turn(0.01), a.done)[1], 10)
        a.close()


def until(a, predicate, timeout=10):
    return wait_for(lambda: (a.turn(0.01), predicate())[1], timeout)


def test_states_refuse_illegal_transitions():
    with pytest.raises(IllegalTransition):
        ProcState.STOPPED.check(ProcState.RUNNING)


def test_killed_child_is_restarted_within_about_a_second(arbiter):
    a = arbiter([Program("forever", FOREVER)])
    child = a.children["forever"]
    until(a, lambda: child.state is ProcState.RUNNING)
    pid = child.pid
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    until(a, lambda: child.state is ProcState.RUNNING and child.pid not in (0, pid))
    assert time.monotonic() - t0 < 2.5 and child.restarts == 1


def test_flapping_child_goes_fatal_and_is_retried_after_the_cooldown(arbiter):
    a = arbiter([Program("flappy", EXIT_AT_ONCE)])
    child = a.children["flappy"]
    until(a, lambda: child.state is ProcState.FATAL)
    assert "died 3 times" in child.message
    status = a.command("status", {})
    assert status[0]["state"] == "fatal"
    until(a, lambda: child.restarts >= 3)        # tried again after the cool-down


def test_hung_child_is_killed_and_restarted(arbiter, short_tmp):
    # answers nothing on its ping endpoint: a hang, not a death
    a = arbiter([Program("hung", FOREVER, ping=f"ipc://{short_tmp}/nobody")])
    child = a.children["hung"]
    first = child.pid
    until(a, lambda: child.restarts >= 1 and child.pid not in (0, first))


def test_operator_stop_is_not_undone_and_start_brings_it_back(arbiter):
    a = arbiter([Program("forever", FOREVER)])
    child = a.children["forever"]
    until(a, lambda: child.state is ProcState.RUNNING)
    a.command("stop", {"name": "forever"})
    until(a, lambda: child.state is ProcState.STOPPED)
    for _ in range(30):
        a.turn(0.01)
    assert child.state is ProcState.STOPPED and child.pid == 0
    a.command("start", {"name": "forever"})
    until(a, lambda: child.state is ProcState.RUNNING)
    with pytest.raises(KeyError):
        a.command("stop", {"name": "nope"})


def test_child_output_goes_to_a_rotated_log(arbiter, short_tmp):
    chatty = [PY, "-c", "import time\nfor i in range(400): print('line', i, flush=True)\ntime.sleep(600)"]
    a = arbiter([Program("chatty", chatty)])
    log_path = short_tmp / "h" / "log" / "chatty.log"
    until(a, lambda: (log_path.parent / "chatty.log.1").exists())
    assert "line 399" in "\n".join(a.command("tail", {"name": "chatty", "lines": 5})["lines"])


def test_notify_socket_gets_ready_and_watchdog(arbiter, short_tmp):
    path = str(short_tmp / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        a = arbiter([Program("forever", FOREVER)], notifier=Notifier(path))
        got = []
        until(a, lambda: child_running(a))
        until(a, lambda: got.append(sock.recv(4096).decode()) or any("READY=1" in g for g in got))
        assert any("WATCHDOG=1" in g for g in got) and any("STATUS=" in g for g in got)
    finally:
        sock.close()


def child_running(a):
    return all(c.state is ProcState.RUNNING for c in a.children.values())


def test_real_supervisor_runs_broker_and_agent_restarts_and_stops_cleanly(short_tmp):
    fleet = LocalFleet(short_tmp / "f", '[supervisor]\nbackoff_initial = 0.2\nping_interval = 0.5\n'
                                        '[agent]\nrunner = "subprocess"\n[broker]\nheartbeat_interval = 0.2\n')
    sup = fleet.start("supervisor", [PY, "-m", "luzia.supervisor"])
    try:
        status = lambda: json.loads(fleet.cli("supervisor", "status", "--json").stdout or "[]")
        wait_for(lambda: [r["state"] for r in status()] == ["running", "running"], 20)
        rows = {r["name"]: r for r in status()}
        assert set(rows["broker"]) >= {"name", "state", "pid", "uptime", "restarts"}
        os.kill(rows["broker"]["pid"], signal.SIGKILL)
        wait_for(lambda: {r["name"]: r for r in status()}["broker"]["restarts"] == 1
                 and {r["name"]: r for r in status()}["broker"]["state"] == "running", 10)
        job_id = fleet.submit("demo", "after a broker restart")
        wait_for(lambda: fleet.state(job_id) == "completed", 20)
        pids = [r["pid"] for r in status()]
        sup.send_signal(signal.SIGTERM)
        sup.wait(15)
        assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        assert b"stopped" in (fleet.home / "supervisor.out").read_bytes()
    finally:
        fleet.close()


def test_supervisor_cli_without_a_supervisor_is_one_line_exit_3(short_tmp):
    fleet = LocalFleet(short_tmp / "f")
    out = fleet.cli("supervisor", "status")
    fleet.close()
    assert out.returncode == 3 and b"supervisor not reachable" in out.stderr


def test_unwritable_state_dir_is_a_clear_error(short_tmp):
    (short_tmp / "luzia.toml").write_text("")
    out = subprocess.run([PY, "-m", "luzia.supervisor"], capture_output=True,
                         env={**os.environ, "LUZIA_HOME": "/proc/luzia",
                              "LUZIA_CONFIG": str(short_tmp / "luzia.toml")})
    assert out.returncode == 73 and b"/proc/luzia" in out.stderr
