"""`luzia PROJECT TASK...` (the fast path) and luzia.client, against a fake broker."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from luzia import protocol
from tests.cli.conftest import PY, make_home
from tests.cli.fakebroker import make_job, spool_files
from tests.helpers import wait_for

FULL = "101010-0123456789ab"


def received(fake, job_id: str) -> protocol.JobSpec:
    def find():
        with fake.lock:
            return next((m.job for m in fake.submits if m.job.id == job_id), None)
    return wait_for(find, 5, message=f"the fake broker received {job_id}")


def test_submit_prints_the_id_and_the_broker_gets_every_option(home, fake):
    fake.add(make_job("111111-abcdefabcdef"))
    out = home.cli("overbits", "fix", "the", "login", "button", "--type", "text", "--user", "bob",
                   "--timeout", "60", "--max-retries", "2", "--after", "111111-abcd",
                   "--after", f"{FULL},{FULL}", "--metadata", '{"ticket": 42}', "--priority", "low")
    assert out.returncode == 0, out.stderr
    assert not out.stderr
    prefix, project, job_id = out.stdout.decode().strip().split(":")
    assert (prefix, project) == ("agent", "overbits")
    spec = received(fake, job_id)
    assert spec.task == "fix the login button" and spec.user == "bob" and spec.project == "overbits"
    assert spec.priority == 3 and spec.type == "text" and spec.timeout == 60
    assert spec.max_retries == 2 and spec.metadata == {"ticket": 42}
    assert spec.after == ["111111-abcdefabcdef", FULL, FULL]   # the prefix was resolved
    assert spec.workdir == "/srv/overbits" and spec.submitted_at > 0
    assert fake.ops("jobs.get") == [{"id": "111111-abcd"}]     # only the prefix cost a request
    # the job is in the spool too (the broker deletes it once committed; this fake does not)
    assert [p.name for p in spool_files(home.cfg)] == [f"{job_id}.job"]
    assert protocol.spool_load(spool_files(home.cfg)[0].read_bytes()).job == spec


def test_the_defaults_come_from_the_project_then_the_config(home, fake):
    demo = received(fake, home.submit("demo", "x"))
    assert (demo.user, demo.priority, demo.type, demo.timeout, demo.max_retries, demo.workdir) \
        == ("alice", 2, "", 0, 1, "")      # timeout 0: the broker applies type or global default
    over = received(fake, home.submit("overbits", "x"))
    assert (over.user, over.priority, over.type, over.timeout, over.max_retries, over.workdir) \
        == ("overbits", 1, "code", 120, 3, "/srv/overbits")


def test_numeric_priorities_0_to_3_are_accepted(home, fake):
    """0 critical .. 3 low, as the older async dispatcher's Beads queue numbers them."""
    assert received(fake, home.submit("demo", "x", "--priority", "0")).priority == 0
    assert received(fake, home.submit("demo", "x", "--priority", "3")).priority == 3


def test_submit_json(home, fake):
    out = home.cli("demo", "x", "--json", "--priority", "critical")
    data = json.loads(out.stdout)
    assert data == {"id": data["id"], "project": "demo", "user": "alice", "priority": "critical",
                    "state": "pending", "broker": "reachable", "spooled": True}
    assert received(fake, data["id"]).priority == 0


def test_hostile_task_text_arrives_byte_for_byte(home, fake):
    words = ["$(touch x)", '"q"', ";", "\n", "\x1b[31m", "`id`", "it's", "--", "-v", "naïve ✓",
             "%s {task}"]
    job_id = home.submit("demo", "--", *words)
    assert received(fake, job_id).task == " ".join(words)
    assert not (home.path / "x").exists()


def test_options_may_come_anywhere_and_task_words_after_double_dash_are_text(home, fake):
    job_id = home.submit("demo", "fix", "--priority", "high", "the", "bug", "--", "--json", "-v")
    spec = received(fake, job_id)
    assert spec.task == "fix the bug --json -v" and spec.priority == 1


def test_broker_down_the_job_is_spooled_and_the_id_printed(home):
    out = home.cli("demo", "later")
    assert out.returncode == 0
    job_id = out.stdout.decode().strip().split(":")[2]
    assert out.stderr.decode() == (f"luzia: queued; broker not reachable (spooled in "
                                   f"{home.path / 'spool'}, it runs when the broker is back; "
                                   "start it with `make run` or `luzia-supervisor`)\n")
    spooled = protocol.spool_load((home.path / "spool" / f"{job_id}.job").read_bytes())
    assert spooled.job.task == "later" and spooled.job.id == job_id
    assert (home.path / "spool").stat().st_mode & 0o777 == 0o700
    assert not list((home.path / "spool").glob(".*.tmp"))
    data = json.loads(home.cli("demo", "later", "--json").stdout)
    assert data["broker"] == "unreachable" and data["spooled"] is True


def test_a_dead_brokers_socket_file_is_not_mistaken_for_a_broker(home):
    run = home.path / "run"
    run.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / "submit"))      # a socket file with nobody listening
    stale.close()
    out = home.cli("demo", "x")
    assert out.returncode == 0 and b"broker not reachable" in out.stderr


