"""A fleet of real Luzia processes on this machine for end-to-end tests and benchmarks:
a broker and agents as subprocesses on ipc:// endpoints under a private LUZIA_HOME."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from luzia import protocol
from tests.helpers import kill_jobs, kill_tmux_server, printed_id, wait_for

PY = sys.executable
# a broker whose placement counts running/slots only, so which agent is least loaded is
# known; no per-user or per-project limits; a live agent on a loaded box may miss a few
# beats without being taken for dead (liveness). [broker] is its last section: add keys to it
PLACEMENT_BY_SLOTS = """
[scheduler]
cpu_ceiling = 1.0
memory_ceiling = 1.0
weight_cpu = 0.0
weight_memory = 0.0
per_user = false
max_per_project = 0
[broker]
heartbeat_interval = 0.1
liveness = 20
"""


class LocalFleet:
    def __init__(self, home: Path, config_text: str = "", tmux_socket: str = "",
                 env: dict[str, str] | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "luzia.toml"
        agent = (f'[agent]\ntmux_socket = "{tmux_socket}"\n'
                 if tmux_socket and "[agent]" not in config_text else "")
        self.config.write_text(f'home = "{home}"\n{config_text}\n{agent}')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LUZIA_")}
        self.env.update({"LUZIA_CONFIG": str(self.config), "LUZIA_HOME": str(home),
                         "LUZIA_DEMO_SECONDS": "0.3", "PYTHONUNBUFFERED": "1",
                         "LUZIA_CACHE_TTL": "0"})   # tests ask after changes made elsewhere
        self.env.update(env or {})
        # an agent that picks tmux itself must not use the shared default server: a private
        # one per fleet (tests run in parallel, beside other suites and `make run`)
        self.own_tmux = ""
        if not tmux_socket and "tmux_socket" not in config_text and \
                "LUZIA_AGENT_TMUX_SOCKET" not in self.env:
            self.own_tmux = self.env["LUZIA_AGENT_TMUX_SOCKET"] = f"lzf{uuid.uuid4().hex[:8]}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.ctx = zmq.Context()
        self._req = itertools.count(1)
        self._control: zmq.Socket | None = None

    # processes ------------------------------------------------------------------
    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.home / f"{name}.out", "ab")
        proc = subprocess.Popen(argv, env={**self.env, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[name] = proc
        return proc

    def start_broker(self) -> subprocess.Popen:
        proc = self.start("broker", [PY, "-m", "luzia.broker"])
        wait_for(self.ping, 15, message="broker answers ping")
        return proc

    def start_agent(self, name: str = "local", *extra: str,
                    env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start(f"agent-{name}", [PY, "-m", "luzia.agents", "--name", name, *extra], env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(10)
        if name == "broker":
            self._reset_control()

    def output(self, name: str) -> str:
        return (self.home / f"{name}.out").read_text(errors="replace")

    def close(self) -> None:
        # the broker last: a client of it (luzia-notify, the dashboard) stopped at the same
        # time may be inside a request to it and wait out that request's timeout (5 s)
        clients = [p for name, p in self.procs.items() if name != "broker"]
        broker = [self.procs["broker"]] if "broker" in self.procs else []
        for group in (clients, broker):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        kill_jobs(self.home / "jobs")
        self._reset_control()
        self.ctx.destroy(linger=0)
        if self.own_tmux and shutil.which("tmux"):
            kill_tmux_server(self.own_tmux)

    # talking to it ----------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 30, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "luzia.cli", *args], env=self.env, capture_output=True,
                              timeout=timeout, input=input)

    def submit(self, *args: str) -> str:
        """`luzia PROJECT TASK ...`; the job id it printed."""
        return printed_id(self.cli(*args))

    def control(self, op: str, timeout: float = 3.0, **args: Any) -> Any:
        """One control request; None if the broker did not answer in time."""
        if self._control is None:
            self._control = self.ctx.socket(zmq.DEALER)
            self._control.setsockopt(zmq.LINGER, 0)
            self._control.connect(f"ipc://{self.home}/run/control")
        req = next(self._req)
        request = protocol.Request(req=req, op=op, args=args, protocol=protocol.PROTOCOL)
        self._control.send_multipart(protocol.encode(request))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self._control.poll(int(left * 1000) + 1):
                break
            reply = protocol.decode(self._control.recv_multipart())
            if isinstance(reply, protocol.Reply) and reply.req == req:
                if not reply.ok:
                    raise RuntimeError(f"{op}: {reply.error}")
                return reply.result
        self._reset_control()
        return None

    def _reset_control(self) -> None:
        if self._control is not None:
            self._control.close(0)
            self._control = None

    def ping(self) -> bool:
        return self.control("ping", timeout=0.5) is not None

    def job(self, job_id: str) -> dict[str, Any]:
        return self.control("jobs.get", id=job_id)

    def state(self, job_id: str) -> str | None:
        job = self.job(job_id)
        return job["state"] if job else None

    def agents(self) -> list[dict[str, Any]]:
        status = self.control("status")
        return status["agents"] if status else []

    def live_agents(self) -> set[str]:
        return {a["name"] for a in self.agents() if a["state"] == "live"}


def jobs_json(out: subprocess.CompletedProcess) -> Any:
    return json.loads(out.stdout.decode())


def joined_host(main: LocalFleet, name: str, command: list[str], slots: int = 1,
                extra: str = "") -> LocalFleet:
    """Another host of `main`'s fleet: a LUZIA_HOME of its own beside main's, its agent
    `name` on main's broker running `command` with the subprocess runner (`extra`: more of
    its config, the [agent] section's first), the agent started."""
    run = main.home / "run"
    fleet = LocalFleet(main.home.parent / name, f"""
[endpoints]
agents = "ipc://{run}/agents"
submit = "ipc://{run}/submit"
control = "ipc://{run}/control"
[broker]
heartbeat_interval = 0.1
[agent]
name = "{name}"
slots = {slots}
runner = "subprocess"
command = {json.dumps(command)}
{extra}
""")
    fleet.start_agent(name)
    return fleet


