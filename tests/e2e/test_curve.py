"""CURVE end to end: a real broker on 127.0.0.1 tcp with CURVE forced on (keys.curve), real
agents and the real CLI, each in its own LUZIA_HOME like hosts of a fleet."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest

from tests.fleet import PY, LocalFleet
from tests.helpers import free_ports, wait_for

FAST = """
[broker]
heartbeat_interval = 0.2
spool_sweep = 0.2
[scheduler]
cpu_ceiling = 1.0
memory_ceiling = 1.0
per_user = false
"""


@pytest.fixture(scope="module")
def ports():
    return dict(zip(("submit", "agents", "control", "events"), free_ports(4), strict=True))


def host(root, name: str, ports: dict[str, int], agent: str = "") -> LocalFleet:
    """A 'host': its own LUZIA_HOME and config, the broker's endpoints on loopback tcp, CURVE on."""
    endpoints = "\n".join(f'{k} = "tcp://127.0.0.1:{p}"' for k, p in ports.items())
    text = f"[endpoints]\n{endpoints}\n[keys]\ncurve = true\n{FAST}"
    if agent:
        text += f'[agent]\nname = "{agent}"\nrunner = "subprocess"\n'
    return LocalFleet(root / name, text)


def keygen(fleet: LocalFleet) -> str:
    out = fleet.cli("keys", "generate")
    assert out.returncode == 0, out.stderr.decode()
    return (fleet.home / "keys" / "host.key").read_text()


@pytest.fixture(scope="module")
def broker(ports):
    import tempfile
    from pathlib import Path
    root = Path(tempfile.mkdtemp(prefix="lzc", dir="/tmp"))
    main = host(root, "main", ports)
    keygen(main)
    main.start("broker", [PY, "-m", "luzia.broker"])
    wait_for(lambda: ctl_ok(main), 20, message="broker answers over CURVE")
    yield main
    main.close()
    shutil.rmtree(root, ignore_errors=True)


def ctl_ok(fleet: LocalFleet) -> bool:
    return fleet.cli("--control-timeout", "0.5", "jobs", "--json").returncode == 0


def gpu_host(broker: LocalFleet, name: str, authorize: bool) -> LocalFleet:
    """Another host with its own key pair and the broker's public key, authorized or not."""
    fleet = host(broker.home.parent, name, {k: int(v.rsplit(":", 1)[1]) for k, v in
                                             endpoints(broker).items()}, agent=name)
    keygen(fleet)
    shutil.copy(broker.home / "keys" / "host.key", fleet.home / "keys" / "broker.key")
    if authorize:
        shutil.copy(fleet.home / "keys" / "host.key", broker.home / "keys" / "authorized" / f"{name}.key")
    return fleet


def endpoints(fleet: LocalFleet) -> dict[str, str]:
    import tomllib
    return tomllib.loads(fleet.config.read_text())["endpoints"]


def agent_names(broker: LocalFleet) -> set[str]:
    from luzia.client import Control
    from luzia.config import load
    cfg = load(env={"LUZIA_CONFIG": str(broker.config), "LUZIA_HOME": str(broker.home)})
    with Control(cfg, timeout=2) as ctl:
        return {a["name"] for a in ctl.call("status")["agents"] if a["state"] == "live"}


def test_keys_generate_writes_a_private_pair_and_keeps_an_existing_one(short_tmp):
    fleet = LocalFleet(short_tmp / "k")
    out = fleet.cli("keys", "generate")
    assert out.returncode == 0, out.stderr.decode()
    keys = fleet.home / "keys"
    assert stat.S_IMODE((keys / "host.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert "secret-key" not in (keys / "host.key").read_text()
    again = fleet.cli("keys", "generate")
    assert again.returncode == 2 and "--force" in again.stderr.decode()
    other = fleet.cli("keys", "generate", "--dir", str(short_tmp / "elsewhere"))
    assert other.returncode == 0 and (short_tmp / "elsewhere" / "host.key_secret").exists()
    shown = fleet.cli("keys", "show").stdout.decode()
    assert "host.key" in shown and "missing" in shown     # no broker key yet
    fleet.close()


def test_a_non_local_listener_needs_keys_or_insecure(short_tmp):
    fleet = LocalFleet(short_tmp / "w")
    port = free_ports(1)[0]
    out = subprocess.run([PY, "-m", "luzia.broker", "--bind", f"tcp://0.0.0.0:{port}"],
                         env=fleet.env, capture_output=True, timeout=30)
    err = out.stderr.decode().strip()
    assert out.returncode == 2 and len(err.splitlines()) == 1, err
    assert "luzia keys generate" in err and "authorized" in err and "--insecure" in err
    fleet.start("broker", [PY, "-m", "luzia.broker", "--bind", f"tcp://0.0.0.0:{port}", "--insecure"])
    wait_for(lambda: "INSECURE" in fleet.output("broker"), 20)
    fleet.close()


def test_unknown_agent_gets_nothing_and_is_logged_then_authorized_it_runs_jobs(broker):
    stranger = gpu_host(broker, "ymir", authorize=False)
    stranger.start_agent("ymir")
    key = (stranger.home / "keys" / "host.key").read_text()
    public = key.split('public-key = "')[1].split('"')[0]
    wait_for(lambda: f"unknown public key {public}" in broker.output("broker"), 20,
             message="the broker logs the refused key")
    assert "ymir" not in agent_names(broker)
    stranger.close()

    trusted = gpu_host(broker, "surtr", authorize=True)
    trusted.start_agent("surtr")
    wait_for(lambda: "surtr" in agent_names(broker), 20, message="authorized agent joins")
    job_id = broker.submit("demo", "hello over curve")
    from luzia.client import Control
    from luzia.config import load
    cfg = load(env={"LUZIA_CONFIG": str(broker.config), "LUZIA_HOME": str(broker.home)})
    with Control(cfg, timeout=2) as ctl:
        wait_for(lambda: ctl.call("jobs.get", id=job_id)["state"] == "completed", 30)
        assert ctl.call("jobs.get", id=job_id)["host"] == "surtr"
    trusted.close()


def test_cli_without_keys_or_with_an_unknown_key_is_refused_clearly(broker):
    bare = host(broker.home.parent, "bare", {k: int(v.rsplit(":", 1)[1]) for k, v in
                                             endpoints(broker).items()})
    out = bare.cli("jobs")
    err = out.stderr.decode()
    assert out.returncode == 3 and "luzia keys generate" in err, err
    sub = bare.cli("demo", "hello")          # another host's broker: no spool, exit 3
    assert sub.returncode == 3 and "no key pair" in sub.stderr.decode()
    assert not (bare.home / "spool").exists()

    keygen(bare)                      # a key pair, but the wrong key for the broker
    shutil.copy(bare.home / "keys" / "host.key", bare.home / "keys" / "broker.key")
    out = bare.cli("--control-timeout", "20", "jobs")
    err = out.stderr.decode()
    assert out.returncode == 3 and "not the broker's public key" in err, err

    shutil.copy(broker.home / "keys" / "host.key", bare.home / "keys" / "broker.key")
    out = bare.cli("--control-timeout", "20", "jobs")     # said at once, not at the timeout
    err = out.stderr.decode()
    assert out.returncode == 3 and "refused this host's key" in err and "authorized" in err, err
    assert len(err.strip().splitlines()) == 1
    bare.close()
