"""WarmPanes on a real tmux server: an idle session takes a job, and a rename that tmux
refuses ends that job with a recorded exit instead of leaving it under an idle name."""

from __future__ import annotations

import json
import os

from luzia import layout
from luzia.agents.tmuxctl import TmuxController
from luzia.agents.warm import WarmPanes
from luzia.jobstatus import read_exit_code, read_pid
from tests.helpers import wait_for


def job_dir(root, job_id: str, argv: list[str]):
    path = root / "jobs" / job_id
    path.mkdir(parents=True)
    (path / layout.META).write_text(json.dumps({"argv": argv, "cwd": str(root), "env": {}}))
    return path


def ready(warm: WarmPanes) -> bool:
    warm.top_up()
    return bool(warm.ready)


def test_a_refused_rename_ends_the_job_with_its_exit_recorded(short_tmp, tmux_socket):
    tmux = TmuxController(tmux_socket)
    (short_tmp / "run").mkdir()
    warm = WarmPanes(tmux, short_tmp / "run", short_tmp / "jobs", "t", 1)
    try:
        wait_for(lambda: ready(warm), 60, message="an idle session")
        idle = warm.ready[0].session
        # the name the job's session should get is taken: tmux refuses the rename
        tmux.start_session("luzia-j1", ["sleep", "60"])
        path = job_dir(short_tmp, "j1", ["sleep", "60"])
        assert warm.take("luzia-j1", path)
        wait_for(lambda: read_pid(path), 60, message="the job started")
        wait_for(lambda: not warm.renaming_to("luzia-j1"), 60)
        wait_for(lambda: read_exit_code(path) is not None, 60, message="its exit recorded")
        assert read_exit_code(path) == 129     # SIGHUP
        assert idle not in (tmux.sessions() or set())
    finally:
        warm.close()


def test_a_job_handed_over_is_renamed_and_idle_sessions_end_on_close(short_tmp, tmux_socket):
    tmux = TmuxController(tmux_socket)
    (short_tmp / "run").mkdir()
    warm = WarmPanes(tmux, short_tmp / "run", short_tmp / "jobs", "t", 2)
    wait_for(lambda: ready(warm) and len(warm.ready) == 2, 60, message="two idle sessions")
    path = job_dir(short_tmp, "j2", ["sh", "-c", "echo hello; exit 7"])
    assert warm.take("luzia-j2", path)
    wait_for(lambda: read_exit_code(path) is not None, 60, message="the job ended")
    assert read_exit_code(path) == 7
    assert "hello" in (path / layout.OUTPUT).read_text()
    warm.close()
    assert not (short_tmp / "run" / layout.warm_socket(os.getpid())).exists()
    wait_for(lambda: not {s for s in tmux.sessions() or () if s.startswith("lzwarm-")}, 60,
             message="idle sessions ended with their agent's socket")