def close_fleet(main: LocalFleet, hosts: list[LocalFleet], busy: list[str]) -> None:
    """The end of a test of joined hosts: the jobs in `busy` cancelled first (agents leave
    their jobs running when they stop), then every host and main closed."""
    if busy:
        main.cli("cancel", *busy)
        wait_for(lambda: all(main.state(i) in ("killed", None) for i in busy), 20)
    for fleet in (*hosts, main):
        fleet.close()
# a live agent on a loaded box can miss a few beats: it counts as dead only after 2 s of
# silence, and its jobs wait the default lost_grace for it (tests of a lost agent set theirs)
FAST = """
[broker]
heartbeat_interval = 0.1
liveness = 20
spool_sweep = 0.2
"""

# a job that sleeps the seconds its task says, or, when its task is a path, runs until the
# test makes that file: a job that must outlast a step of the test, and no longer
SLEEPER = (f'command = ["{PY}", "-c", "import os, sys, time\\na = sys.argv[1] or \'0\'\\n'
           "while a.startswith('/') and not os.path.exists(a): time.sleep(0.05)\\n"
           'time.sleep(0 if a.startswith(\'/\') else float(a))", "{task}"]')


def fleet_config(agent: str = "", scheduler: str = "", broker: str = "") -> str:
    """FAST plus `broker` (more keys of its [broker] section), a scheduler that leaves
    placement to the tests and `agent` as the [agent] section."""
    # a 2-core CI box runs these at 100 % CPU; the ceilings are the scheduler tests' business
    text = FAST + broker + ("\n" if broker else "")
    text += f"[scheduler]\ncpu_ceiling = 1.0\nmemory_ceiling = 1.0\n{scheduler}\n"
    if agent:
        text += f"[agent]\n{agent}\n"
    return text
