"""The click commands (jobs, logs, cancel, attach, config) and luzia.client.Control,
against a fake broker."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from luzia import protocol
from tests.cli.conftest import PY
from tests.cli.fakebroker import make_job

A = "120000-aaaaaaaaaaaa"
B = "120001-bbbbbbbbbbbb"
C = "120002-cccccccccccc"


def three_jobs(fake) -> None:
    now = time.time()
    fake.add(make_job(A, task="show \x1b[31mred\x1b[0m me", priority="critical", submitted_at=now - 90,
                      why="user alice already has a running job"))
    fake.add(make_job(B, project="overbits", user="overbits", state="running", host="gpu1",
                      progress=30.0, message="step 3 of 10", submitted_at=now - 60,
                      started_at=now - 30, attempt=1, why=""),
             tail=["compiling", "\x1b[2Jtests \x1b]0;title\x07pass"])
    fake.add(make_job(C, state="failed", host="gpu2", exit_code=1, reason="exit status 1",
                      submitted_at=now - 30, started_at=now - 20, finished_at=now - 10, attempt=2,
                      max_retries=1, why=""))


def test_jobs_table(home, fake):
    three_jobs(fake)
    out = home.cli("jobs")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].split() == ["ID", "STATE", "PROJECT", "USER", "PRIO", "AGE", "PROGRESS", "COST",
                                "HOST", "NOTE"]
    assert [line.split()[0] for line in lines[1:4]] == [C, B, A]        # newest first
    assert lines[2].split()[1:5] == ["running", "overbits", "overbits", "normal"]
    assert "[███░░░░░░░] 30%" in lines[2] and "gpu1" in lines[2] and "step 3 of 10" in lines[2]
    assert "user alice already has a running job" in lines[3]
    assert lines[-1] == "1 failed, 1 pending, 1 running"
    assert "\x1b" not in out.stdout.decode()
    assert fake.ops("jobs.list") == [{"limit": 20}]


def test_jobs_filters_go_to_the_broker(home, fake):
    three_jobs(fake)
    out = home.cli("jobs", "--json", "-n", "5", "--state", "running", "-s", "failed",
                   "--project", "overbits", "--user", "overbits")
    assert [j["id"] for j in json.loads(out.stdout)] == [B]
    assert fake.ops("jobs.list") == [{"limit": 5, "state": ["running", "failed"],
                                      "project": "overbits", "user": "overbits"}]
    home.cli("jobs", "--json", LUZIA_JOBS_LIMIT="2", LUZIA_JOBS_PROJECT="demo")
    assert fake.ops("jobs.list")[-1] == {"limit": 2, "project": "demo"}
    out = home.cli("jobs", "--state", "sleeping")
    assert out.returncode == 2 and b"Invalid value for '--state'" in out.stderr


def test_jobs_json_is_a_list_and_one_job_an_object(home, fake):
    three_jobs(fake)
    listed = json.loads(home.cli("jobs", "--json").stdout)
    assert [j["id"] for j in listed] == [C, B, A]
    one = json.loads(home.cli("jobs", "120001-bb", "--json").stdout)
    assert one["id"] == B and one["tail"][0] == "compiling" and one["state"] == "running"


def test_jobs_detail(home, fake):
    three_jobs(fake)
    text = home.cli("jobs", B).stdout.decode()
    assert text.startswith("RUNNING [██████░░░░░░░░░░░░░░] 30% step 3 of 10\n")
    for part in (f"job        {B}  (attempt 1 of 1)", "project    overbits   user overbits",
                 "host       gpu1", "waited 30s", "output (last lines):", "  compiling", "  tests pass"):
        assert part in text, part
    running_for = re.search(r"running for (\d+)s", text)     # 30 s, more on a slow start
    assert running_for and int(running_for[1]) >= 30, text
    assert "\x1b" not in text and "\x07" not in text
    text = home.cli("jobs", A).stdout.decode()
    assert text.startswith("PENDING [") and "why        user alice already has a running job" in text
    assert "task       show red me" in text and "priority critical" in text
    text = home.cli("jobs", C).stdout.decode()
    assert "   exit 1\n" in text and "reason     exit status 1" in text
    assert "(attempt 2 of 2)" in text and "ran 10s" in text


def test_jobs_unknown_or_ambiguous_is_exit_2(home, fake):
    three_jobs(fake)
    out = home.cli("jobs", "999999-aaaa")
    assert out.returncode == 2 and out.stderr == b"luzia: no job '999999-aaaa'\n"
    out = home.cli("jobs", "12000")
    assert out.returncode == 2 and out.stderr.startswith(b"luzia: no job '12000' (ids look like")
    out = home.cli("jobs", "120000-a", "--json")
    assert out.returncode == 0
    fake.add(make_job("120000-abbbbbbbbbbb"))
    out = home.cli("jobs", "120000-a")
    assert out.returncode == 2 and b"names more than one job" in out.stderr


def test_logs_strips_escapes_when_piped(home, fake):
    log = b"\x1b[31mred\x1b[0m plain\r\n\x1b]0;t\x07done\n"
    fake.add(make_job(A, state="completed"), log=log)
    out = home.cli("logs", A)
    assert out.returncode == 0 and out.stdout == b"red plain\ndone\n"
    data = json.loads(home.cli("logs", A, "--json").stdout)
    assert data == {"id": A, "state": "completed", "size": len(log), "source": "agent",
                    "output": "red plain\ndone\n"}
    out = home.cli("logs", A, "--json", "-f")
    assert out.returncode == 2 and b"--json and --follow" in out.stderr


def test_logs_reads_in_chunks(home, fake):
    big = b"".join(b"line %06d\n" % i for i in range(20000))      # 220 kB: four reads
    fake.add(make_job(A, state="completed"), log=big)
    out = home.cli("logs", A)
    assert out.stdout == big
    assert [r["offset"] for r in fake.ops("logs.read")] == [0, 65536, 131072, 196608]


def test_logs_of_a_pending_job_is_empty(home, fake):
    fake.add(make_job(A))
    out = home.cli("logs", A)
    assert out.returncode == 0 and out.stdout == b""


def test_cancel(home, fake):
    three_jobs(fake)
    out = home.cli("cancel", A, B, C)
    assert out.returncode == 0
    assert out.stdout.decode().splitlines() == [f"{A}: killed", f"{B}: cancelling",
                                                f"{C}: already failed"]
    assert json.loads(home.cli("cancel", A, "--json").stdout) == [
        {"id": A, "state": "killed", "result": "already killed"}]
    out = home.cli("cancel", B, "999999-aaaa")
    assert out.returncode == 2 and out.stderr == b"luzia: no job '999999-aaaa'\n"
    out = home.cli("cancel")
    assert out.returncode == 2 and b"Missing argument" in out.stderr


def test_attach(home, fake, short_tmp):
    fake.add(make_job(A))
    fake.add(make_job(B, state="running", host="gpu1"))
    fake.add(make_job(C, state="completed", host="gpu1"))
    fake.add(make_job("120003-dddddddddddd", state="running", host="here"))
    sock = home.cfg.agent.tmux_socket      # the default: luzia-<hash of the state directory>
    assert sock.startswith("luzia-")
    assert b"has not started yet (no agent is connected)" in home.cli("attach", A).stdout
    assert home.cli("attach", B).stdout.decode() == (
        f"job {B} runs on gpu1 in tmux session luzia-{B}; attach there with: "
        f"ssh -t gpu1 luzia attach {B}\n")
    assert home.cli("attach", C).stdout.decode() == f"job {C} is completed; its output: luzia logs {C}\n"
    assert json.loads(home.cli("attach", B, "--json").stdout) == {
        "id": B, "state": "running", "host": "gpu1", "here": False, "session": f"luzia-{B}",
        "command": ["tmux", "-L", sock, "attach", "-t", f"luzia-{B}"],
        "there": ["ssh", "-t", "gpu1", "luzia", "attach", B]}
    # on this host: exec tmux (a stand-in that prints its arguments)
    bin_dir = short_tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "tmux").write_text("#!/bin/sh\necho \"tmux $*\"\n")
    (bin_dir / "tmux").chmod(0o755)
    out = home.cli("attach", "120003-dd", PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines()[-1] == f"tmux -L {sock} attach -t luzia-120003-dddddddddddd"


def test_config_show_says_where_it_came_from(home):
    out = home.cli("config", "show")
    assert out.returncode == 0
    text = out.stdout.decode()
    assert text.startswith(f"# read from: {home.config}\n# looked for: {home.config}\n")
    assert "\n[projects.overbits]\n" in text and 'workdir = "/srv/overbits"' in text
    import tomllib
    body = tomllib.loads(text)         # the text view is valid TOML
    assert body["agent"]["name"] == "here" and body["timeout"] == 600
    data = json.loads(home.cli("config", "show", "--json").stdout)
    assert data["projects"]["overbits"]["user"] == "overbits" and data["source"] == str(home.config)
    assert data["candidates"] == [str(home.config)]
    assert data["endpoints"]["control"] == f"ipc://{home.path}/run/control"


def test_config_show_without_a_file(home, short_tmp):
    env = {k: v for k, v in home.env.items() if k != "LUZIA_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(short_tmp / "xdg")
    import subprocess
    out = subprocess.run([PY, "-m", "luzia.cli", "config", "show"], env=env, capture_output=True)
    assert out.returncode == 0
    assert b"# read from: (no config file; built-in defaults)" in out.stdout
    assert str(short_tmp / "xdg" / "luzia" / "luzia.toml").encode() in out.stdout
    out = subprocess.run([PY, "-m", "luzia.cli", "--config", str(home.config), "config", "show"],
                         env=env, capture_output=True)
    assert f"# read from: {home.config}".encode() in out.stdout


def test_a_bad_config_is_one_line_exit_2(home):
    home.config.write_text("bogus = 1\n" + home.config.read_text())
    for args in (["jobs"], ["demo", "x"], ["config", "show"]):
        out = home.cli(*args)
        assert out.returncode == 2 and out.stderr.startswith(b"luzia: unknown config key 'bogus'")
        assert out.stderr.count(b"\n") == 1


def test_queries_without_a_broker_exit_3_with_one_line(home):
    for args in (["jobs"], ["jobs", "123456"], ["jobs", "--json"], ["logs", "123456"],
                 ["cancel", "123456"], ["jobs", "--watch"], ["attach", "123456"]):
        out = home.cli(*args)
        assert out.returncode == 3, (args, out)
        assert out.stderr == (f"luzia: broker not reachable at ipc://{home.path}/run/control; "
                              "start it with `make run` or `luzia-supervisor`\n").encode()
        assert not out.stdout


def test_a_broker_that_does_not_answer_is_exit_3(home, fake):
    fake.silent = True
    started = time.monotonic()
    out = home.cli("jobs", LUZIA_CONTROL_TIMEOUT="0.3")
    assert out.returncode == 3 and out.stderr.startswith(b"luzia: broker not reachable at ipc://")
    assert time.monotonic() - started < 5


def test_a_malformed_answer_is_exit_4(home, fake):
    fake.raw_reply = [b"LZ1", b"REPLY", b"\xc1"]         # not msgpack
    out = home.cli("jobs")
    assert out.returncode == 4 and out.stderr.startswith(b"luzia: bad msgpack body")
    fake.raw_reply = protocol.encode(protocol.Reply(req=1, result={"not": "a list"}))
    out = home.cli("jobs")
    assert out.returncode == 4 and out.stderr.count(b"\n") == 1 and b"not a list of jobs" in out.stderr


def test_help_version_and_no_arguments(home):
    out = home.cli("--help")
    assert out.returncode == 0
    for text in (b"luzia PROJECT TASK...", b"--priority", b"3   broker not reachable",
                 b"73  state dir not writable", b"2   usage", b"jobs", b"logs", b"cancel",
                 b"attach", b"config", b"--control-timeout"):
        assert text in out.stdout, text
    bare = home.cli()
    assert bare.returncode == 0 and b"Commands:" in bare.stdout
    assert home.cli("--version").stdout.startswith(b"luzia, version ")
    assert b"exits 0 whatever the" in home.cli("jobs", "--help").stdout
    assert home.cli("--nope").returncode == 2


@pytest.mark.parametrize("args", [("logs",), ("jobs", "--bogus"), ("queue", "bogus"), ("cancel",)])
def test_a_usage_error_is_one_line_naming_the_help_and_exit_2(home, args):
    out = home.cli(*args)
    assert out.returncode == 2 and out.stdout == b""
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luzia: ") and "--help`)" in lines[0], lines


def test_command_names_match_the_click_group():
    from luzia.cli.names import COMMANDS
    from luzia.cli.root import cli
    assert set(cli.commands) == set(COMMANDS)


def test_every_command_is_in_the_module_of_its_noun():
    from luzia.cli.names import COMMANDS_BY_NOUN
    from luzia.cli.root import NOUNS
    found = {noun.__name__.rsplit(".", 1)[1]: tuple(c.name for c in noun.COMMANDS) for noun in NOUNS}
    assert found == COMMANDS_BY_NOUN


# luzia.client.Control in this process -------------------------------------------


def test_control_maps_reply_codes_to_errors(home, fake):
    from luzia.client import Control
    from luzia.errors import BrokerUnreachable, LuziaError, NotFound, ProtocolError, UsageError
    fake.add(make_job(A))
    fake.add(make_job("120000-abbbbbbbbbbb"))
    with Control(home.cfg, timeout=2) as ctl:
        assert ctl.call("ping")["name"] == "broker"
        assert ctl.call("jobs.get", id=A)["id"] == A
        with pytest.raises(NotFound, match="no job '999999-aaaa'"):
            ctl.call("jobs.get", id="999999-aaaa")
        with pytest.raises(UsageError, match="names more than one job"):
            ctl.call("jobs.get", id="120000-a")
        with pytest.raises(UsageError, match="unknown operation"):
            ctl.call("no.such.op")
        fake.raw_reply = protocol.encode(protocol.Reply(req=99, ok=False, error="x", code="internal"))
        with pytest.raises(BrokerUnreachable):   # a reply to another request is not ours
            ctl.call("ping", timeout=0.3)
        assert ctl.call("ping")["name"] == "broker"      # a new socket after the timeout
        fake.raw_reply = lambda req: protocol.encode(protocol.Reply(
            req=req.req, ok=False, error="disk full", code="internal"))
        with pytest.raises(LuziaError, match="disk full") as err:
            ctl.call("ping")
        assert type(err.value) is LuziaError and err.value.exit_code == 1
        fake.raw_reply = [b"LZ2", b"REPLY", b"\x80"]
        with pytest.raises(ProtocolError, match="unsupported protocol version"):
            ctl.call("ping")
    assert [r.req for r in fake.requests] == sorted({r.req for r in fake.requests})   # fresh ids


def test_control_without_a_broker(home):
    from luzia.client import Control
    from luzia.errors import BrokerUnreachable
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=r"broker not reachable at ipc://.*make run"):
        Control(home.cfg).call("ping")
    assert time.monotonic() - started < 1     # no socket file: no waiting for a timeout


def test_the_brokers_error_text_is_shown_as_one_clean_line(home, fake):
    fake.raw_reply = lambda req: protocol.encode(protocol.Reply(
        req=req.req, ok=False, error="bad\n\x1b[31mthing\x07", code="bad_request"))
    out = home.cli("jobs")
    assert out.returncode == 2 and out.stderr == b"luzia: bad thing\n"


def test_a_job_still_in_the_spool_is_waited_for_then_named(home, fake):
    job_id = "140000-eeeeeeeeeeee"
    home.cfg.spool_dir.mkdir(parents=True)
    (home.cfg.spool_dir / f"{job_id}.job").write_bytes(b"")
    out = home.cli("jobs", job_id)
    assert out.returncode == 2 and b"is still in the spool" in out.stderr
    assert len(fake.ops("jobs.get")) > 1           # it asked again while it waited
