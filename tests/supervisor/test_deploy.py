"""deploy/: the example fleet configs load as meant, the unit file says what it must, and a
fleet of four supervisors from those configs (endpoints moved to ipc://) runs jobs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from luzia import config, keys
from tests.fleet import PY, LocalFleet
from tests.helpers import wait_for

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


@pytest.mark.timeout(90)
def test_fleet_of_four_supervisors_from_the_example_configs_runs_jobs(short_tmp):
    run = short_tmp / "main" / "run"
    ipc = {k: f"ipc://{run}/{k}" for k in ("submit", "agents", "control", "events")}
    fast = {"supervisor": {"ping_interval": 0.5}, "broker": {"heartbeat_interval": 0.2},
            "scheduler": {"per_user": False, "cpu_ceiling": 1.0, "memory_ceiling": 1.0}}
    fleets: dict[str, LocalFleet] = {}
    try:
        for name in ("main", *AGENTS):
            data = tomllib.loads((DEPLOY / "fleet" / f"{name}.toml").read_text())
            extra = dict(fast)
            if name != "main":
                extra = {**extra, "agent": {"runner": "subprocess"}}
            text = toml_text(data, {**ipc, "supervisor": f"ipc://{short_tmp / name}/run/supervisor"}, extra)
            fleets[name] = fleet = LocalFleet(short_tmp / name, text)
            fleet.start("supervisor", [PY, "-m", "luzia.supervisor"])
        main = fleets["main"]
        wait_for(lambda: len([a for a in main.agents() if a["state"] == "live"]) == 3, 30,
                 message="three agents live")
        ids = {kind: main.submit("overbits", f"a {kind} task", "--type", kind)
               for kind in ("code", "text", "reasoning")}
        wait_for(lambda: all(main.state(i) == "completed" for i in ids.values()), 30)
        hosts = {kind: main.job(i)["host"] for kind, i in ids.items()}
        assert hosts == {"code": "skadi", "text": "fenrir", "reasoning": "surtr"}
    finally:
        for fleet in fleets.values():
            fleet.close()
