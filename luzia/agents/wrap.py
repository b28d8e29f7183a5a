"""`python -m luzia.agents.wrap JOB_DIR [--pty]`: run a job's command and record its end.

Reads argv, cwd and env from meta.json (so the task text never passes through a shell),
writes `pid`, copies all output into output.log (with --pty: through a pseudo-terminal,
also to our stdout, the tmux pane, so a person attached sees it and can type), forwards
SIGTERM/SIGINT/SIGHUP to the command's process group, and writes `exit_code` atomically.
A command with an output format (meta.json's `format`, docs/AGENTS.md) has its output read
through the format's adapter (luzia/agents/adapters/stream.py, imported only then).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import tty
from pathlib import Path

from luzia import layout, snapshots


def write_atomic(path: Path, text: str) -> None:
    """Kept here rather than imported: the wrapper starts once per job and must start fast."""
    tmp = path.with_name(layout.atomic_tmp_name(path.name))
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
    log = open(job_dir / layout.OUTPUT, "ab", buffering=0)
    try:
        meta = json.loads((job_dir / layout.META).read_text())
        argv, cwd, env = list(meta["argv"]), str(meta["cwd"]), {**os.environ, **meta["env"]}
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a non-empty list of strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.write(f"luzia: unreadable {job_dir / layout.META}: {exc}\n".encode())
        write_atomic(job_dir / layout.EXIT_CODE, "127\n")
        return 0
    try:
        if not os.path.isdir(cwd):
            raise FileNotFoundError(f"work directory {cwd} does not exist")
        snapshots.record_for_job(meta, job_dir.name, "before", log)
        tee = _tee(meta, job_dir, log, use_pty)
        try:
            code = run_pty(argv, cwd, env, log, job_dir, tee) if use_pty else \
                run_plain(argv, cwd, env, log, job_dir, tee)
        finally:
            if tee is not None:
                tee.close()
        snapshots.record_for_job(meta, job_dir.name, "after", log)
    except OSError as exc:
        log.write(f"luzia: cannot start {argv[0]!r}: {exc}\n".encode())
        code = 127
    write_atomic(job_dir / layout.EXIT_CODE, f"{code}\n")
    return 0


def _tee(meta: dict, job_dir: Path, log, pane: bool):
    """The output adapter's tee when the command declares a format, else None."""
    fmt = meta.get("format") or "none"
    if fmt == "none":
        return None
    from luzia.agents.adapters.stream import Tee
    return Tee(job_dir, fmt, log, pane, write_atomic)


def _status(returncode: int) -> int:
    """A shell's convention: death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def run_plain(argv, cwd, env, log, job_dir: Path, tee=None) -> int:
    """No terminal: the command's stdout and stderr go straight into output.log (through
    the tee when it has one)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=log if tee is None else subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    write_atomic(job_dir / layout.PID, f"{proc.pid}\n")
    _forward_signals(proc.pid)
    if tee is not None and proc.stdout is not None:
        fd = proc.stdout.fileno()
        while data := os.read(fd, 65536):     # PEP 475: a forwarded signal does not cut it
            tee.write(data)
    return _status(proc.wait())


def run_pty(argv, cwd, env, log, job_dir: Path, tee=None) -> int:
    """In a pseudo-terminal (a TUI works): output to output.log and to our stdout (the tmux
    pane), the pane's keystrokes to the command."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec the command in the new pty (pty.fork made it a session leader)
        try:
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"luzia: cannot start {argv[0]!r}: {exc}\n".encode())
        os._exit(127)
    write_atomic(job_dir / layout.PID, f"{pid}\n")
    _forward_signals(pid)
    pane = sys.stdin.isatty()
    saved = None
    if pane:
        _copy_size(fd)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_size(fd))
        saved = termios.tcgetattr(0)
        tty.setraw(0)   # keys go to the command as typed; its own pty echoes and edits
    try:
        _pump(fd, log, pane, tee)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
    _, status = os.waitpid(pid, 0)
    return _status(os.waitstatus_to_exitcode(status))


def _pump(fd: int, log, pane: bool, tee=None) -> None:
    """Copy the command's output until its pty closes (to output.log and the pane, or to
    the tee that shows its readable form there), and the pane's input to it."""
    reading_pane = pane
    while True:
        fds = [fd] + ([0] if reading_pane else [])
        ready, _, _ = select.select(fds, [], [])
        if fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError as exc:   # EIO: every holder of the pty's other end has gone
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                return
            if tee is not None:
                tee.write(data)
            else:
                log.write(data)
                try:
                    os.write(1, data)
                except OSError:      # the pane went away; output.log still gets everything
                    pass
        if 0 in ready:
            data = os.read(0, 4096)
            if data:
                os.write(fd, data)
            else:
                reading_pane = False


def _copy_size(fd: int) -> None:
    """Give the command's terminal the pane's size."""
    try:
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _forward_signals(pid: int) -> None:
    """Stopping the wrapper (tmux kill-session sends SIGHUP) stops the command's group."""
    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)


if __name__ == "__main__":
    sys.exit(main())
