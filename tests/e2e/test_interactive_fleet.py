"""The interactive runner end to end: real broker and agent processes, a fake REPL in tmux on
a private socket, the real CLI (submit, logs, attach --json, diff)."""

from __future__ import annotations

import json
import subprocess

from tests.agents.test_interactive import FAKE_REPL
from tests.e2e.test_git_snapshots import repo  # noqa: F401  (fixture)
from tests.fleet import fleet_config, jobs_json
from tests.helpers import wait_for


def test_jobs_typed_into_a_slot_repl_complete_and_leave_a_diff(make_fleet, tmux_socket, repo):  # noqa: F811
    agent = f'runner = "interactive"\nslots = 1\ntmux_socket = "{tmux_socket}"'
    fleet = make_fleet(fleet_config(agent) + f'''
[interactive]
command = {json.dumps(FAKE_REPL)}
prompt = "^>$"
send_delay = 0.05
[projects.repo]
workdir = "{repo}"
''')
    fleet.start_broker()
    fleet.start_agent("local")
    first = fleet.submit("repo", "touch made.txt")
    second = fleet.submit("repo", "anything else")
    wait_for(lambda: fleet.state(second) == "completed", 40)
    assert fleet.state(first) == "completed"
    assert "touched made.txt" in fleet.cli("logs", first).stdout.decode()
    assert "you said: anything else" in fleet.cli("logs", second).stdout.decode()
    attach = jobs_json(fleet.cli("attach", first, "--json"))
    assert attach["command"][-1] == "luzia-local-slot-0"
    sessions = subprocess.run(["tmux", "-L", tmux_socket, "ls", "-F", "#{session_name}"],
                              capture_output=True, text=True).stdout.split()
    assert sessions == ["luzia-local-slot-0"]                  # one REPL served both jobs
    diff = fleet.cli("diff", first, "--stat").stdout.decode()
    assert "made.txt" in diff and "user.txt" not in diff
    assert fleet.cli("diff", second).stdout == b""            # the second changed nothing
