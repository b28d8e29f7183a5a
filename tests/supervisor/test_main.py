"""The supervisor as a process: signals, the process-group Ctrl-C, the death backstop, its
control socket through `luzia supervisor …`, and start-up errors. Stand-in children run
under tests/supervisor/standins.py's harness; `luzia-supervisor` itself runs with no
children (--no-broker --no-agent) where its own behaviour is what is tested."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from luzia.cli.supervisor import supervisor
from luzia.errors import BrokerUnreachable
from tests.helpers import wait_for
from tests.supervisor.conftest import make_cfg
from tests.supervisor.standins import EXIT_AT_ONCE, FOREVER, PY, STUBBORN, chatty, ponger

ROOT = Path(__file__).resolve().parents[2]


class Harness:
    """A supervisor subprocess over stand-in programs, and its environment for the CLI.
    Every child that `status` showed is remembered, so close() can kill what a failed test
    left behind (a stubborn child ignores the SIGTERM its supervisor's death sends it)."""

    def __init__(self, home: Path, programs: list[dict], new_session: bool = False, **settings) -> None:
        make_cfg(home, **settings)
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LUZIA_", "NOTIFY_"))}
        self.env.update(LUZIA_CONFIG=str(home / "luzia.toml"), LUZIA_HOME=str(home), PYTHONPATH=str(ROOT))
        self.out = open(home / "harness.out", "wb")
        self.seen: dict[int, psutil.Process] = {}
        self.proc = subprocess.Popen([PY, "-m", "tests.supervisor.standins", str(home / "luzia.toml"),
                                      json.dumps(programs)], cwd=ROOT, env=self.env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=new_session)
        wait_for(lambda: (home / "run" / "supervisor").exists() and "harness up" in self.output(), 30)

    def output(self) -> str:
        return (self.home / "harness.out").read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "luzia.cli", "supervisor", *args], env=self.env,
                              capture_output=True, timeout=30, cwd=ROOT)

    def status(self) -> dict[str, dict]:
        out = self.cli("status", "--json")
        assert out.returncode == 0, out.stderr
        rows = {r["name"]: r for r in json.loads(out.stdout)}
        for row in rows.values():
            if row["pid"] > 0 and row["pid"] not in self.seen:
                try:
                    self.seen[row["pid"]] = psutil.Process(row["pid"])
                except psutil.NoSuchProcess:
                    pass
        return rows

    def close(self) -> None:
        """Kill the harness and every process under it or seen in a status, at once."""
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        family += [p for p in self.seen.values() if p not in family]
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for proc in family:          # psutil refuses a pid that now names another process
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)
        self.out.close()


@pytest.fixture
def harness(short_tmp):
    made: list[Harness] = []

    def build(programs, **kw):
        h = Harness(short_tmp / f"s{len(made)}", programs, **kw)
        made.append(h)
        return h
    yield build
    for h in made:
        h.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_status_json_from_the_cli_and_sigterm_leaves_no_child(harness, short_tmp):
    ep = f"ipc://{short_tmp}/p"
    h = harness([{"name": "pong", "argv": ponger(ep), "ping": ep}, {"name": "forever", "argv": FOREVER},
                 {"name": "stubborn", "argv": STUBBORN}], stop_timeout=0.5)
    rows = wait_for(lambda: (s := h.status()) and all(r["state"] == "running" for r in s.values()) and s, 30)
    assert list(rows) == ["pong", "forever", "stubborn"]
    assert all(set(r) == {"name", "state", "pid", "uptime", "restarts"} for r in rows.values())
    assert all(r["pid"] > 0 and r["restarts"] == 0 for r in rows.values())
    table = h.cli("status")
    assert table.returncode == 0 and b"running" in table.stdout and b"stubborn" in table.stdout
    h.proc.send_signal(signal.SIGTERM)
    assert h.proc.wait(30) == 0
    # our grandchildren, killed: init reaps them when it gets to it (a loaded box is slow)
    wait_for(lambda: all(gone(r["pid"]) for r in rows.values()), 30, message="children reaped")
    assert "harness stopped" in h.output() and "restart in" not in h.output()


def test_ctrl_c_to_the_process_group_stops_all_without_restarts_and_twice_kills(harness):
    h = harness([{"name": "forever", "argv": FOREVER}, {"name": "stubborn", "argv": STUBBORN}],
                new_session=True, stop_timeout=30)
    rows = wait_for(lambda: (s := h.status()) and all(r["state"] == "running" for r in s.values()) and s, 30)
    pgid = os.getpgid(h.proc.pid)
    os.killpg(pgid, signal.SIGINT)                       # what the terminal does on Ctrl-C
    wait_for(lambda: gone(rows["forever"]["pid"]), 30)
    assert h.proc.poll() is None and not gone(rows["stubborn"]["pid"])  # still in its stop timeout
    os.killpg(pgid, signal.SIGINT)                       # the second Ctrl-C
    assert h.proc.wait(20) == 0                          # not the 30 s stop timeout: killed
    assert gone(rows["stubborn"]["pid"])
    assert "restart in" not in h.output() and "second stop request" in h.output()