def test_remote_broker_down_nothing_spooled_exit_3(short_tmp):
    home = make_home(short_tmp, 'timeout = 0\n[endpoints]\nsubmit = "tcp://192.0.2.1:5555"\n'
                                '[broker]\ninsecure = true\n')
    out = home.cli("demo", "x")
    assert out.returncode == 3 and not out.stdout
    assert out.stderr.startswith(b"luzia: broker not reachable at tcp://192.0.2.1:5555")
    assert b"luzia-supervisor" in out.stderr and out.stderr.count(b"\n") == 1
    assert not (home.path / "spool").exists()


def test_remote_broker_without_keys_nothing_sent_exit_3(short_tmp):
    home = make_home(short_tmp, 'timeout = 0\n[endpoints]\nsubmit = "tcp://192.0.2.1:5555"\n')
    out = home.cli("demo", "x")
    assert out.returncode == 3 and not out.stdout and out.stderr.count(b"\n") == 1
    assert b"no key pair" in out.stderr and b"luzia keys generate" in out.stderr
    assert not (home.path / "spool").exists()


def test_spool_not_writable_exit_73(home):
    home.path.mkdir(parents=True, exist_ok=True)
    (home.path / "spool").write_text("a file where the spool directory should be")
    out = home.cli("demo", "x")
    assert out.returncode == 73 and not out.stdout and out.stderr.count(b"\n") == 1
    assert out.stderr.startswith(b"luzia: cannot use state directory ")


@pytest.mark.parametrize("args, message", [
    (["nope", "task"], b"unknown project 'nope'; known projects: demo, overbits"),
    (["demo", "x", "--metadata", "{bad"], b"--metadata: is not valid JSON"),
    (["demo", "x", "--metadata", "[1]"], b"--metadata: must be a JSON object"),
    (["demo", "x", "--metadata", '{"n": 18446744073709551616}'],
     b"--metadata holds an integer out of range"),
    (["demo", "x", "--metadata", '{"k": "' + "x" * 16_400 + '"}'],
     b"invalid job: JobSpec.metadata: larger than 16384 bytes"),
    (["demo", "x", "--priority", "urgent"], b"--priority: invalid choice: 'urgent'"),
    (["demo", "x", "--timeout", "soon"], b"--timeout: wants seconds, not 'soon'"),
    (["demo", "x", "--timeout", "0"], b"--timeout: must be more than 0 seconds"),
    (["demo", "x", "--max-retries", "-1"], b"--max-retries: must be 0 or more"),
    (["demo", "x", "--max-retries", "two"], b"--max-retries: wants a whole number"),
    (["demo", "x", "--bogus"], b"unrecognized arguments: --bogus (put -- before task words"),
    (["demo", "x", "--after"], b"--after: expected one argument"),
    (["demo", "x", "--after", "12"], b"--after wants job ids like"),
    (["demo", "x", "--user", "no body"], b"invalid job: JobSpec.user"),
    (["demo", "x", "--user", "alice\n"], b"invalid job: JobSpec.user"),       # $ would pass it
    (["demo"], b"the task is empty"),
    (["demo", " ", ""], b"the task is empty"),
])
def test_bad_submissions_are_one_line_and_exit_2(home, args, message):
    out = home.cli(*args)
    assert out.returncode == 2, out
    assert out.stderr.startswith(b"luzia: ") and message in out.stderr, out.stderr
    assert out.stderr.count(b"\n") == 1 and not out.stdout
    assert not (home.path / "spool").exists()


def test_after_an_unknown_prefix_is_exit_2(home, fake):
    out = home.cli("demo", "x", "--after", "999999-aa")
    assert out.returncode == 2 and out.stderr == b"luzia: no job '999999-aa'\n" and not out.stdout


def test_after_a_prefix_with_the_broker_down_is_exit_3(home):
    out = home.cli("demo", "x", "--after", "999999-aa")
    assert out.returncode == 3 and not out.stdout and not (home.path / "spool").exists()


def test_submit_help(home):
    out = home.cli("demo", "--help")
    assert out.returncode == 0 and out.stdout.startswith(b"usage: luzia PROJECT TASK... [options]")
    for text in (b"--priority", b"--after ID[,ID]", b"--metadata JSON", b"73 spool not writable"):
        assert text in out.stdout
    assert not (home.path / "spool").exists()


LEAN = ("luzia.cli", "luzia.cli.main", "luzia.cli.names", "luzia.cli.submit")


def fast_path_probe(*argv: str) -> str:
    """Python that runs `luzia ARGV` and prints its exit code and the modules it should
    not have imported (click, rich, the broker, agents, supervisor, other CLI modules)."""
    return (f"import sys; sys.argv = ['luzia', *{list(argv)!r}]; "
            "from luzia.cli.main import main; code = main(); "
            "print('MODULES', code, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('click', 'rich') or m.startswith(('luzia.broker', 'luzia.agents', "
            f"'luzia.supervisor')) or (m.startswith('luzia.cli.') and m not in {LEAN!r})))")


