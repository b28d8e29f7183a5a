"""Notifications end to end: a real broker, agent and luzia-notify, and a real HTTP server
taking Apprise's JSON webhook."""

from __future__ import annotations

import json
import signal
import statistics

import pytest

from tests.e2e.test_metrics import scrape
from tests.fleet import PY, SLEEPER, LocalFleet, fleet_config
from tests.helpers import free_ports, wait_for
from tests.notify.rig import ask, notify_config, ping_times, start_notifier, target
from tests.notify.webhook import Webhook

AGENT = 'runner = "subprocess"'


def about(hook: Webhook, job_id: str, path: str = "hook") -> list[dict]:
    return [m for m in hook.messages(path) if job_id in m.get("title", "")]


def notifying_fleet(make_fleet, targets: dict[str, str], rules: list, agent: str = AGENT,
                    agent_name: str = "local", notify: str = "") -> LocalFleet:
    """A broker, an agent and luzia-notify with these targets and rules, all up."""
    fleet = make_fleet(fleet_config(agent) + notify_config(targets, rules, notify))
    fleet.start_broker()
    fleet.start_agent(agent_name)
    wait_for(lambda: agent_name in fleet.live_agents(), 20)
    start_notifier(fleet)
    return fleet


@pytest.mark.timeout(120)
def test_completed_and_failed_jobs_reach_the_webhook(make_fleet, webhook):
    fleet = notifying_fleet(make_fleet, {"hook": webhook.url()}, [(["completed", "failed"], ["hook"])])
    ok = fleet.submit("demo", "fix the login button\nand say so")
    bad = fleet.submit("demo", "break it FAIL_DEMO")
    wait_for(lambda: about(webhook, ok) and about(webhook, bad), 60, message="both notifications")

    done, = about(webhook, ok)
    assert done["type"] == "success"
    assert done["title"] == f"luzia: demo job {ok} completed"
    body = done["message"]
    assert "task: fix the login button" in body and "and say so" not in body
    assert "run time: " in body and "on local" in body
    assert f"look: luzia jobs {ok}" in body
    failed, = about(webhook, bad)
    assert failed["type"] == "failure"
    assert failed["title"] == f"luzia: demo job {bad} failed"
    assert "failed: exit 1 (attempt 1, on local)" in failed["message"]
    assert "task: break it FAIL_DEMO" in failed["message"]

    hook = wait_for(lambda: target(fleet, "hook").get("sent") == 2 and target(fleet, "hook"), 20)
    assert (hook["failed"], hook["pending"]) == (0, 0)
    status = fleet.cli("notify", "status")
    assert status.returncode == 0, status.stderr
    assert "hook" in status.stdout.decode() and "events read to #" in status.stdout.decode()
    assert len(webhook.messages()) == 2      # nothing else was sent: no rule for other events


@pytest.mark.timeout(150)
def test_a_dead_endpoint_is_retried_until_it_answers_and_the_broker_never_waits(make_fleet, webhook):
    late_port, metrics = free_ports(2)         # nothing listens on late_port yet: refused
    fleet = notifying_fleet(make_fleet, {"hook": webhook.url(),
                                         "late": f"json://127.0.0.1:{late_port}/late"},
                            [(["completed"], ["hook", "late"])], notify=f"metrics_port = {metrics}")
    before = ping_times(fleet, 20, deadline=10)

    first = fleet.submit("demo", "one")
    wait_for(lambda: about(webhook, first), 60, message="the live target got its message")
    wait_for(lambda: target(fleet, "late").get("failures_in_a_row", 0) >= 3, 60,
             message="the dead target tried and failing")
    # while it keeps failing the broker answers pings and takes and runs work as before
    during = ping_times(fleet, 20, deadline=10)
    more = [fleet.submit("demo", f"more {i}") for i in range(3)]
    wait_for(lambda: all(fleet.state(j) == "completed" for j in more), 60)
    wait_for(lambda: all(about(webhook, j) for j in more), 60)
    print(f"broker ping median: {statistics.median(before) * 1000:.1f} ms before, "
          f"{statistics.median(during) * 1000:.1f} ms while the endpoint was dead")
    assert target(fleet, "late")["sent"] == 0

    late = Webhook(late_port)                  # the endpoint comes back
    try:
        wait_for(lambda: len(late.messages("late")) == 4, 60, message="the late target caught up")
        wait_for(lambda: target(fleet, "late").get("sent") == 4, 20)
        assert sorted(m["title"] for m in late.messages("late")) == sorted(
            f"luzia: demo job {j} completed" for j in [first, *more])
        assert target(fleet, "late")["failures_in_a_row"] == 0
    finally:
        late.close()
    assert "failed (try 1)" in fleet.output("notify")
    counts = scrape(metrics)
    assert counts[("luzia_notifications_sent_total", (("target", "late"),))] == 4
    assert counts[("luzia_notification_tries_failed_total", (("target", "late"),))] >= 3
    assert counts[("luzia_notifications_sent_total", (("target", "hook"),))] == 4


