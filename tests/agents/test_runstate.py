"""A held run's states, status.json's record, and the one tmux client's handling of a
server that goes away: the pieces the agent's loop is built on, without the loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from luzia.agents.jobdir import JobDir
from luzia.agents.runstate import TRANSITIONS, RunState
from luzia.agents.tmuxctl import TmuxController, TmuxError
from luzia.errors import IllegalTransition
from luzia.jobstatus import AttemptState, JobStatus

S = RunState


def test_a_run_goes_from_running_through_the_stop_sequence_to_forgotten():
    path = [S.RUNNING, S.STOPPING, S.TERM_SENT, S.KILL_SENT, S.RUNNER_KILLED, S.ENDED,
            S.DONE_SENT, S.DONE_SENT, S.FORGOTTEN]
    for old, new in zip(path, path[1:], strict=False):
        assert old.check(new) is new
    assert [s for s in S if s.stopping] == [S.STOPPING, S.TERM_SENT, S.KILL_SENT, S.RUNNER_KILLED]
    assert [s for s in S if s.ended] == [S.ENDED, S.DONE_SENT, S.FORGOTTEN]


@pytest.mark.parametrize("old,new", [
    (S.RUNNING, S.TERM_SENT),     # SIGTERM only from the stop sequence's start
    (S.RUNNING, S.DONE_SENT),     # a Done needs an exit code
    (S.RUNNING, S.FORGOTTEN),     # a running job is never just forgotten
    (S.TERM_SENT, S.STOPPING),    # the sequence does not start over
    (S.ENDED, S.RUNNING),         # an end is final
    (S.DONE_SENT, S.ENDED),
    (S.FORGOTTEN, S.DONE_SENT),
])
def test_illegal_transitions_raise(old, new):
    with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
        old.check(new)


def test_every_state_has_a_row_and_only_forgotten_is_terminal():
    assert set(TRANSITIONS) == set(S)
    assert [s for s in S if not TRANSITIONS[s]] == [S.FORGOTTEN]


def test_status_record_round_trips_and_rejects_unknown_fields(short_tmp):
    jd = JobDir(short_tmp, "120000-0123456789ab")
    jd.path.mkdir()
    assert jd.status() == JobStatus() and not jd.status().found
    jd.set_status(state=AttemptState.RUNNING, attempt=2, wrapper_pid=42, session="luzia-x")
    jd.set_status(exit_code=0, state=AttemptState.EXITED)
    status = jd.status()
    assert status.found and (status.state, status.attempt, status.wrapper_pid) == ("exited", 2, 42)
    assert status.exit_code == 0 and status.session == "luzia-x" and status.updated_at > 0
    on_disk = json.loads((jd.path / "status.json").read_text())   # a change after the start
    assert on_disk["state"] == "exited" and on_disk["session"] == "luzia-x"
    with pytest.raises(TypeError):
        jd.set_status(wraper_pid=1)    # a misspelt field is an error, not a new key


def test_a_hand_edited_status_file_reads_with_defaults_for_bad_fields():
    status = JobStatus.from_json({"state": "running", "attempt": "two", "acked": 1,
                                  "wrapper_pid": True, "started_at": 5, "slot": None,
                                  "unknown": "kept out"})
    assert (status.state, status.attempt, status.acked, status.wrapper_pid) == ("running", 1, False, 0)
    assert status.started_at == 5.0 and status.slot is None
    assert JobStatus.from_json(["not", "a", "map"]) == JobStatus()


def fake_tmux(short_tmp: Path, failures: int, message: str) -> list[str]:
    """A command prefix that fails the first `failures` calls as tmux would, then runs tmux."""
    script = short_tmp / "faketmux.py"
    script.write_text(
        "import os, sys\n"
        f"count = {str(short_tmp / 'calls')!r}\n"
        "n = len(open(count).read()) if os.path.exists(count) else 0\n"
        "open(count, 'a').write('x')\n"
        f"if n < {failures}:\n"
        f"    sys.stderr.write({message!r} + '\\n'); sys.exit(1)\n"
        "os.execvp(sys.argv[1], sys.argv[1:])\n")
    return [sys.executable, str(script)]


def calls(short_tmp: Path) -> int:
    return len((short_tmp / "calls").read_text())


def test_a_session_start_that_met_an_exiting_server_is_tried_again(short_tmp, tmux_socket):
    ctl = TmuxController(tmux_socket, fake_tmux(short_tmp, 1, "server exited unexpectedly"))
    ctl.start_session("luzia-race", ["sleep", "30"])
    assert calls(short_tmp) == 2 and ctl.sessions("luzia-") == {"luzia-race"}


def test_other_start_failures_are_not_retried(short_tmp, tmux_socket):
    ctl = TmuxController(tmux_socket, fake_tmux(short_tmp, 5, "duplicate session: luzia-x"))
    with pytest.raises(TmuxError, match="duplicate session"):
        ctl.start_session("luzia-x", ["sleep", "30"])
    assert calls(short_tmp) == 1


def test_a_failed_listing_is_unknown_and_no_server_is_none_running(short_tmp, tmux_socket):
    assert TmuxController(tmux_socket).sessions() == set()            # no server yet
    broken = TmuxController(tmux_socket, fake_tmux(short_tmp, 1, "error connecting to "
                                                   "/tmp/tmux-0/x (Resource temporarily unavailable)"))
    assert broken.sessions() is None
