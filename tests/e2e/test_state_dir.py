"""A state directory that cannot be used at start: one clear line naming the path, exit 73.

Tests run as root here, so a chmod'ed directory would still be writable: a read-only place
is /proc (no directory can be made there), a path through a regular file cannot be a
directory, and a full disk is simulated with RLIMIT_FSIZE (as `ulimit -f`), under which a
write fails with EFBIG the way it fails with ENOSPC on a full disk."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess

import pytest

from tests.fleet import PY

ENTRY = {"broker": "luzia.broker", "agent": "luzia.agents", "supervisor": "luzia.supervisor",
         "cli": "luzia.cli"}


def start(short_tmp, home: str, component: str, file_limit: int | None = None,
          args: tuple[str, ...] = ()):
    config = short_tmp / "luzia.toml"
    config.write_text(f'home = "{home}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUZIA_")}
    env["LUZIA_CONFIG"] = str(config)

    def limit() -> None:
        assert file_limit is not None
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    return subprocess.run([PY, "-m", ENTRY[component], *args], env=env, capture_output=True, timeout=30,
                          preexec_fn=limit if file_limit is not None else None)


def one_line_naming(out, path: str) -> str:
    err = out.stderr.decode()
    assert out.returncode == 73, err
    assert err.count("\n") == 1 and path in err, err
    return err


@pytest.mark.parametrize("component", ["broker", "agent"])
def test_read_only_state_dir_is_one_line_naming_it(short_tmp, component):
    one_line_naming(start(short_tmp, "/proc/luzia", component), "/proc/luzia")


@pytest.mark.parametrize("component", ["broker", "agent"])
def test_state_dir_under_a_file_is_one_line_naming_it(short_tmp, component):
    (short_tmp / "plain").write_text("not a directory")
    home = str(short_tmp / "plain" / "h")
    one_line_naming(start(short_tmp, home, component), home)


@pytest.mark.parametrize("limit, what", [(0, "broker.lock"), (4096, "luzia.db")])
def test_full_disk_at_broker_start_is_one_line_naming_the_file(short_tmp, limit, what):
    home = short_tmp / "h"
    err = one_line_naming(start(short_tmp, str(home), "broker", file_limit=limit), str(home))
    assert what in err


@pytest.mark.parametrize("component", ["cli", "broker", "agent", "supervisor"])
@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o2775])
def test_a_shared_directory_as_home_is_refused_and_keeps_its_mode(short_tmp, component, mode):
    """LUZIA_HOME=/tmp once took /tmp's sticky bit (chmod 0700). A directory other users may
    write is refused in one line and left exactly as it was; group-writable counts only when
    it belongs to someone else (here: uid 65534)."""
    shared = short_tmp / "shared"
    shared.mkdir()
    if mode & 0o020 and not mode & 0o002:
        os.chown(shared, 65534, -1)
    os.chmod(shared, mode)
    args = ("demo", "hello") if component == "cli" else ()
    err = one_line_naming(start(short_tmp, str(shared), component, args=args), str(shared))
    assert "other users" in err
    assert stat.S_IMODE(shared.stat().st_mode) == mode and not os.listdir(shared)


def test_an_existing_home_keeps_its_mode_and_what_luzia_makes_in_it_is_private(short_tmp):
    mine = short_tmp / "mine"
    mine.mkdir()
    os.chmod(mine, 0o2770)       # ours, group-writable (a user private group): fine, not changed
    out = start(short_tmp, str(mine), "cli", args=("demo", "hello"))
    assert out.returncode == 0, out.stderr.decode()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o2770
    assert stat.S_IMODE((mine / "spool").stat().st_mode) == 0o700
    fresh = short_tmp / "new" / "home"
    out = start(short_tmp, str(fresh), "cli", args=("demo", "hello"))
    assert out.returncode == 0, out.stderr.decode()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