@pytest.mark.timeout(150)
def test_kill_9_of_the_notifier_neither_repeats_nor_loses(make_fleet, webhook):
    fleet = notifying_fleet(make_fleet, {"hook": webhook.url()}, [(["completed", "failed"], ["hook"])])
    before = fleet.submit("demo", "before the kill")
    # between events: the first is delivered and recorded as sent (docs/NOTIFY.md names the
    # one window: killed after the endpoint took it and before the notifier wrote so)
    wait_for(lambda: target(fleet, "hook").get("sent") == 1, 60)
    assert about(webhook, before)

    fleet.kill("notify", signal.SIGKILL)
    down = fleet.cli("notify", "status")              # the counts, from notify.db
    assert down.returncode == 0 and down.stdout.decode().startswith("luzia-notify is not running")
    assert "hook       1       0        0" in down.stdout.decode()
    while_down = [fleet.submit("demo", "while down"), fleet.submit("demo", "down FAIL_DEMO")]
    wait_for(lambda: all(fleet.state(j) in ("completed", "failed") for j in while_down), 60)
    start_notifier(fleet)
    after = fleet.submit("demo", "after the restart")
    wait_for(lambda: all(about(webhook, j) for j in [*while_down, after]), 60,
             message="the events of the outage and after it told")
    wait_for(lambda: (target(fleet, "hook").get("pending"), target(fleet, "hook").get("sent")) == (0, 4), 20)
    for job_id in [before, *while_down, after]:
        assert len(about(webhook, job_id)) == 1, job_id
    assert len(webhook.messages()) == 4
    assert ask(fleet, "ping")["name"] == "notify"


@pytest.mark.timeout(150)
def test_a_stalled_job_and_a_dead_agent_are_told_once(make_fleet, webhook):
    fleet = notifying_fleet(make_fleet, {"hook": webhook.url()}, [(["stalled", "agent_dead"], ["hook"])],
                            f'{AGENT}\nstall_after = 0.5\n{SLEEPER}', agent_name="gpu1")
    quiet = fleet.submit("demo", "60")          # sleeps: no output, stalled after 0.5 s
    wait_for(lambda: about(webhook, quiet), 60, message="the stalled job told")
    stalled, = about(webhook, quiet)
    assert stalled["title"] == f"luzia: demo job {quiet} stalled"
    assert "stalled: no output" in stalled["message"] and "on gpu1" in stalled["message"]

    fleet.kill("agent-gpu1", signal.SIGKILL)
    dead = wait_for(lambda: [m for m in webhook.messages() if "agent gpu1" in m["title"]], 60)
    assert dead[0]["title"] == "luzia: agent gpu1 is dead" and dead[0]["type"] == "failure"
    # a restart of the notifier reads the fleet again: the same episode is not told twice
    fleet.kill("notify", signal.SIGTERM)
    start_notifier(fleet)
    status = wait_for(lambda: (s := ask(fleet, "status") or {}).get("broker") == "reachable" and s, 30)
    assert status["queued_since_start"] == 0 and status["targets"][0]["pending"] == 0
    assert len(webhook.messages()) == 2


@pytest.mark.long
@pytest.mark.timeout(120)
def test_the_supervisor_runs_the_notifier_beside_the_broker(make_fleet, webhook):
    fleet = make_fleet(fleet_config(AGENT) + notify_config(
        {"hook": webhook.url()}, [(["completed"], ["hook"])]))
    sup = fleet.start("supervisor", [PY, "-m", "luzia.supervisor", "--quiet"])
    wait_for(lambda: (ask(fleet, "status", 1.0) or {}).get("cursor") is not None, 60,
             message="the supervisor's notifier up")
    def states() -> dict[str, str]:
        out = fleet.cli("supervisor", "status", "--json")
        return {r["name"]: r["state"] for r in json.loads(out.stdout)} if out.returncode == 0 else {}
    wait_for(lambda: states() == {"broker": "running", "agent": "running", "notify": "running"}, 30)
    job_id = fleet.submit("demo", "hello")
    wait_for(lambda: about(webhook, job_id), 60)
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    assert "notifier stopped" in (fleet.home / "log" / "notify.log").read_text()


@pytest.mark.timeout(150)
def test_a_full_queue_is_told_once_per_episode_and_each_rejection_by_its_rule(make_fleet, webhook):
    config = fleet_config().replace("[broker]\n", "[broker]\nmax_pending = 2\n", 1)
    fleet = make_fleet(config + notify_config({"hook": webhook.url(), "jobs": webhook.url("jobs")},
                                              [(["queue_rejecting"], ["hook"]),
                                               (["rejected"], ["jobs"])]))
    fleet.start_broker()                        # no agent: what is submitted stays pending
    start_notifier(fleet)
    waiting = [fleet.submit("demo", f"wait {i}") for i in range(2)]
    full = wait_for(lambda: webhook.messages("hook"), 30, message="the queue full told")
    assert full[0]["title"] == "luzia: the queue is full; submissions are rejected"
    assert "2 jobs pending, broker.max_pending = 2" in full[0]["message"]
    refused = fleet.cli("demo", "one too many")
    assert refused.returncode == 75
    refused_id = refused.stdout.decode().strip().rsplit(":", 1)[1]
    told = wait_for(lambda: about(webhook, refused_id, "jobs"), 30)
    assert told[0]["title"].endswith(" rejected") and "queue full" in told[0]["message"]

    fleet.kill("notify", signal.SIGTERM)        # a restart reads the queue again: the same
    start_notifier(fleet)                       # episode, so nothing new
    status = wait_for(lambda: (s := ask(fleet, "status") or {}).get("broker") == "reachable" and s, 30)
    assert status["queued_since_start"] == 0

    assert fleet.cli("cancel", waiting[0]).returncode == 0      # room again ...
    wait_for(lambda: fleet.state(waiting[0]) == "killed", 20)
    fleet.submit("demo", "fills it again")                       # ... and full again: told again
    wait_for(lambda: len(webhook.messages("hook")) == 2, 30, message="the second episode told")
