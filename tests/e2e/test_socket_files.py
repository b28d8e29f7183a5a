"""The ipc:// socket files of a running fleet deleted under it (a tmp cleaner, issue 17 item
9): every process that listens binds its files again within a second or two, so queries,
submissions, live events and the supervisor's own control socket work again, and nothing is
restarted — the connections already open (the agent's to the broker, the supervisor's
pings) never noticed."""

from __future__ import annotations

import json
import os
import stat

import pytest
import zmq

from luzia import protocol
from tests.e2e.test_curve import FAST
from tests.fleet import PY, LocalFleet
from tests.helpers import wait_for

FLEET = FAST + """
[supervisor]
ping_interval = 0.5
[agent]
name = "a1"
runner = "subprocess"
[web]
enabled = true
port = 0
"""
FILES = {"submit", "agents", "control", "events", "supervisor", "agent-a1", "web"}


def sockets(run) -> set[str]:
    return {p.name for p in run.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)}


@pytest.mark.timeout(180)
def test_deleted_socket_files_are_bound_again_and_nothing_restarts(short_tmp):
    fleet = LocalFleet(short_tmp / "f", FLEET)
    run = fleet.home / "run"

    def status() -> dict:
        out = fleet.cli("supervisor", "status", "--json")
        return {r["name"]: r for r in json.loads(out.stdout or "[]")} if out.returncode == 0 else {}
    try:
        fleet.start("supervisor", [PY, "-m", "luzia.supervisor"])
        wait_for(lambda: [r["state"] for r in status().values()] == ["running"] * 3, 60,
                 message="broker, agent and web running")
        wait_for(lambda: "a1" in fleet.live_agents(), 30)
        before = fleet.submit("demo", "before the cleaner")
        wait_for(lambda: fleet.state(before) == "completed", 30)
        pids = {name: row["pid"] for name, row in status().items()}
        assert sockets(run) >= FILES

        for name in sockets(run):            # what a tmp cleaner does
            os.unlink(run / name)

        wait_for(lambda: sockets(run) >= FILES, 20, message="every socket file is back")
        assert fleet.cli("jobs", before, "--json").returncode == 0
        assert status() and {n: r["pid"] for n, r in status().items()} == pids
        assert all(r["restarts"] == 0 for r in status().values())
        for name in ("submit", "agents", "control", "events"):    # the broker's stay private
            assert stat.S_IMODE((run / name).stat().st_mode) == 0o600

        events = fleet.ctx.socket(zmq.SUB)         # live events reach a new subscriber
        events.setsockopt(zmq.LINGER, 0)
        events.setsockopt(zmq.SUBSCRIBE, b"job.")
        events.connect(f"ipc://{run}/events")
        try:
            submitted = fleet.cli("demo", "after the cleaner")
            assert b"not reachable" not in submitted.stderr      # pushed, not only spooled
            after = submitted.stdout.decode().strip().rsplit(":", 1)[1]
            wait_for(lambda: fleet.state(after) == "completed", 30)
            assert events.poll(10_000)
            assert protocol.decode_event(events.recv_multipart()).topic.startswith("job.")
        finally:
            events.close(0)
        assert {n: r["pid"] for n, r in status().items()} == pids
    finally:
        fleet.close()
