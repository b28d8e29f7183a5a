"""Jobs that need a person (issue 14) with real processes: a broker, an agent, luzia-notify
and a real tmux server on a private socket; a fake REPL that asks "Proceed? (y/n)" gets the
`needs input` flag, the CLI shows it, a JSON webhook on a real local HTTP server is told,
`luzia reply` answers, the flag clears and the job completes."""

from __future__ import annotations

import json

import pytest

from tests.agents.test_interactive import FAKE_REPL
from tests.fleet import PY, fleet_config, jobs_json
from tests.helpers import wait_for
from tests.notify.conftest import webhook  # noqa: F401  (fixture)
from tests.notify.rig import notify_config, start_notifier

# asks, prints the answer, then waits for the file `go` in its job directory (so the test
# sees the flag clear while it still runs) and ends with 0 for "y"
ASKER = (f'command = ["{PY}", "-c", "import os, sys, time; print(\'about to delete 3 files\', '
         f'flush=True); a = input(\'Proceed? (y/n) \'); print(\'answer:\', a, flush=True); '
         f'[time.sleep(0.05) for _ in iter(lambda: os.path.exists(sys.argv[1]), True)]; '
         f'sys.exit(0 if a == \'y\' else 3)", "{{job_dir}}/go"]')
ATTENTION = "\n[attention]\ncheck = 0.2\n[interactive]\nsend_delay = 0.05\n"


def job_json(fleet, job_id: str) -> dict:
    out = fleet.cli("jobs", job_id, "--json")
    return jobs_json(out) if out.returncode == 0 else {}


def test_a_job_asking_proceed_is_flagged_told_answered_and_completes(  # noqa: F811
        make_fleet, tmux_socket, webhook):  # noqa: F811  (fixtures)
    fleet = make_fleet(fleet_config(f'name = "local"\nrunner = "tmux"\ntmux_socket = "{tmux_socket}"\n'
                                    f'stall_after = 1.0\n{ASKER}') + ATTENTION
                       + notify_config({"hook": webhook.url()},
                                       [(["needs-input", "completed"], ["hook"])]))
    fleet.start_broker()
    fleet.start_agent("local")
    start_notifier(fleet)
    job_id = fleet.submit("demo", "clean the build")

    job = wait_for(lambda: (j := job_json(fleet, job_id)).get("needs_input") and j, 60,
                   message="the needs-input flag in luzia jobs ID --json")
    assert job["state"] == "running" and job["needs_input_since"]
    assert job["needs_input_lines"][-2:] == ["about to delete 3 files", "Proceed? (y/n)"]
    assert not job["stalled"]                # its quiet is the person's, not a stall
    assert f"{job_id}  running (needs input)" in fleet.cli("jobs").stdout.decode()
    assert f"luzia reply {job_id}" in fleet.cli("jobs", job_id).stdout.decode()
    assert "NEEDS INPUT" in fleet.cli("top", "--once").stdout.decode()
    rows = fleet.control("events.since", after=0, states=["needs-input"])["events"]
    assert [(r["job_id"], r["detail"]) for r in rows] == [(job_id, "Proceed? (y/n)")]

    told = wait_for(lambda: [m for m in webhook.messages() if "needs input" in m["title"]], 60,
                    message="the needs-input notification at the webhook")
    assert told[0]["title"] == f"luzia: demo job {job_id} needs input"
    assert "Proceed? (y/n)" in told[0]["message"] and f"luzia reply {job_id}" in told[0]["message"]

    dry = fleet.cli("reply", job_id, "y", "--dry-run")
    assert dry.returncode == 0
    assert dry.stdout.decode().startswith(f"would type 'y' and Enter into job {job_id}'s pane")
    answered = fleet.cli("reply", job_id, "y")
    assert answered.returncode == 0, answered.stderr
    wait_for(lambda: job_json(fleet, job_id).get("needs_input") is False, 60,
             message="the flag cleared by the answer")
    assert fleet.state(job_id) == "running"
    (fleet.home / "jobs" / job_id / "go").touch()
    wait_for(lambda: fleet.state(job_id) == "completed", 60, message="the job completes")
    assert "answer: y" in fleet.cli("logs", job_id).stdout.decode()
    wait_for(lambda: any("completed" in m["title"] for m in webhook.messages()), 60,
             message="the completed notification")
    assert len([m for m in webhook.messages() if "needs input" in m["title"]]) == 1
    refused = fleet.cli("reply", job_id, "y")
    assert refused.returncode == 1 and b"is completed: only a running job" in refused.stderr


@pytest.mark.timeout(90)
def test_a_slot_repl_waiting_on_a_question_is_not_done_when_idle_until_answered(  # noqa: F811
        make_fleet, tmux_socket):  # noqa: F811  (a fixture)
    fleet = make_fleet(fleet_config(f'name = "local"\nrunner = "interactive"\nslots = 1\n'
                                    f'tmux_socket = "{tmux_socket}"') + f'''
[attention]
check = 0.2
[interactive]
command = {json.dumps(FAKE_REPL)}
done = "idle"
idle = 0.5
send_delay = 0.05
''')
    fleet.start_broker()
    fleet.start_agent("local")
    job_id = fleet.submit("demo", "ask")
    job = wait_for(lambda: (j := job_json(fleet, job_id)).get("needs_input") and j, 60,
                   message="the slot's REPL asks")
    assert job["state"] == "running" and job["needs_input_lines"][-1] == "Proceed? (y/n)"
    assert job["session"] == "luzia-local-slot-0"
    assert jobs_json(fleet.cli("attach", job_id, "--json"))["command"][-1] == "luzia-local-slot-0"
    out = fleet.cli("reply", job_id, "y")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: fleet.state(job_id) == "completed", 60, message="done once answered")
    assert "you chose y" in fleet.cli("logs", job_id).stdout.decode()
    assert job_json(fleet, job_id)["needs_input"] is False
