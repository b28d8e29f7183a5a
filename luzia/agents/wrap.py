"""`python -m luzia.agents.wrap JOB_DIR [--pty]`: run a job's command and record its end.

Reads argv, cwd and env from meta.json (so the task text never passes through a shell),
writes `pid`, copies all output into output.log (with --pty: through a pseudo-terminal,
also to our stdout, the tmux pane, so a person attached sees it and can type), forwards
SIGTERM/SIGINT/SIGHUP to the command's process group, and writes `exit_code` atomically.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path



def write_atomic(path: Path, text: str) -> None:
    """Kept here rather than imported: the wrapper starts once per job and must start fast."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if not args:
        print("usage: python -m luzia.agents.wrap JOB_DIR [--pty]", file=sys.stderr)
        return 2
    job_dir = Path(args[0])
    use_pty = "--pty" in args[1:]
    meta = json.loads((job_dir / "meta.json").read_text())
    env = {**os.environ, **meta["env"]}
    log = open(job_dir / "output.log", "ab", buffering=0)
    try:
        if not os.path.isdir(meta["cwd"]):
            raise FileNotFoundError(f"work directory {meta['cwd']} does not exist")
        code = run_pty(meta["argv"], meta["cwd"], env, log, job_dir) if use_pty else \
            run_plain(meta["argv"], meta["cwd"], env, log, job_dir)
    except (FileNotFoundError, PermissionError, OSError) as exc:
        log.write(f"luzia: cannot start {meta['argv'][:1]}: {exc}\n".encode())
        code = 127
    write_atomic(job_dir / "exit_code", f"{code}\n")
    return 0


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run_plain(argv, cwd, env, log, job_dir: Path) -> int:
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    write_atomic(job_dir / "pid", f"{proc.pid}\n")
    _forward_signals(proc.pid)
    return _status(proc.wait())


def run_pty(argv, cwd, env, log, job_dir: Path) -> int:
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec the command in the new pty (its own session)
        try:
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"luzia: cannot start {argv[0]!r}: {exc}\n".encode())
            os._exit(127)
    write_atomic(job_dir / "pid", f"{pid}\n")
    _forward_signals(pid)
    stdin_open = sys.stdin.isatty()
    import select
    while True:
        fds = [fd] + ([0] if stdin_open else [])
        try:
            ready, _, _ = select.select(fds, [], [])
        except InterruptedError:
            continue
        if fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            log.write(data)
            try:
                os.write(1, data)
            except OSError:
                pass
        if 0 in ready:
            data = os.read(0, 4096)
            if data:
                os.write(fd, data)
            else:
                stdin_open = False
    _, status = os.waitpid(pid, 0)
    return _status(os.waitstatus_to_exitcode(status))


def _forward_signals(pid: int) -> None:
    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)


if __name__ == "__main__":
    sys.exit(main())
