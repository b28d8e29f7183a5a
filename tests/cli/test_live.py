"""Live views against a fake broker whose jobs move on their own: jobs --watch, logs -f,
and what a terminal sees."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from typing import Any

from tests.cli.conftest import PY, make_home
from tests.cli.fakebroker import FakeBroker, make_job

A = "130000-aaaaaaaaaaaa"
B = "130001-bbbbbbbbbbbb"

STEPS: list[dict[str, Any]] = [
    {"state": "assigned", "host": "gpu1", "why": ""},
    {"state": "running", "progress": 30.0, "message": "step 3", "log": b"step 3\n"},
    {"state": "running", "progress": 60.0, "message": "step 6", "log": b"step \x1b[1m6\x1b[0m\n"},
    {"state": "completed", "progress": 100.0, "message": "done", "exit_code": 0, "log": b"done\n",
     "finished_at": time.time()},
]


def test_watch_follows_a_job_to_the_end_and_exits_0(home, fake):
    fake.add(make_job(A, task="watch me"), tail=["done"])
    fake.script(A, STEPS[:-1] + [dict(STEPS[-1], state="failed", exit_code=1, reason="exit 1")])
    out = home.cli("jobs", A[:9], "--watch")
    assert out.returncode == 0, out.stderr              # failed is shown, not an error
    text = out.stdout.decode()
    head, final = text.split("\n\n", 1)                # a line per change, then the final view
    changes = [line.split("  ", 2)[2] for line in head.splitlines()]
    assert all(line.split("  ")[1] == A for line in head.splitlines())
    assert changes[0].startswith("PENDING [") and changes[-1].startswith("FAILED [")
    assert "RUNNING [██████░░░░░░░░░░░░░░] 30% step 3" in changes
    assert final.startswith("FAILED [████████████████████] 100% done\n")
    assert "   exit 1\n" in final and "  done" in final and "\x1b" not in text


def test_watch_wakes_on_events_not_only_on_the_refresh_interval(short_tmp):
    home = make_home(short_tmp, "monitor_interval = 30\n[projects.demo]\nuser = \"alice\"\n")
    fake = FakeBroker(home.cfg)
    try:
        fake.add(make_job(A))
        fake.script(A, STEPS, every=0.3)
        started = time.monotonic()
        out = home.cli("jobs", A, "--watch", timeout=25)
        assert out.returncode == 0 and "COMPLETED [" in out.stdout.decode()
        assert time.monotonic() - started < 15           # well before one 30 s refresh
    finally:
        fake.close()


def test_watch_json_prints_one_object_per_change(home, fake):
    fake.add(make_job(A))
    fake.script(A, STEPS)
    out = home.cli("jobs", A, "--watch", "--json")
    views = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert out.returncode == 0 and views[0]["state"] == "pending" and views[-1]["state"] == "completed"
    assert len(views) == len({json.dumps(v, sort_keys=True) for v in views})   # changes only


def test_watch_a_list_until_every_job_ended(home, fake):
    fake.add(make_job(A, state="completed"))
    fake.add(make_job(B, submitted_at=time.time() + 1))
    fake.script(B, STEPS)
    fake.start(B)                             # nobody asks jobs.get for a list
    out = home.cli("jobs", "--watch", "-n", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines()[-1] == "2 completed"


def test_logs_follow_until_the_job_ended(home, fake):
    fake.add(make_job(A))
    fake.script(A, STEPS)
    out = home.cli("logs", "-f", A)
    assert out.returncode == 0
    assert out.stdout == b"step 3\nstep 6\ndone\n"


def run_in_a_terminal(home, *args: str, timeout: float = 20, **env: str) -> tuple[int, bytes]:
    """Run `luzia ARGS` with a pseudo-terminal as its stdout; its exit code and output."""
    master, slave = pty.openpty()
    env = dict(home.env, TERM="xterm-256color", COLUMNS="200", LINES="50", **env)
    proc = subprocess.Popen([PY, "-m", "luzia.cli", *args], env=env, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:         # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(5), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_terminal_views_are_rich_but_never_coloured_by_a_task(home, fake):
    fake.add(make_job(A, task="paint \x1b[31mred\x1b[0m [red]markup[/red]",
                      why="\x1b[31mwhy\x1b[0m"), log=b"\x1b[32mgreen\x1b[0m\n")
    fake.script(A, STEPS)
    code, out = run_in_a_terminal(home, "jobs", A, "--watch")
    assert code == 0, out
    assert b"COMPLETED" in out and b"\x1b[" in out          # rich drew it, with colour
    assert b"\x1b[31m" not in out                            # but not the task's red
    assert b"[red]markup[/red]" in out
    code, out = run_in_a_terminal(home, "jobs", "-n", "3")
    assert code == 0 and A.encode() in out and b"\x1b[31m" not in out
    code, out = run_in_a_terminal(home, "logs", A)            # raw to a terminal, as asked
    assert code == 0 and b"\x1b[32mgreen\x1b[0m" in out and b"\x1b[1m6\x1b[0m" in out


def test_no_color_gives_plain_text_on_a_terminal(home, fake):
    fake.add(make_job(A, state="completed", progress=100.0))
    code, out = run_in_a_terminal(home, "jobs", NO_COLOR="1")
    assert code == 0 and b"\x1b" not in out and b"completed" in out
    code, out = run_in_a_terminal(home, "jobs", A, "--watch", NO_COLOR="1")
    assert code == 0 and b"\x1b" not in out and out.startswith(b"20")    # a change line
