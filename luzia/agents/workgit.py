"""git as a job's workspace runs it (luzia/agents/workspace.py): unattended (no prompt, no
hooks, a timeout), a failure one `WorkspaceError` line naming git's own cause, a full disk
said as such, and one writer per repository on this host. Standard library only: the
wrapper imports it per job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator

GIT_TIMEOUT = 300.0          # seconds for one git command (a fetch, a worktree's checkout)
PUSH_TIMEOUT = 120.0
SETUP_FAILED = 125           # the job's exit code when its workspace could not be made
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")     # a user's hook must not block our commits


class WorkspaceError(Exception):
    """The workspace could not be made (or ended): one line; `code` is the job's exit code."""

    def __init__(self, message: str, code: int = SETUP_FAILED) -> None:
        super().__init__(message)
        self.code = code


def git_env() -> dict[str, str]:
    """Never prompt: a job's git runs unattended (a missing credential is an error)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o ConnectTimeout=20"
    return env


def git(cwd: str, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT,
        env: dict[str, str] | None = None, what: str = "") -> subprocess.CompletedProcess:
    """git in `cwd`, output captured; a failure raises WorkspaceError naming git's last line."""
    try:
        out = subprocess.run(["git", *NO_HOOKS, "-C", cwd, *args], capture_output=True,
                             stdin=subprocess.DEVNULL, timeout=timeout,
                             env={**git_env(), **(env or {})})
    except subprocess.TimeoutExpired:
        raise WorkspaceError(f"{what or 'git ' + args[0]}: no answer in {timeout:g}s") from None
    except OSError as exc:
        raise WorkspaceError(f"{what or 'git ' + args[0]}: {exc.strerror or exc}") from None
    if check and out.returncode:
        raise WorkspaceError(f"{what or 'git ' + args[0]}: {last_line(out.stderr, out.returncode)}")
    return out


def last_line(stderr: bytes, code: int) -> str:
    """The cause git gave: its first `error:` (what went wrong), else its last `fatal:`."""
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    fatal = [ln for ln in lines if ln.startswith("fatal:")]
    line = errors[0] if errors else (fatal or lines or [f"exit {code}"])[-1]
    return line.removeprefix("fatal: ").removeprefix("error: ")[:300]


def disk_note(path: str) -> str:
    """" (no space left on device: ...)" when the file system of `path` is (nearly) full:
    git says only that it could not write a file."""
    try:
        st = os.statvfs(path)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    if free >= 1 << 20 and st.f_favail:
        return ""
    return f" (no space left on device: {free // 1024} kB free in {path})"


def rev(cwd: str, name: str) -> str:
    """The commit `name` names in `cwd`, or "" (never an option: --end-of-options)."""
    out = git(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}",
              check=False)
    return out.stdout.decode().strip() if out.returncode == 0 else ""


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """One git writer per repository on this host (fetches and worktree changes collide)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
