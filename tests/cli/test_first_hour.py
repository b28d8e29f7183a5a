"""The rough edges an operator hits in the first hour (issue 18), on the CLI's side: every
query takes --json and every change --dry-run, hints that point the right way, a job still
in the spool, attaching through a prefix, the next commands on a terminal, and how the
views word attempts, load levels, locks and per-agent figures."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import pytest
import zmq

from luzia.cli import agents, history, queue, top
from luzia.cli.job_views import attempts_text, job_lines
from luzia.cli.root import cli
from tests.cli.conftest import make_home
from tests.cli.fakebroker import make_job, spool_files
from tests.cli.test_live import run_in_a_terminal

A = "140000-aaaaaaaaaaaa"

# a query may write a file of its own (db backup), never Luzia's state
QUERIES = {"jobs", "logs", "queue status", "queue locks", "agents status", "agents allocate",
           "history", "stats", "top", "diff", "config show", "keys show", "supervisor status",
           "supervisor tail", "attach", "db check", "db backup", "web url", "web token show",
           "budget", "notify status", "workspace"}
CHANGES = {"cancel", "retry", "queue add", "queue flush", "agents drain", "agents undrain",
           "agents forget", "import pending-requests", "import beads", "revert", "keys generate",
           "supervisor start", "supervisor stop", "supervisor restart", "db recover",
           "web token rotate", "web token revoke", "notify test", "reply", "merge", "discard",
           "pr"}


def leaves(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_query_takes_json_and_every_change_dry_run():
    """Walks every command's --help: a new command fails here until it is placed in one of
    the two lists above, with the option its kind promises."""
    seen = set()
    for path, command in leaves(cli):
        name = " ".join(path)
        seen.add(name)
        assert name in QUERIES | CHANGES, f"`luzia {name}`: a query (--json) or a change (--dry-run)?"
        with click.Context(command, info_name=name) as ctx:
            text = command.get_help(ctx)
        want = "--json" if name in QUERIES else "--dry-run"
        assert want in text, f"`luzia {name} --help` has no {want}"
    assert seen == QUERIES | CHANGES


def test_the_submit_path_has_dry_run_and_queues_nothing(home, fake):
    out = home.cli("demo", "--help")
    assert b"--dry-run" in out.stdout
    out = home.cli("overbits", "fix", "it", "--dry-run", "--priority", "low")
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert text.startswith("would queue for overbits:\n") and text.endswith("dry run: nothing was queued\n")
    for part in ("user         overbits", "priority     low", "type         code",
                 "timeout      120.0", "max_retries  3", "workdir      /srv/overbits",
                 "task         fix it"):
        assert part in text, part
    data = json.loads(home.cli("queue", "add", "demo", "x", "--dry-run", "--json").stdout)
    assert data["dry_run"] and data["type"] is None and data["user"] == "alice"
    assert not spool_files(home.cfg) and not fake.submits


def test_keys_show_json(home):
    data = json.loads(home.cli("keys", "show", "--json").stdout)
    assert data["secret"] == {"path": str(home.path / "keys" / "host.key_secret"), "present": False,
                              "mode": None}
    assert data["authorized"]["names"] == [] and data["public"]["key"] is None
    assert home.cli("keys", "generate", "--dry-run").stdout.decode().startswith("would write ")
    assert not (home.path / "keys" / "host.key").exists()
    assert home.cli("keys", "generate").returncode == 0
    data = json.loads(home.cli("keys", "show", "--json").stdout)
    assert data["secret"]["mode"] == "0600" and len(data["public"]["key"]) == 40
    assert b"would refuse" in home.cli("keys", "generate", "--dry-run").stdout


def test_cancel_dry_run_says_what_it_would_do_and_changes_nothing(home, fake):
    fake.add(make_job(A))
    fake.add(make_job("140001-bbbbbbbbbbbb", state="running", host="gpu1"))
    out = home.cli("cancel", A, "140001-bb", "--dry-run")
    assert out.stdout.decode() == (f"{A}: would kill\n140001-bbbbbbbbbbbb: would cancel: its agent "
                                   "gpu1 stops it\n(dry run: nothing was changed)\n")
    assert fake.jobs[A]["state"] == "pending"


def test_a_spooled_job_is_shown_from_the_spool_while_the_broker_is_down(home):
    job_id = home.submit("demo", "while the broker is down")
    out = home.cli("jobs", job_id[:10])
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert text.startswith("SPOOLED [····················]\n")
    assert f"job        {job_id}  (not started yet (2 allowed))" in text
    assert "why        spooled, not yet delivered: broker not reachable at ipc://" in text
    assert "task       while the broker" in text
    data = json.loads(home.cli("jobs", job_id, "--json").stdout)
    assert data["state"] == "spooled" and data["spool_file"].endswith(f"{job_id}.job")
    out = home.cli("jobs", "150000-cccccccccccc")            # not spooled: the broker is needed
    assert out.returncode == 3 and b"broker not reachable" in out.stderr


def test_the_hint_names_the_supervisor_when_it_runs_but_the_broker_does_not(home):
    out = home.cli("jobs")
    assert out.returncode == 3 and b"start it with `make run` or `luzia-supervisor`" in out.stderr
    ctx = zmq.Context()
    home.cfg.run_dir.mkdir(parents=True, exist_ok=True)
    sock = ctx.socket(zmq.ROUTER)            # a supervisor's control socket, listening
    sock.bind(home.cfg.endpoints.supervisor)
    try:
        out = home.cli("jobs")
        assert out.returncode == 3
        assert b"the broker does not: start it with `luzia supervisor start broker`" in out.stderr
        assert out.stderr.count(b"\n") == 1
    finally:
        sock.close(0)
        ctx.term()


def test_on_a_terminal_the_id_line_gets_one_dim_line_of_next_commands(home, fake):
    code, out = run_in_a_terminal(home, "demo", "hello")
    assert code == 0
    first, second = out.decode().splitlines()[:2]
    assert first.startswith("agent:demo:")
    job_id = first.rsplit(":", 1)[1]
    assert second == (f"\x1b[2m  luzia jobs {job_id} --watch  ·  luzia logs {job_id} -f  ·  "
                      f"luzia attach {job_id}\x1b[0m")
    code, out = run_in_a_terminal(home, "demo", "hello", NO_COLOR="1")
    assert code == 0 and out.decode().splitlines()[1].startswith("  luzia jobs ")
    piped = home.cli("demo", "hello")                       # a script: the id line only
    assert piped.stdout.decode().count("\n") == 1


def test_attach_goes_through_the_prefix_to_the_session_the_broker_names(short_tmp):
    home = make_home(short_tmp, '[agent]\nname = "here"\ntmux_prefix = ["docker", "exec", "-i", "box"]\n'
                                '[projects.demo]\nuser = "alice"\n')
    from tests.cli.fakebroker import FakeBroker
    fake = FakeBroker(home.cfg)
    try:
        fake.add(make_job(A, state="running", host="here", session="luzia-here-slot-1"))
        fake.add(make_job("140001-bbbbbbbbbbbb", state="running", host="gpu1",
                          session="luzia-gpu1-slot-0"))
        assert home.cli("attach", "140001-bb").stdout.decode() == (
            "job 140001-bbbbbbbbbbbb runs on gpu1 in tmux session luzia-gpu1-slot-0; attach there "
            "with: ssh -t gpu1 luzia attach 140001-bbbbbbbbbbbb\n")
        bin_dir = short_tmp / "bin"
        bin_dir.mkdir()
        (bin_dir / "docker").write_text('#!/bin/sh\necho "docker $*"\n')   # a stand-in
        (bin_dir / "docker").chmod(0o755)
        out = home.cli("attach", A, PATH=f"{bin_dir}:{os.environ['PATH']}")
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode().splitlines()[-1] == \
            f"docker exec -t -i box tmux -L {home.cfg.agent.tmux_socket} attach -t luzia-here-slot-1"
    finally:
        fake.close()


@pytest.mark.parametrize(("job", "text"), [
    (dict(state="pending", attempt=0, max_retries=2), "not started yet (3 allowed)"),
    (dict(state="killed", attempt=0, max_retries=0), "never started (1 allowed)"),
    (dict(state="running", attempt=2, max_retries=2), "attempt 2 of 3"),
    (dict(state="pending", attempt=1, max_retries=1, causes={"next": "automatic"}),
     "attempt 2 of 2, waiting"),
    (dict(state="failed", attempt=4, max_retries=2, causes={"automatic": 2, "manual": 1}),
     "attempt 4 (3 allowed + 1 manual retry)"),
    (dict(state="completed", attempt=2, max_retries=0,
          causes={"requeued": 1, "requeued_why": "agent gpu1 lost for 30s"}),
     "attempt 2 (1 allowed + 1 requeued: agent gpu1 lost for 30s)"),
    (dict(state="pending", attempt=1, max_retries=3, causes={"next": "manual"}),
     "attempt 2 (1 of 4 allowed + 1 manual retry), waiting"),
    (dict(state="running", attempt=7, max_retries=2, causes={"automatic": 4, "manual": 2}),
     "attempt 7 (5 by automatic retries, 3 allowed each time + 2 manual retries)"),
    (dict(state="running", attempt=4, max_retries=2), "attempt 4 (4 by automatic retries, 3 "
                                                      "allowed each time)"),   # an older broker
])
def test_attempts_say_what_happened(job, text):
    assert attempts_text(make_job(A, **job)) == text


def test_a_job_waiting_for_its_retry_shows_no_bar_and_why(home):
    job = make_job(A, state="pending", attempt=1, max_retries=1, reason="retry 1/1 after exit 1",
                   why="here full (2/2)", exit_code=None, causes={"next": "automatic"})
    lines = job_lines(job)
    assert lines[0] == "PENDING [····················]"
    assert "why        here full (2/2)" in lines and "reason     retry 1/1 after exit 1" in lines


def test_load_levels_gone_agents_locks_and_agent_stats_in_the_views(capsys):
    rows = [{"name": "gpu1", "health": "busy", "load": 0.45, "load_level": "moderate",
             "running": 0, "slots": 2, "cpu": 1.0, "memory": 0.2},
            {"name": "old", "health": "gone", "load": 0.0, "load_level": "low", "running": 0,
             "slots": 1}]
    agents.show_status(rows)
    out = capsys.readouterr().out
    assert "LEVEL" in out and "moderate" in out
    assert "gone (dead longer than broker.gone_after): old; remove with: luzia agents forget old" in out
    snap = top.Snapshot(queue={"pending": 0}, agents=rows, running=[])
    assert top.alerts(snap) == [("YELLOW", "agent gpu1's host is busy (cpu 100%): over its ceiling, "
                                           "it runs one job at a time")]
    assert top.alerts(top.Snapshot(queue={}, agents=rows[1:], running=[])) == [
        ("RED", "no live agent (1 gone: luzia agents status lists them)")]
    assert "moderate" in top.plain(snap)
    queue.show_locks({"per_user": True, "stale_after": 3600.0, "locks": [
        {"user": "alice", "job": A, "host": "gpu1", "project": "p", "since": 1.0,
         "stale_at": 3601.0, "state": "stale", "waiting": 2}]})
    out = capsys.readouterr().out
    assert "alice" in out and "stale" in out and "a lock goes stale after 1h" in out
    history.show_stats({"by_agent": [{"name": "gpu1", "jobs": 2, "attempts": 3, "completed": 1,
                                      "failed": 2, "run_seconds": 120, "mean_run": 30}]}, ("agent",))
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["AGENT", "JOBS", "ATTEMPTS", "COMPLETED", "FAILED", "RUN", "TIME",
                              "MEAN", "RUN", "COST", "TOKENS", "IN", "TOKENS", "OUT"]
    assert out[1].split() == ["gpu1", "2", "3", "1", "2", "2m", "30s", "-", "0", "0"]   # no cost reported


def test_db_recover_dry_run_says_what_it_would_do_and_touches_nothing(home):
    out = home.cli("db", "recover", "--dry-run")
    assert out.returncode == 0 and out.stdout.startswith(b"nothing to recover: no job database")
    from luzia.broker.store import Store
    Path(home.cfg.broker.db).parent.mkdir(parents=True, exist_ok=True)
    Store(home.cfg.broker.db).close()
    before = Path(home.cfg.broker.db).read_bytes()
    out = home.cli("db", "recover", "--dry-run")
    assert out.stdout.endswith(b"checks whole (dry run; --force would salvage it)\n")
    out = home.cli("db", "recover", "--dry-run", "--force")
    assert out.stdout.startswith(b"would set ") and b"dry run: nothing was changed" in out.stdout
    assert Path(home.cfg.broker.db).read_bytes() == before
    assert not list(home.path.glob("*damaged*"))


def test_the_fast_path_stays_lean_on_a_terminal_too(home, fake):
    """The next-commands line costs no click, rich or other command module."""
    from tests.cli.test_submit import fast_path_probe
    code = fast_path_probe("demo", "x")
    import pty
    import select
    import subprocess
    import time
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], env=home.env, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + 30
    while time.monotonic() < deadline and not out.rstrip().endswith(b"]"):
        if select.select([master], [], [], 0.1)[0]:
            try:
                out += os.read(master, 65536)
            except OSError:           # EIO: the child closed the terminal
                break
    proc.wait(10)
    os.close(master)
    lines = out.decode().splitlines()
    assert lines[0].startswith("agent:demo:") and lines[1].startswith("\x1b[2m  luzia jobs ")
    assert lines[-1].strip() == "MODULES 0 []", lines


def test_web_token_dry_runs_change_nothing(home):
    data = json.loads(home.cli("web", "token", "show", "--json").stdout)
    assert data["token"] and data["user"]
    out = home.cli("web", "token", "rotate", "--dry-run")
    assert out.stdout.decode().endswith("would replace its token (the old one would stop "
                                        "working); dry run: nothing was changed\n")
    out = home.cli("web", "token", "revoke", "--user", data["user"], "--dry-run")
    assert out.returncode == 0 and b"would revoke" in out.stdout
    assert json.loads(home.cli("web", "token", "show", "--json").stdout) == data
