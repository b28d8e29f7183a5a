"""A disk that fills up, for real (issue 17, item 5): a small tmpfs mounted for the test (the
tests run as root), filled with a file until writes fail with ENOSPC, then emptied.

RLIMIT_FSIZE (test_state_dir.py) stands in for a full disk at a process's start, but it is a
per-process limit: it cannot fill the disk under an agent and its wrappers at once, nor be
lifted while they run. A tmpfs can; without the right to mount one the tests are skipped.

- The CLI's spool on a full disk: exit 73 in one line, no `.ID.tmp` left behind.
- An agent whose jobs directory fills: a job already running ends with its own exit code
  (reserved at its start), not "process vanished"; a job assigned meanwhile never started,
  which is said and not counted (it runs once, later); the agent does not crash (same pid)
  but takes no new work and says why (`luzia agents status`, `luzia top`); it takes work
  again by itself once there is space."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from luzia.jobstatus import read_pid
from tests.fleet import PY, fleet_config
from tests.helpers import wait_for


@pytest.fixture
def small_disk(short_tmp):
    """Mount a 4 MiB tmpfs; `fill()` it until ENOSPC, `free()` it again."""
    mount = short_tmp / "disk"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
                         capture_output=True)
    if out.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.decode().strip()}")
    yield Disk(mount)
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


class Disk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        for n in range(64):                 # the last pages, with small files
            try:
                (self.path / f"crumb{n}").write_bytes(b"\0" * 1024)
            except OSError:
                break

    def free(self) -> None:
        self.filler.unlink()
        for crumb in self.path.glob("crumb*"):
            crumb.unlink()


def test_the_cli_on_a_full_spool_disk_says_so_and_leaves_no_temp_file(small_disk, short_tmp):
    home = short_tmp / "h"
    home.mkdir()
    config = home / "luzia.toml"
    config.write_text(f'home = "{home}"\n')
    (home / "spool").symlink_to(small_disk.path)
    small_disk.fill()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUZIA_")}
    env["LUZIA_CONFIG"] = str(config)
    for _ in range(3):
        out = subprocess.run([PY, "-m", "luzia.cli", "demo", "hello"], env=env,
                             capture_output=True, timeout=60)
        err = out.stderr.decode()
        assert out.returncode == 73, err
        assert err.count("\n") == 1 and "spool" in err, err
    assert not list(small_disk.path.glob(".*.tmp")), list(small_disk.path.iterdir())


RUNS = "{job_dir}/../../runs.log"


@pytest.mark.long
@pytest.mark.parametrize("runner", ["tmux", "subprocess"])   # a wrapper; the spawner
def test_an_agent_on_a_full_disk_degrades_and_recovers_running_nothing_twice(make_fleet,
                                                                              small_disk, runner):
    gate = small_disk.path.parent / f"go-{uuid.uuid4().hex[:6]}"
    command = (f'command = ["/bin/sh", "-c", "echo $LUZIA_JOB_ID >> {small_disk.path.parent}/runs;'
               f' while [ ! -e {gate} ]; do sleep 0.1; done; echo done; exit 0", "sh", "{{task}}"]')
    # (`exit 0`: without a pane, the echo into a full output.log fails, and with it the shell)
    fleet = make_fleet(fleet_config(f'runner = "{runner}"\ngit_snapshots = false\n{command}',
                                    "per_user = false"))
    fleet.env["LUZIA_JOBS_DIR"] = str(small_disk.path / "jobs")
    fleet.start_broker()
    agent = fleet.start_agent("a")
    wait_for(lambda: fleet.live_agents() == {"a"}, 30)
    first = fleet.submit("demo", "one")
    wait_for(lambda: fleet.state(first) == "running", 60)
    wait_for(lambda: read_pid(small_disk.path / "jobs" / first), 30)

    small_disk.fill()
    second = fleet.submit("demo", "two")
    health: Any = lambda: next((a for a in fleet.control("agents.status") or []  # noqa: E731
                           if a["name"] == "a"), {})
    wait_for(lambda: health().get("health") == "degraded", 60, message="the agent degrades")
    assert "disk full" in health()["degraded"]
    status = fleet.cli("agents", "status")
    assert "degraded" in status.stdout.decode() and "disk full" in status.stdout.decode()
    top = fleet.cli("top", "--once")
    assert "takes no new work: disk full" in top.stdout.decode(), top.stdout.decode()
    job = fleet.job(second)
    assert job["state"] == "pending", job
    assert any(a["reason"].startswith("never started") for a in job["attempts"]), job

    gate.touch()                             # the running job ends while the disk is full
    wait_for(lambda: fleet.state(first) == "completed", 60,
             message="the running job's exit code was kept")
    assert fleet.job(first)["exit_code"] == 0

    small_disk.free()
    wait_for(lambda: fleet.state(second) == "completed", 90, message="work again after space")
    assert health().get("health") in ("ok", "full")
    runs = (small_disk.path.parent / "runs").read_text().split()
    assert sorted(runs) == sorted([first, second]), runs      # each ran once
    assert agent.poll() is None and health()["pid"] == agent.pid
