"""The `luzia` command line, as a user runs it (subprocesses), against a real broker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fleet import PY, LocalFleet, jobs_json
from tests.helpers import wait_for


@pytest.fixture
def fleet(short_tmp):
    f = LocalFleet(short_tmp / "h", '[projects.demo]\nuser = "alice"\n[projects.overbits]\n'
                                    'user = "overbits"\npriority = "high"\n')
    yield f
    f.close()


def test_submit_prints_the_id_and_the_broker_gets_every_option(fleet):
    fleet.start_broker()
    after = fleet.submit("demo", "first")
    out = fleet.cli("overbits", "fix", "the", "login", "button", "--type", "text", "--user", "bob",
                    "--timeout", "60", "--max-retries", "2", "--after", after,
                    "--metadata", '{"ticket": 42}')
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.decode().strip().split(":")[2]
    assert out.stdout.decode().startswith("agent:overbits:")
    job = wait_for(lambda: fleet.job(job_id), 5)
    assert job["task"] == "fix the login button" and job["user"] == "bob"
    assert job["priority"] == "high" and job["type"] == "text" and job["timeout"] == 60
    assert job["max_retries"] == 2 and job["after"] == [after] and job["metadata"] == {"ticket": 42}


def test_submit_json(fleet):
    fleet.start_broker()
    out = fleet.cli("demo", "x", "--json", "--priority", "low")
    data = json.loads(out.stdout)
    assert data["project"] == "demo" and data["priority"] == "low" and data["user"] == "alice"
    assert data["broker"] == "reachable" and data["spooled"] is True


def test_broker_down_the_job_is_spooled_and_the_id_printed(fleet):
    out = fleet.cli("demo", "later")
    assert out.returncode == 0
    job_id = out.stdout.decode().strip().split(":")[2]
    assert b"queued; broker not reachable" in out.stderr
    assert (fleet.home / "spool" / f"{job_id}.job").exists()


@pytest.mark.parametrize("args, message", [
    (["nope", "task"], b"unknown project 'nope'; known projects: demo, overbits"),
    (["demo", "x", "--metadata", "{bad"], b"--metadata is not valid JSON"),
    (["demo", "x", "--metadata", "[1]"], b"--metadata must be a JSON object"),
    (["demo", "x", "--priority", "urgent"], b"invalid choice"),
    (["demo", "x", "--after", "nonsense"], b"no job 'nonsense'"),
    (["demo", " "], b"the task is empty"),
])
def test_bad_submissions_are_one_line_and_exit_2(fleet, args, message):
    fleet.start_broker()
    out = fleet.cli(*args)
    assert out.returncode == 2, out
    assert message in out.stderr and out.stderr.count(b"\n") == 1 and not out.stdout


def test_queries_without_a_broker_exit_3_with_one_line(fleet):
    for args in (["jobs"], ["jobs", "123456"], ["logs", "123456"], ["cancel", "123456"]):
        out = fleet.cli(*args)
        assert out.returncode == 3 and b"broker not reachable" in out.stderr
        assert out.stderr.count(b"\n") == 1 and b"Traceback" not in out.stderr


def test_jobs_logs_cancel_against_a_real_broker(fleet):
    fleet.start_broker()
    job_id = fleet.submit("demo", "show \x1b[31mred\x1b[0m me")
    listed = jobs_json(fleet.cli("jobs", "--json"))
    assert listed[0]["id"] == job_id and listed[0]["state"] == "pending"
    for key in ("id", "state", "project", "user", "priority", "host"):
        assert key in listed[0]
    table = fleet.cli("jobs").stdout
    assert job_id.encode() in table and b"\x1b" not in table
    detail = fleet.cli("jobs", job_id[:10])
    assert b"PENDING" in detail.stdout and b"why" in detail.stdout and b"\x1b" not in detail.stdout
    assert jobs_json(fleet.cli("jobs", job_id, "--json"))["id"] == job_id
    assert fleet.cli("jobs", "999999-aaaa").returncode == 2
    logs = fleet.cli("logs", job_id)
    assert logs.returncode == 0
    out = fleet.cli("cancel", job_id)
    assert out.returncode == 0 and b"killed" in out.stdout
    assert b"already killed" in fleet.cli("cancel", job_id).stdout
    assert fleet.cli("cancel", "999999-aaaa").returncode == 2


def test_config_show_says_where_it_came_from(fleet):
    out = fleet.cli("config", "show")
    assert out.returncode == 0 and str(fleet.config).encode() in out.stdout
    data = jobs_json(fleet.cli("config", "show", "--json"))
    assert data["projects"]["overbits"]["user"] == "overbits"


def test_the_submit_path_imports_no_click_rich_or_broker(fleet):
    code = ("import sys; sys.argv = ['luzia', 'demo', 'x']; from luzia.cli.main import main; main(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich') "
            "or m.startswith(('luzia.broker', 'luzia.agents', 'luzia.supervisor'))))")
    out = subprocess.run([PY, "-c", code], env=fleet.env, capture_output=True)
    assert out.stdout.decode().strip().splitlines()[-1] == "[]"


def test_command_names_match_the_click_group():
    from luzia.cli.app import cli
    from luzia.cli.names import COMMANDS
    assert set(cli.commands) == set(COMMANDS)


def test_python_client_submit(fleet, monkeypatch):
    fleet.start_broker()
    for k, v in fleet.env.items():
        if k.startswith("LUZIA_"):
            monkeypatch.setenv(k, v)
    from luzia import client
    job_id = client.submit("demo", "from python", priority="critical", metadata={"a": 1})
    job = wait_for(lambda: fleet.job(job_id), 5)
    assert job["priority"] == "critical" and job["metadata"] == {"a": 1}
