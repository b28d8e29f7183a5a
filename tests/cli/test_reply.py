"""A job that needs input in the CLI's views (`jobs`, `jobs ID`, `top`), and `luzia reply`
against the fake broker: what it refuses and why, --dry-run, and real typing into a real
tmux session on a private server."""

from __future__ import annotations

import subprocess

from luzia import layout
from luzia.cli import job_views, top
from tests.cli.fakebroker import make_job
from tests.helpers import wait_for

NOW = 1_000_000.0
J = "130000-aaaaaaaaaaaa"
SCREEN = ["Deleting 3 files.", "Proceed? (y/n)"]


def asking(**kw):
    return make_job(J, state="running", host="here", needs_input=True,
                    needs_input_since=NOW - 90, needs_input_lines=SCREEN,
                    session=layout.job_session(J), **kw)


def test_the_views_say_a_job_needs_input_and_what_its_pane_shows():
    job = asking()
    assert job_views.state_cell(job, NOW) == "running (needs input)"
    text = "\n".join(job_views.job_lines(job, NOW))
    assert (f'attention  needs input for 2m: answer with luzia reply {J} "..." '
            f'(or luzia attach {J})') in text
    assert "its screen:\n  Deleting 3 files.\n  Proceed? (y/n)" in text
    assert job_views.state_cell(dict(job, state="completed"), NOW) == "completed"
    snap = top.Snapshot(queue={}, agents=[], running=[job])
    assert ("YELLOW", f'needs input (luzia reply ID "..."): {J}') in top.alerts(snap)
    assert any(line.endswith("NEEDS INPUT") for line in top.plain(snap).splitlines())


def test_the_list_and_detail_commands_show_it(home, fake):
    fake.add(asking())
    assert "running (needs input)" in home.cli("jobs").stdout.decode()
    detail = home.cli("jobs", J).stdout.decode()
    assert "needs input for" in detail and "Proceed? (y/n)" in detail


def refused(home, *args: str, **env: str) -> str:
    out = home.cli("reply", *args, **env)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == b""
    return out.stderr.decode().strip()


def test_reply_refuses_what_it_cannot_answer_in_one_line(home, fake):
    fake.add(make_job("130001-bbbbbbbbbbbb"))                                   # pending
    fake.add(make_job("130002-cccccccccccc", state="completed", host="here"))
    fake.add(make_job("130003-dddddddddddd", state="running", host="here"))     # no session
    fake.add(make_job("130004-eeeeeeeeeeee", state="running", host="gpu2",
                      session="luzia-gpu2-slot-1"))
    fake.add(asking())
    assert refused(home, "130001-bb", "y") == \
        "luzia: job 130001-bbbbbbbbbbbb is pending: only a running job can be answered"
    assert refused(home, "130002-cc", "y") == ("luzia: job 130002-cccccccccccc is completed: only "
                                               "a running job can be answered; its output: "
                                               "luzia logs 130002-cccccccccccc")
    assert "runs without tmux" in refused(home, "130003-dd", "y")
    assert refused(home, "130004-ee", "yes, go") == (
        "luzia: job 130004-eeeeeeeeeeee runs on gpu2 (tmux session luzia-gpu2-slot-1); answer it "
        "there: ssh gpu2 luzia reply 130004-eeeeeeeeeeee 'yes, go'")
    assert refused(home, J, "y", LOGNAME="mallory", USER="mallory") == (
        f"luzia: job {J} is alice's: only its user, its submitter or an admin (admins in the "
        "config) may answer it, not mallory")
    assert home.cli("reply", "130009-ffffffffffff", "y").returncode == 2     # unknown job
    usage = home.cli("reply", J, "", "--no-enter")
    assert usage.returncode == 2 and b"nothing to type" in usage.stderr


def test_reply_dry_run_says_what_it_would_type(home, fake):
    fake.add(asking())
    out = home.cli("reply", J, "y", "--dry-run", LOGNAME="alice", USER="alice")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == (f"would type 'y' and Enter into job {J}'s pane (tmux session "
                                   f"luzia-{J} on here)\n(dry run: nothing was typed)\n")
    enter = home.cli("reply", J, "", "-n").stdout.decode().splitlines()[0]
    assert enter.startswith("would type Enter into")
    theirs = "130005-ffffffffffff"
    fake.add(make_job(theirs, state="running", host="here", session=layout.job_session(theirs),
                      submitter="mallory"))       # alice's job, which mallory submitted
    assert home.cli("reply", theirs, "y", "-n", LOGNAME="mallory", USER="mallory").returncode == 0


def test_reply_types_literally_then_enter_and_marks_the_session(home, fake, tmux_socket):
    fake.add(asking())
    session = layout.job_session(J)
    # a stand-in for the job's command: echoes each line it reads
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", session, "-x", "80",
                    "-y", "10", "python3 -c \"while True: print('got', repr(input('? ')))\""],
                   check=True)
    env = {"LUZIA_AGENT_TMUX_SOCKET": tmux_socket, "LUZIA_INTERACTIVE_SEND_DELAY": "0.05"}
    out = home.cli("reply", J, "C-c $(rm -rf ~)", **env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == (f"typed 'C-c $(rm -rf ~)' and Enter into job {J}'s pane "
                                   f"(tmux session {session} on here)\n")

    def pane() -> str:
        return subprocess.run(["tmux", "-L", tmux_socket, "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout
    wait_for(lambda: "got 'C-c $(rm -rf ~)'" in pane(), 20, message="the line typed into the pane")
    mark = subprocess.run(["tmux", "-L", tmux_socket, "show-options", "-v", "-t", session,
                           layout.ANSWERED_OPTION], capture_output=True, text=True).stdout
    assert mark.startswith(f"{J} ")
    gone = home.cli("reply", J, "y", LUZIA_AGENT_TMUX_SOCKET=f"{tmux_socket}x")
    assert gone.returncode == 1 and b"has no tmux session" in gone.stderr
