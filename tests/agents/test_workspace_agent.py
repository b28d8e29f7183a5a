"""Workspaces through a real agent (Worker) and its runners against the fake broker: what the
broker hears (Started's worktree, Progress's base commit, Done's end), a setup failure as
the job's reason, a cancel's end commit, the tmux session and the interactive REPL in the
worktree, re-adoption keeping it, and the sweeper (cleanup after workspace_keep, a
discard from the broker) reporting in the heartbeats."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from luzia import protocol
from luzia.agents import sweep, workspace
from luzia.agents.worker import Worker
from tests.agents.fakebroker import PY, assign
from tests.agents.test_interactive import interactive
from tests.gitrepo import git, job_branches, make_repo, worktrees
from tests.helpers import wait_for

EDIT = [PY, "-c", "import sys, pathlib, time; pathlib.Path('job.txt').write_text(sys.argv[1]); "
        "print('edited', flush=True); time.sleep(float(sys.argv[1].split()[-1]))", "{task}"]


def agent(repo: Path, runner: str = 'runner = "subprocess"', project: str = "", **agent_keys) -> str:
    keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in agent_keys.items())
    command = "" if "interactive" in runner else f"command = {json.dumps(EDIT)}\n"
    return (f"{runner}\n{command}{keys}[projects.demo]\nrepo = {json.dumps(str(repo))}\n"
            f"{project}")


@pytest.fixture
def repo(short_tmp) -> Path:
    return make_repo(short_tmp / "repo")


def test_the_broker_hears_where_the_worktree_is_its_base_and_its_end(rig, repo):
    cfg, broker, worker, _ = rig(agent(repo))
    job = assign(broker, "change 0.3", repo=str(repo))
    started = broker.recv(worker, protocol.Started)
    path = Path(cfg.agent.workspace_dir) / "demo" / job.id
    assert (started.workspace, started.branch) == (str(path), f"luzia/{job.id}")
    base = git(repo, "rev-parse", "HEAD").strip()
    broker.recv(worker, protocol.Progress, where=lambda m: m.base_commit == base)
    done = broker.recv(worker, protocol.Done)
    assert done.exit_code == 0 and done.base_commit == base
    assert done.head_commit == git(repo, "rev-parse", f"luzia/{job.id}").strip()
    assert (done.files_changed, done.lines_added, done.lines_removed) == (1, 1, 0)
    assert done.workspace_note.startswith("committed: 1 files") and done.push == ""
    assert git(path, "show", f"luzia/{job.id}:job.txt") == "change 0.3"


def test_a_setup_failure_is_the_jobs_reason_in_one_line(rig, repo):
    setup = [PY, "-c", "print('installing'); raise SystemExit(3)"]
    cfg, broker, worker, _ = rig(agent(repo, project=f"setup = {json.dumps(setup)}\n"))
    job = assign(broker, "change 0", repo=str(repo))
    done = broker.recv(worker, protocol.Done)
    assert done.exit_code == 3
    assert done.reason.startswith("workspace: setup failed (exit 3): ") and "\n" not in done.reason
    assert done.files_changed == -1 and done.head_commit == ""
    assert "installing" in (Path(cfg.jobs_dir) / job.id / "output.log").read_text()
    assert job_branches(repo) == [] and worktrees(repo) == [str(repo)]


def test_a_cancelled_jobs_work_is_committed_saying_so(rig, repo):
    cfg, broker, worker, _ = rig(agent(repo))
    job = assign(broker, "change 30", repo=str(repo))
    broker.recv(worker, protocol.Progress, where=lambda m: "edited" in m.tail)
    broker.send(protocol.Cancel(job_id=job.id))
    done = broker.recv(worker, protocol.Done)
    assert (done.exit_code, done.reason, done.files_changed) == (143, "cancelled", 1)
    assert "ended: cancelled (exit 143)" in git(repo, "log", "-1", "--format=%B", f"luzia/{job.id}")


def test_the_tmux_session_starts_in_the_worktree(rig, repo, tmux_socket):
    cfg, broker, worker, _ = rig(agent(repo, f'runner = "tmux"\ntmux_socket = "{tmux_socket}"'))
    job = assign(broker, "change 30", repo=str(repo))
    started = broker.recv(worker, protocol.Started)
    shown = subprocess.run(["tmux", "-L", tmux_socket, "display", "-p", "-t", started.session,
                            "#{session_path}"], capture_output=True, text=True).stdout.strip()
    assert shown == started.workspace
    broker.recv(worker, protocol.Progress, where=lambda m: "edited" in m.tail)
    broker.send(protocol.Cancel(job_id=job.id))
    assert broker.recv(worker, protocol.Done).files_changed == 1


def test_the_interactive_repl_is_restarted_in_each_jobs_worktree(rig, repo, tmux_socket):
    cfg, broker, worker, _ = rig(agent(repo, interactive(tmux_socket)))
    first = assign(broker, "touch made-here", repo=str(repo))
    done = broker.recv(worker, protocol.Done)
    assert done.exit_code == 0 and done.files_changed == 1
    assert git(repo, "show", "--name-only", "--format=", f"luzia/{first.id}").split() == ["made-here"]
    second = assign(broker, "pwd", repo=str(repo))
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == second.id)
    log = (Path(cfg.jobs_dir) / second.id / "output.log").read_text()
    where = str(Path(cfg.agent.workspace_dir) / "demo" / second.id)
    assert f"restarting it in {where}" in log and f"> pwd\n{where}\n" in log
    assert done.workspace_note == "no changes"


def test_a_restarted_agent_keeps_the_worktree_of_the_job_it_readopts(rig, repo):
    cfg, broker, worker, _ = rig(agent(repo))
    job = assign(broker, "change 2", repo=str(repo))
    started = broker.recv(worker, protocol.Started)
    broker.recv(worker, protocol.Progress, where=lambda m: "edited" in m.tail)
    worker.close()
    again = Worker(cfg, ctx=worker.ctx)
    try:
        hello = broker.recv(again, protocol.Hello)
        broker.send(protocol.Welcome(heartbeat_interval=0.05, adopt=[h.job_id for h in hello.held]))
        done = broker.recv(again, protocol.Done, timeout=20)
        assert done.exit_code == 0 and done.files_changed == 1
        assert git(repo, "rev-parse", f"luzia/{job.id}").strip() == done.head_commit
        assert Path(started.workspace).is_dir()
    finally:
        again.close()


def test_the_sweeper_removes_an_ended_worktree_after_keep_and_says_so(rig, repo):
    cfg, broker, worker, _ = rig(agent(repo, workspace_keep=1.0))
    job = assign(broker, "change 0", repo=str(repo))
    started = broker.recv(worker, protocol.Started)
    assert broker.recv(worker, protocol.Done).files_changed == 1
    broker.lists_worker_jobs = False              # its end acknowledged: no longer held
    beat = broker.recv(worker, protocol.Heartbeat, timeout=30, where=lambda m: job.id in m.removed)
    assert beat.workspace_bytes > 0
    assert not os.path.exists(started.workspace) and worktrees(repo) == [str(repo)]
    assert job_branches(repo) == [f"luzia/{job.id}"]       # the result stays until merged


def test_a_discard_from_the_broker_removes_worktree_and_branch(rig, repo):
    cfg, broker, worker, _ = rig(agent(repo))
    job = assign(broker, "change 0", repo=str(repo))
    started = broker.recv(worker, protocol.Started)
    broker.recv(worker, protocol.Done)
    broker.lists_worker_jobs = False

    def discarded():
        broker.send(protocol.Heartbeat(running=[], discard=[job.id]))
        return any(job.id in m.removed for m in broker.pump(worker)
                   if isinstance(m, protocol.Heartbeat))
    wait_for(discarded, 30, interval=0.05)
    assert not os.path.exists(started.workspace)
    assert job_branches(repo) == [] and worktrees(repo) == [str(repo)]


def test_the_sweeper_leaves_a_worktree_made_after_the_agent_listed_its_jobs(short_tmp, repo):
    """A job assigned after the agent listed what it holds is not in `--held`; its wrapper
    may make the worktree before the sweeper's interpreter has started. Judged by its own
    start, the sweeper once took such a job for a killed wrapper's: it took the worktree
    apart under the job, or committed its end before the job had edited anything."""
    root = short_tmp / "workspaces"
    listed = time.time()                        # the agent lists what it holds ...
    ws = workspace.plan(str(root), "luzia/", {"repo": str(repo), "project": "demo",
                                              "id": "120000-aaaaaaaaaaaa"}, 1, [], [])
    workspace.prepare(ws, str(short_tmp / "job"), {}, open(os.devnull, "wb"))   # ... then it is made
    assert workspace.Record(ws["record"])["state"] == "ready"
    sweep.Sweep(root, keep=0.0, held=set(), discard=set(), since=listed).run()
    assert workspace.Record(ws["record"])["state"] == "ready"
    assert Path(ws["path"]).is_dir() and worktrees(repo) == [str(repo), ws["path"]]
    # listed after it was made, and not held: its wrapper is gone; its end is committed
    (Path(ws["path"]) / "job.txt").write_text("left behind")
    sweep.Sweep(root, keep=3600.0, held=set(), discard=set(), since=time.time() + 1).run()
    record = workspace.Record(ws["record"])
    assert record["state"] == "ended" and record["end"]["files"] == 1
