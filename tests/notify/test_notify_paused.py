"""A job parked on a provider's usage limit (issue 13's `paused`) is told as any job's end
is: a real broker, agent and luzia-notify, the fake claude of tests/agents printing a limit,
and a real HTTP server taking Apprise's JSON webhook."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_agentwork import COMMAND, RESUME
from tests.helpers import wait_for
from tests.notify.test_notify_e2e import about, notifying_fleet

CLAUDE = (f'runner = "subprocess"\ncommand = {json.dumps(COMMAND)}\nformat = "claude"\n'
          f'resume_argv = {json.dumps(RESUME)}')


@pytest.mark.timeout(120)
def test_a_job_paused_on_a_usage_limit_reaches_the_webhook(make_fleet, webhook):
    fleet = notifying_fleet(make_fleet, {"hook": webhook.url()}, [(["paused"], ["hook"])],
                            agent=CLAUDE)
    # the limit's reset an hour ahead: the job stays paused while we look
    job_id = fleet.submit("demo", "limit=3600")
    wait_for(lambda: about(webhook, job_id), 60, message="the paused job told")

    assert fleet.state(job_id) == "paused"
    told, = about(webhook, job_id)
    assert told["type"] == "warning"
    assert told["title"] == f"luzia: demo job {job_id} paused (usage limit)"
    body = told["message"]
    assert "paused: usage limit until " in body and "usage limit reached" in body
    assert "cost: $0.01" in body          # what the attempt cost before the limit
    assert f"look: luzia jobs {job_id}" in body
    assert len(webhook.messages()) == 1   # one pause, one message
