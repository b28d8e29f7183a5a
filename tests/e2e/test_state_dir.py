"""A state directory that cannot be used at start: one clear line naming the path, exit 73.

Tests run as root here, so a chmod'ed directory would still be writable: a read-only place
is /proc (no directory can be made there), a path through a regular file cannot be a
directory, and a full disk is simulated with RLIMIT_FSIZE (as `ulimit -f`), under which a
write fails with EFBIG the way it fails with ENOSPC on a full disk."""

from __future__ import annotations

import os
import resource
import signal
import subprocess

import pytest

from tests.fleet import PY

ENTRY = {"broker": "luzia.broker", "agent": "luzia.agents"}


def start(short_tmp, home: str, component: str, file_limit: int | None = None):
    config = short_tmp / "luzia.toml"
    config.write_text(f'home = "{home}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUZIA_")}
    env["LUZIA_CONFIG"] = str(config)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    return subprocess.run([PY, "-m", ENTRY[component]], env=env, capture_output=True, timeout=30,
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
