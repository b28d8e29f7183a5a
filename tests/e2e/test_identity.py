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

ADMINS = ''           # top-level keys, before the config's tables
PROJECTS = """
[projects.demo]
user = "dana"
"""


@pytest.fixture(scope="module")
def main_host():
    """The broker's host: broker and agent on loopback tcp with CURVE, its own key pair."""
    root = Path(tempfile.mkdtemp(prefix="lzi", dir="/tmp"))
    ports = dict(zip(("submit", "agents", "control", "events"), free_ports(4)))
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
