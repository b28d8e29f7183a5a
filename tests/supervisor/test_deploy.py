"""deploy/: the example fleet configs load as meant, the unit file says what it must, and a
fleet of four supervisors from those configs (endpoints moved to ipc://) runs jobs."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from luzia import config, keys
from luzia.client import Control
from luzia.errors import BrokerUnreachable
from tests.fleet import PY, LocalFleet
from tests.helpers import free_ports, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AGENTS = {"surtr": (["reasoning"], 2), "fenrir": (["text"], 3), "skadi": (["code"], 2)}


def load(name: str, home: Path) -> config.Config:
    return config.load(env={"LUZIA_CONFIG": str(DEPLOY / "fleet" / f"{name}.toml"), "LUZIA_HOME": str(home)})


def test_example_configs_say_who_runs_what_and_where_the_broker_is(short_tmp):
    main = load("main", short_tmp)
    assert main.supervisor.broker and not main.supervisor.agent
    assert main.endpoints.agents.startswith("tcp://") and not config.is_local(main.endpoints.agents)
    assert main.endpoints.supervisor.startswith("ipc://")
    for name, (caps, slots) in AGENTS.items():
        cfg = load(name, short_tmp)
        assert cfg.supervisor.agent and not cfg.supervisor.broker
        assert (cfg.agent.name, cfg.agent.capabilities, cfg.agent.slots) == (name, caps, slots)
        assert cfg.endpoints.agents == main.endpoints.agents
        assert cfg.endpoints.control == main.endpoints.control
    for cfg in (main, *(load(name, short_tmp) for name in AGENTS)):   # CURVE, not insecure
        assert not cfg.broker.insecure and keys.curve_on(cfg, cfg.endpoints.agents)
        assert cfg.keys.broker == "/etc/luzia/broker.key"
        assert cfg.keys.dir == str(short_tmp / "keys")


def test_unit_file_is_a_notify_service_that_spares_the_job_sessions():
    lines = {line.strip() for line in (DEPLOY / "luzia-supervisor.service").read_text().splitlines()}
    for want in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "User=luzia",
                 "StateDirectory=luzia", "Environment=LUZIA_HOME=/var/lib/luzia", "KillMode=process"):
        assert want in lines, want
    assert (DEPLOY / "INSTALL.md").read_text().count("systemctl enable --now luzia-supervisor") == 1


def toml_text(data: dict, ipc: dict[str, str], extra: dict) -> str:
    """The example config with the endpoints moved to ipc and test settings added."""
    data = {**data, "endpoints": ipc}
    for section, values in extra.items():
        data[section] = {**data.get(section, {}), **values}
    out = []
    for section, values in data.items():
        if isinstance(values, dict) and all(not isinstance(v, dict) for v in values.values()):
            out.append(f"[{section}]")
            out += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        else:                                  # [projects.NAME]
            for sub, inner in values.items():
                out.append(f"[{section}.{sub}]")
                out += [f"{k} = {json.dumps(v)}" for k, v in inner.items()]
    return "\n".join(out) + "\n"


FAST = {"supervisor": {"ping_interval": 0.5}, "broker": {"heartbeat_interval": 0.2},
        "scheduler": {"per_user": False, "cpu_ceiling": 1.0, "memory_ceiling": 1.0}}


def start_fleet(root: Path, endpoints: dict[str, str], extra: dict,
                before_start=None) -> dict[str, LocalFleet]:
    """A supervisor per example config, with the broker's endpoints replaced and `extra`
    settings added; `before_start(fleets)` runs once every host's directory exists."""
    fleets: dict[str, LocalFleet] = {}
    for name in ("main", *AGENTS):
        data = tomllib.loads((DEPLOY / "fleet" / f"{name}.toml").read_text())
        more = dict(FAST, **extra)
        if name != "main":
            more = {**more, "agent": {"runner": "subprocess"}}
        text = toml_text(data, {**endpoints, "supervisor": f"ipc://{root / name}/run/supervisor"}, more)
        fleets[name] = LocalFleet(root / name, text)
    if before_start is not None:
        before_start(fleets)
    for fleet in fleets.values():
        fleet.start("supervisor", [PY, "-m", "luzia.supervisor"])
    return fleets


def runs_one_job_per_host(main: LocalFleet, control=None) -> None:
    control = control or main.control
    wait_for(lambda: len([a for a in (control("status") or {}).get("agents", [])
                          if a["state"] == "live"]) == 3, 30, message="three agents live")
    ids = {kind: main.submit("overbits", f"a {kind} task", "--type", kind)
           for kind in ("code", "text", "reasoning")}
    wait_for(lambda: all((control("jobs.get", id=i) or {}).get("state") == "completed"
                         for i in ids.values()), 30)
    hosts = {kind: control("jobs.get", id=i)["host"] for kind, i in ids.items()}
    assert hosts == {"code": "skadi", "text": "fenrir", "reasoning": "surtr"}


@pytest.mark.timeout(90)
def test_fleet_of_four_supervisors_from_the_example_configs_runs_jobs(short_tmp):
    run = short_tmp / "main" / "run"
    ipc = {k: f"ipc://{run}/{k}" for k in ("submit", "agents", "control", "events")}
    fleets: dict[str, LocalFleet] = {}
    try:
        fleets = start_fleet(short_tmp, ipc, {})
        runs_one_job_per_host(fleets["main"])
    finally:
        for fleet in fleets.values():
            fleet.close()


def distribute_keys(fleets: dict[str, LocalFleet]) -> None:
    """docs/DEPLOY.md steps 2-4: a pair per host, the broker's public key to every host,
    each GPU host's public key into the broker's authorized/."""
    for fleet in fleets.values():
        out = fleet.cli("keys", "generate")
        assert out.returncode == 0, out.stderr.decode()
    broker_key = fleets["main"].home / "keys" / "host.key"
    authorized = fleets["main"].home / "keys" / "authorized"
    authorized.mkdir(mode=0o700)
    for name, fleet in fleets.items():
        shutil.copy(broker_key, fleet.home / "keys" / "broker.key")
        if name != "main":
            shutil.copy(fleet.home / "keys" / "host.key", authorized / f"{name}.key")


@pytest.mark.timeout(90)
def test_the_fleet_over_curve_with_keys_set_up_as_deploy_md_says(short_tmp):
    ports = free_ports(4)
    names = ("submit", "agents", "control", "events")
    tcp = {k: f"tcp://127.0.0.1:{p}" for k, p in zip(names, ports, strict=True)}
    # loopback stands in for the LAN: CURVE forced on; broker.key in each host's keys/
    fleets: dict[str, LocalFleet] = {}
    try:
        fleets = start_fleet(short_tmp, tcp, {"keys": {"curve": True, "broker": "broker.key"}},
                             before_start=distribute_keys)
        main = fleets["main"]
        cfg = config.load(env={"LUZIA_CONFIG": str(main.config), "LUZIA_HOME": str(main.home)})
        with Control(cfg, timeout=2) as ctl:
            def control(op, **args):
                try:
                    return ctl.call(op, **args)
                except BrokerUnreachable:
                    return None
            runs_one_job_per_host(main, control)
        log = main.output("supervisor") + (main.home / "log" / "broker.log").read_text()
        assert "CURVE: 3 authorized keys" in log and "fenrir, skadi, surtr" in log
        # the supervisor's health pings reach the broker over CURVE too: it counts it running
        status = json.loads(main.cli("supervisor", "status", "--json").stdout)
        assert [(c["name"], c["state"]) for c in status] == [("broker", "running")]
    finally:
        for fleet in fleets.values():
            fleet.close()