def test_the_fast_path_imports_no_click_rich_or_broker(home, fake):
    """Of the CLI, only main, names and submit: no command module, no root group."""
    code = fast_path_probe("demo", "x", "--json")
    out = subprocess.run([PY, "-c", code], env=home.env, capture_output=True)
    assert out.stdout.decode().strip().splitlines()[-1] == "MODULES 0 []", out.stderr
    assert json.loads(out.stdout.decode().splitlines()[0])["broker"] == "reachable"


# each cost 1-18 ms of every `luzia PROJECT TASK` (issue 15's one-shot submit): msgspec and
# luzia.protocol (luzia.submitbody packs the Submit), inspect (dataclasses imports it, with
# ast and dis), argparse with gettext and locale (a plain command line is read without it),
# tomllib (the config's table is parsed once per change: luzia.configcache), OpenSSL
# (hashlib), socket.py, getpass, shutil (argparse's formatter)
LEFT_OUT = ("msgspec", "luzia.protocol", "luzia.message", "inspect", "ast", "dis", "argparse",
            "gettext", "locale", "tomllib", "hashlib", "socket", "getpass", "shutil")


@pytest.mark.parametrize("argv", [["demo", "x"], ["overbits", "x", "--metadata", '{"a": [1.5]}',
                                                  "--after", FULL, "--json"]])
def test_the_fast_path_leaves_out_the_stdlib_it_does_not_need(home, fake, argv):
    env = {**home.env, "XDG_CACHE_HOME": str(home.path.parent / "cache")}
    assert home.cli("demo", "first: the config is parsed", **env).returncode == 0
    code = (f"import sys; sys.argv = ['luzia', *{argv!r}]; from luzia.cli.main import main; "
            f"code = main(); print('MODULES', code, sorted(m for m in {LEFT_OUT!r} "
            "if m in sys.modules))")
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True)
    assert out.stdout.decode().strip().splitlines()[-1] == "MODULES 0 []", out.stderr


def test_what_the_fast_path_sends_and_spools_is_protocols_submit(home, fake):
    """Packed without msgspec (luzia.submitbody), read with it: the broker's decode judges."""
    job_id = home.submit("overbits", "naïve ✓", "--metadata", '{"t": [1, 2.5, null, "ü"]}',
                         "--after", FULL, "--priority", "high")
    spec = received(fake, job_id)
    assert (spec.task, spec.metadata, spec.after, spec.priority) == \
        ("naïve ✓", {"t": [1, 2.5, None, "ü"]}, [FULL], 1)
    spooled = spool_files(home.cfg)[0].read_bytes()
    assert protocol.spool_bytes(protocol.Submit(job=spec)) == spooled


def test_a_submit_leaves_without_teardown_its_output_whole_and_its_job_sent(home, fake):
    """The program leaves a submission with os._exit (luzia/cli/main.py: program): what it
    printed to a pipe is flushed first, its exit code kept, its job sent; a reader that went
    away is no traceback."""
    out = home.cli("demo", "x", "--json")
    assert out.returncode == 0 and out.stdout.decode().endswith("}\n"), out
    received(fake, json.loads(out.stdout)["id"])
    assert home.cli("nope", "x").returncode == 2
    read, write = os.pipe()
    os.close(read)                   # the reader is gone before a byte is written
    try:
        gone = subprocess.run([PY, "-m", "luzia.cli", "demo", "gone", "--json"], env=home.env,
                              stdout=write, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              timeout=20)
    finally:
        os.close(write)
    assert gone.returncode == 0 and b"Traceback" not in gone.stderr, gone.stderr
    wait_for(lambda: any(m.job.task == "gone" for m in list(fake.submits)), 5,
             message="the job of a submit whose reader went away reached the broker")


def test_python_client_submit(home, fake):
    from luzia import client
    from luzia.errors import UsageError
    cfg = home.cfg
    job_id = client.submit("demo", "from python", cfg=cfg, priority="critical", metadata={"a": 1},
                           after=[FULL], max_retries=3, type="text", timeout=5)
    spec = received(fake, job_id)
    assert (spec.task, spec.priority, spec.metadata, spec.after, spec.max_retries, spec.type,
            spec.timeout, spec.user) == ("from python", 0, {"a": 1}, [FULL], 3, "text", 5, "alice")
    with pytest.raises(UsageError, match="unknown project 'nope'; known projects: demo, overbits"):
        client.submit("nope", "x", cfg=cfg)
    with pytest.raises(UsageError, match="the task is empty"):
        client.submit("demo", "  ", cfg=cfg)


def test_python_client_submit_reads_the_config_from_the_environment(home, fake, monkeypatch):
    for name, value in home.env.items():
        if name.startswith("LUZIA_"):
            monkeypatch.setenv(name, value)
    from luzia import client
    assert received(fake, client.submit("overbits", "env")).user == "overbits"
