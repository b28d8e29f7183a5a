"""Who may submit, and who did (issue 17 items 6 and 7), with real processes: a broker with
CURVE on loopback tcp and client "hosts" in homes of their own (as in test_curve.py), and a
broker on ipc:// whose socket a process of another Unix user reaches."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.test_curve import FAST, endpoints, host, keygen
from tests.fleet import PY, LocalFleet, jobs_json
from tests.helpers import free_ports, wait_for

ADMINS = 'admins = ["carol"]\n'    # a top-level key, before the config's tables
PROJECTS = """
[projects.demo]
user = "dana"
"""


@pytest.fixture(scope="module")
def main_host():
    """The broker's host: broker and agent on loopback tcp with CURVE, its own key pair."""
    root = Path(tempfile.mkdtemp(prefix="lzi", dir="/tmp"))
    ports = dict(zip(("submit", "agents", "control", "events"), free_ports(4), strict=True))
    main = host(root, "main", ports, agent="main")
    main.config.write_text(ADMINS + main.config.read_text() + PROJECTS)
    keygen(main)
    main.start("broker", [PY, "-m", "luzia.broker"])
    wait_for(lambda: main.cli("--control-timeout", "0.5", "jobs").returncode == 0, 30,
             message="broker answers over CURVE")
    main.start_agent("main")
    yield main
    main.close()
    shutil.rmtree(root, ignore_errors=True)


def client_host(main: LocalFleet, name: str) -> LocalFleet:
    """Another host (its own home), the broker's endpoints in its config, no keys yet."""
    ports = {k: int(v.rsplit(":", 1)[1]) for k, v in endpoints(main).items()}
    fleet = host(main.home.parent, name, ports)
    fleet.config.write_text(ADMINS + fleet.config.read_text() + PROJECTS)
    return fleet


def authorize(main: LocalFleet, client: LocalFleet, as_name: str) -> None:
    shutil.copy(client.home / "keys" / "host.key", main.home / "keys" / "authorized" / f"{as_name}.key")


def nothing_spooled(client: LocalFleet) -> bool:
    spool = client.home / "spool"
    return not spool.exists() or not os.listdir(spool)


def refused(out, *words: str) -> str:
    err = out.stderr.decode()
    assert out.returncode == 3, err
    assert not out.stdout and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    return err


def test_a_refused_client_exits_3_with_the_reason_and_leaves_no_spool_file(main_host):
    laptop = client_host(main_host, "laptop")
    refused(laptop.cli("demo", "no key pair"), "no key pair", "luzia keys generate")
    assert nothing_spooled(laptop)

    keygen(laptop)                          # a pair, but its own key where the broker's should be
    shutil.copy(laptop.home / "keys" / "host.key", laptop.home / "keys" / "broker.key")
    refused(laptop.cli("demo", "wrong broker key"), "broker")
    assert nothing_spooled(laptop)

    shutil.copy(main_host.home / "keys" / "host.key", laptop.home / "keys" / "broker.key")
    began = time.monotonic()
    refused(laptop.cli("demo", "not authorized"), "refused this host's key", "authorized")
    assert time.monotonic() - began < 15          # said when the handshake fails
    assert nothing_spooled(laptop)

    authorize(main_host, laptop, "laptop")
    out = laptop.cli("demo", "authorized now")
    assert out.returncode == 0 and not out.stderr, out.stderr.decode()
    job_id = out.stdout.decode().strip().rsplit(":", 1)[1]
    wait_for(lambda: jobs_json(main_host.cli("jobs", job_id, "--json"))["state"] == "completed", 60)
    assert nothing_spooled(laptop)
    laptop.close()


def test_on_the_brokers_own_home_a_loopback_broker_is_still_spooled_for(main_host):
    """The broker wrote which endpoint sweeps its spool (spool/.broker): its own home spools,
    so a submission there survives the broker being down, as with ipc."""
    assert (main_host.home / "spool" / ".broker").read_text() == endpoints(main_host)["submit"]
    out = main_host.cli("demo", "--json", "from the broker's home")
    assert out.returncode == 0, out.stderr.decode()
    assert jobs_json(out)["spooled"] is True and jobs_json(out)["broker"] == "reachable"


def person(main: LocalFleet, name: str, key_file: str) -> LocalFleet:
    """A person's account on another host: a key pair, the broker's key, authorized as
    `key_file` (alice.key, bob@laptop.key) on the broker's host."""
    fleet = client_host(main, name)
    keygen(fleet)
    shutil.copy(main.home / "keys" / "host.key", fleet.home / "keys" / "broker.key")
    shutil.copy(fleet.home / "keys" / "host.key", main.home / "keys" / "authorized" / key_file)
    return fleet


def job(main: LocalFleet, job_id: str) -> dict:
    return jobs_json(main.cli("jobs", job_id, "--json"))


def jobs_by_task(main: LocalFleet) -> dict[str, dict]:
    return {j["task"]: j for j in jobs_json(main.cli("jobs", "--json", "--limit", "200"))}


def push_as(fleet: LocalFleet, spec) -> None:
    """A Submit sent straight to the broker's PULL socket with `fleet`'s CURVE key: what
    anyone with a key can do without the CLI."""
    import zmq

    from luzia import keys, protocol
    from luzia.config import load
    cfg = load(env={"LUZIA_CONFIG": str(fleet.config), "LUZIA_HOME": str(fleet.home)})
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    client = keys.client_keys(cfg, cfg.endpoints.submit)
    assert client is not None
    client.apply(sock)
    sock.connect(cfg.endpoints.submit)
    sock.send_multipart(protocol.encode(protocol.Submit(job=spec)))
    sock.close(linger=5000)
    ctx.term()


