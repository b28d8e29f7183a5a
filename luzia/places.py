"""Where Luzia's processes keep their state and listen: a private state directory (0700
when Luzia makes it, refused when other users may write it) and endpoints, checked (ipc://
paths short enough for a Unix socket) and told local (ipc, or tcp on loopback) or not.
The config (luzia/config.py) checks its endpoints with these; every component that makes a
directory or binds a socket asks them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from luzia.errors import ConfigError, StateDirError

IPC_PATH_MAX = 100  # a Unix socket path must fit in sun_path (108 bytes with the NUL)


def check_endpoint(endpoint: str, where: str) -> None:
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("ipc", "tcp"):
        raise ConfigError(f"{where}: {endpoint!r} is not an ipc:// or tcp:// endpoint")
    if scheme == "ipc" and len(rest.encode()) > IPC_PATH_MAX:
        raise ConfigError(f"{where}: socket path {rest!r} is longer than {IPC_PATH_MAX} bytes; "
                          "set LUZIA_HOME to a shorter directory")


def is_local(endpoint: str) -> bool:
    """True for endpoints that only this host can reach: ipc, and tcp on loopback."""
    scheme, _, rest = endpoint.partition("://")
    if scheme == "ipc":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700 for its last part; refuse if not writable.
    An existing directory keeps its mode (only a directory made here is chmod'ed: LUZIA_HOME
    pointed at /tmp must not take its sticky bit), and one other users may write is refused:
    they could put their own files where Luzia expects its own (decision 61)."""
    try:
        path.mkdir(parents=True)
        os.chmod(path, 0o700)
    except FileExistsError:
        _refuse_shared(path)
    except OSError as exc:
        raise StateDirError(f"cannot use state directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateDirError(f"state directory {path} is not writable")
    return path


def _refuse_shared(path: Path) -> None:
    """StateDirError for an existing `path` that is not a directory, or that users other
    than its owner may write: world-writable, or group-writable and not ours."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StateDirError(f"cannot use state directory {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"cannot use state directory {path}: not a directory")
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWOTH or (mode & stat.S_IWGRP and st.st_uid != os.geteuid()):
        raise StateDirError(f"refusing state directory {path}: other users may write it (mode "
                            f"{mode:04o}); point LUZIA_HOME at a directory of Luzia's own, e.g. "
                            f"{path / 'luzia'} (made 0700; an existing one keeps its mode)")


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file, or a directory's entries (a rename or a new file in it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