def test_no_child_outlives_a_supervisor_killed_with_sigkill(harness):
    h = harness([{"name": "forever", "argv": FOREVER}])
    pid = wait_for(lambda: h.status()["forever"]["pid"], 30)
    h.proc.kill()
    h.proc.wait(10)
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    wait_for(lambda: gone(pid), 30, message="child ends with its supervisor")


def test_cli_start_stop_restart_tail_against_a_running_supervisor(harness, monkeypatch):
    h = harness([{"name": "chatty", "argv": chatty(30)}, {"name": "flappy", "argv": EXIT_AT_ONCE}],
                fatal_cooldown=60)
    for key in ("LUZIA_CONFIG", "LUZIA_HOME"):
        monkeypatch.setenv(key, h.env[key])
    runner = CliRunner()
    wait_for(lambda: h.status()["flappy"]["state"] == "fatal", 30)
    out = runner.invoke(supervisor, ["status"])
    assert out.exit_code == 0 and "fatal" in out.output and "flapping" in out.output
    tail = ["tail", "chatty", "-n", "5"]
    wait_for(lambda: len(runner.invoke(supervisor, tail).output.splitlines()) == 5, 30)
    assert runner.invoke(supervisor, tail).output.splitlines()[-1] == "line 29"
    out = runner.invoke(supervisor, ["stop", "chatty"])
    assert out.exit_code == 0 and out.output.startswith("chatty: stopping")
    wait_for(lambda: h.status()["chatty"]["state"] == "stopped", 30)
    assert runner.invoke(supervisor, ["start", "chatty"]).output.startswith("chatty: starting")
    out = runner.invoke(supervisor, ["restart", "chatty"])
    assert out.exit_code == 0 and "chatty:" in out.output
    wait_for(lambda: h.status()["chatty"]["restarts"] == 2, 30)
    out = runner.invoke(supervisor, ["stop", "nope"])
    assert out.exit_code != 0 and "no program 'nope'" in str(out.exception)


def test_cli_without_a_supervisor_is_one_line_and_exit_3(short_tmp):
    home = short_tmp / "h"
    make_cfg(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUZIA_")}
    env.update(LUZIA_CONFIG=str(home / "luzia.toml"))
    out = subprocess.run([PY, "-m", "luzia.cli", "supervisor", "status"], env=env, capture_output=True,
                         timeout=30, cwd=ROOT)
    assert out.returncode == BrokerUnreachable.exit_code == 3
    line = out.stderr.decode().strip()
    assert "\n" not in line and "supervisor not reachable at ipc://" in line
    assert "start it with `luzia-supervisor` (or `make run`)" in line


def run_main(home: Path, *args: str, wait: bool = True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUZIA_", "NOTIFY_"))}
    cmd = [PY, "-m", "luzia.supervisor", "--config", str(home / "luzia.toml"), *args]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, timeout=30, cwd=ROOT)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)


def test_banner_says_where_things_are_and_a_second_supervisor_is_refused(short_tmp):
    home = short_tmp / "h"
    make_cfg(home)
    first = run_main(home, "--no-broker", "--no-agent", wait=False)
    try:
        lines: list[str] = []

        def banner_read() -> bool:
            lines.append(first.stdout.readline().decode())
            return "stop:" in lines[-1]
        wait_for(banner_read, 30)
        text = "".join(lines)
        assert f"state      {home}" in text and f"config     {home / 'luzia.toml'}" in text
        assert "candidates:" in text and f"supervisor ipc://{home}/run/supervisor" in text
        assert f"logs       {home / 'log'}" in text and 'submit a job: luzia demo "hello"' in text
        second = run_main(home, "--no-broker", "--no-agent")
        assert second.returncode == 1 and b"another supervisor" in second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0
        assert (home / "log" / "supervisor.log").read_text().count("stopped") >= 1
    finally:
        first.kill()
        first.wait()
        first.stdout.close()


def test_unwritable_state_dir_is_one_line_and_exit_73(short_tmp):
    (short_tmp / "luzia.toml").write_text('home = "/proc/luzia"\n')
    out = run_main(short_tmp)
    assert out.returncode == 73
    assert out.stderr.decode().strip().count("\n") == 0 and "/proc/luzia" in out.stderr.decode()