def a_spec(user: str, task: str):
    from luzia import protocol
    from luzia.ids import new_job_id
    return protocol.JobSpec(id=new_job_id(), project="demo", task=task, user=user,
                            submitted_at=time.time())


def test_over_curve_the_submitter_is_the_keys_user_and_user_names_only_self_or_owner(main_host):
    alice = person(main_host, "alice", "alice.key")
    bob = person(main_host, "bobs", "bob@laptop.key")        # one of bob's keys
    carol = person(main_host, "carol", "carol.key")          # an admin (admins in the config)

    own = alice.submit("demo", "alice for the owner")
    mine = alice.submit("demo", "--user", "alice", "alice as herself")
    out = alice.cli("demo", "--user", "bob", "alice as bob")
    err = out.stderr.decode()
    assert out.returncode == 2 and not out.stdout and err.count("\n") == 1, err
    assert "alice may not submit as 'bob'" in err and "admin" in err
    bobs = bob.submit("demo", "--user", "bob", "bob as himself")
    for_bob = carol.submit("demo", "--user", "bob", "carol for bob")
    forged = a_spec("bob", "alice forging bob")
    push_as(alice, forged)

    wait_for(lambda: job(main_host, forged.id)["state"] == "rejected", 30, message="forged push rejected")
    rejected = job(main_host, forged.id)
    assert rejected["submitter"] == "alice" and rejected["user"] == "bob"
    assert rejected["reason"].startswith("not allowed: alice may not submit as 'bob'")
    expected = {own: ("dana", "alice"), mine: ("alice", "alice"), bobs: ("bob", "bob"),
                for_bob: ("bob", "carol")}
    for job_id, (user, submitter) in expected.items():
        wait_for(lambda: job(main_host, job_id)["state"] == "completed", 60)   # noqa: B023
        assert (job(main_host, job_id)["user"], job(main_host, job_id)["submitter"]) == (user, submitter)
    assert "alice as bob" not in jobs_by_task(main_host)       # refused before it was sent

    detail = main_host.cli("jobs", for_bob).stdout.decode()
    assert " by carol" in detail
    history = main_host.cli("history").stdout.decode()
    assert " BY " in history.splitlines()[0] and "carol" in history
    stats = jobs_json(main_host.cli("stats", "--json"))
    assert {"alice", "bob", "carol"} <= {r["name"] for r in stats["by_submitter"]}
    by_user = {r["name"]: r["jobs"] for r in stats["by_user"]}
    assert by_user["bob"] == 3          # bob's own, carol's for him, and the rejected forgery
    for fleet in (alice, bob, carol):
        fleet.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another Unix user")
def test_on_the_brokers_host_the_submitter_is_the_unix_user_of_the_socket_or_the_spool_file(short_tmp):
    from luzia import client, protocol
    from luzia.config import load

    fleet = LocalFleet(short_tmp / "f", FAST + PROJECTS + '[agent]\nrunner = "subprocess"\n')
    try:
        fleet.start_broker()
        fleet.start_agent("a1")
        wait_for(lambda: "a1" in fleet.live_agents(), 30)
        assert fleet.control("whoami") == {"user": "root", "admin": True}
        by_root = fleet.submit("demo", "--user", "erin", "root for erin")   # root is an admin

        # a deployment that lets another user reach the socket (a group, here: everyone)
        for path in (short_tmp, fleet.home, fleet.home / "run"):
            os.chmod(path, 0o711)
        os.chmod(fleet.home / "run" / "submit", 0o666)
        forged, own = a_spec("alice", "nobody as alice"), a_spec("nobody", "nobody as nobody")
        as_nobody([protocol.encode(protocol.Submit(job=s)) for s in (forged, own)],
                  f"ipc://{fleet.home}/run/submit")

        # a spool file written by someone else: its owner is its submitter
        cfg = load(env=fleet.env)
        spooled = a_spec("alice", "a spool file of nobody's")
        tmp = cfg.spool_dir / f".{spooled.id}.x"
        tmp.write_bytes(protocol.spool_bytes(protocol.Submit(job=spooled)))
        os.chown(tmp, 65534, 65534)
        os.rename(tmp, cfg.spool_dir / f"{spooled.id}.job")

        for job_id, state in ((forged.id, "rejected"), (own.id, "completed"),
                              (spooled.id, "rejected"), (by_root, "completed")):
            wait_for(lambda: fleet.state(job_id) == state, 30, message=f"{job_id} {state}")  # noqa: B023
        assert fleet.job(forged.id)["submitter"] == "nobody"
        assert "nobody may not submit as 'alice'" in fleet.job(forged.id)["reason"]
        assert fleet.job(own.id)["submitter"] == "nobody"
        assert fleet.job(spooled.id)["submitter"] == "nobody"
        assert (fleet.job(by_root)["user"], fleet.job(by_root)["submitter"]) == ("erin", "root")
        assert client.sweeps_here(cfg)
    finally:
        fleet.close()


def as_nobody(messages: list[list[bytes]], endpoint: str) -> None:
    """Send `messages` to `endpoint` from a child process running as uid 65534 (forked: the
    interpreter lives where that user cannot read it)."""
    import zmq
    pid = os.fork()
    if pid == 0:                      # the child: a new context, never the parent's
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            ctx = zmq.Context()
            sock = ctx.socket(zmq.PUSH)
            sock.connect(endpoint)
            for frames in messages:
                sock.send_multipart(frames)
            sock.close(linger=5000)
            ctx.term()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
