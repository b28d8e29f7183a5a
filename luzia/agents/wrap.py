"""`python -m luzia.agents.wrap JOB_DIR [--pty]`: run a job's command and record its end.
Also runs as a file, `python -S -I .../wrap.py JOB_DIR [--pty]`: no site-packages to load,
for a plain job (runners.WrapperNeeded), whose steps here need none. And as a warm pane,
`wrap.py --idle SOCKET SESSION` (luzia/agents/warm.py): started before its job, it waits on
the agent's socket for the job directory, then runs it as `wrap.py JOB_DIR --pty` would.

Reads argv, cwd and env from meta.json (so the task text never passes through a shell),
writes the command's pid into the job's `process` file, copies all output into output.log
(with --pty: through a pseudo-terminal, also to our stdout, the tmux pane, so a person
attached sees it and can type), forwards
SIGTERM/SIGINT/SIGHUP to the command's process group, and writes the exit status into
`process` (in place, synced).
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
import sys
import termios
import tty
from pathlib import Path

if __package__ in (None, ""):   # run as a file: our package is three levels up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from luzia import layout  # noqa: E402  (after the path a file run needs)


def write_atomic(path: Path, text: str, sync: bool = True) -> None:
    """Write, fsync (with `sync`), rename. Kept here rather than imported: the wrapper
    starts once per job and must start fast."""
    tmp = path.with_name(layout.atomic_tmp_name(path.name))
    data = text.encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def record_pid(job_dir: Path, pid: int) -> None:
    """The command's pid into the job's `process` file. Not synced (as the spawner's):
    after a power cut no command runs, and no pid reads as "never started", which the
    broker requeues."""
    _record(job_dir, layout.PID_AT, f"pid {pid}\n", sync=False)


def record_exit(job_dir: Path, code: int) -> None:
    """The exit status into the job's `process` file, synced: the one thing only this host
    knows."""
    _record(job_dir, layout.EXIT_AT, f"exit {code}\n", sync=True)


def _record(job_dir: Path, at: int, text: str, sync: bool) -> None:
    """One field of `process`, written in place into the room the agent reserved when it
    laid out the job: on a disk that filled meanwhile it still fits (issue 17); written
    once over spaces, so a reader sees all of it or none (luzia/jobstatus.py reads it)."""
    fd = os.open(job_dir / layout.PROCESS, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, text.encode(), at)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


class Output:
    """output.log, written as long as the disk lets us: a full disk loses output (the pane
    still shows it), never the job or its exit code."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "ab", buffering=0)
        self.lost = 0

    def write(self, data: bytes) -> None:
        if self.lost:
            self.lost += len(data)
            return
        try:
            self.file.write(data)
        except OSError:
            self.lost += len(data)

    def fileno(self) -> int:
        return self.file.fileno()


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--exec"] and len(args) > 3 and args[2] == "--":
        return exec_with(Path(args[1]), args[3:])
    if args[:1] == ["--idle"] and len(args) == 3:
        handed = wait_for_job(args[1], args[2])
        return main([handed, "--pty"]) if handed else 0
    if not args:
        print("usage: python -m luzia.agents.wrap JOB_DIR [--pty]", file=sys.stderr)
        return 2
    job_dir = Path(args[0])
    use_pty = "--pty" in args[1:]
    log = Output(job_dir / layout.OUTPUT)
    try:
        meta = json.loads((job_dir / layout.META).read_text())
        argv, cwd = list(meta["argv"]), str(meta["cwd"])
        env = {**environment(job_dir / layout.ENV, use_pty), **meta["env"]}
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a non-empty list of strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.write(f"luzia: unreadable {job_dir / layout.META}: {exc}\n".encode())
        record_exit(job_dir, 127)
        return 0
    ws = meta.get("workspace")
    ws_failed: tuple[type[Exception], ...] = ()
    if ws:          # its own git worktree (docs/WORKSPACES.md); imported only for such a job
        from luzia.agents import workspace
        ws_failed = (workspace.WorkspaceError,)
    try:
        if ws:
            workspace.prepare(ws, str(job_dir), env, log, str(job_dir / layout.PID),
                              str(meta.get("host", "")))
        if not os.path.isdir(cwd):
            raise FileNotFoundError(f"work directory {cwd} does not exist")
        from luzia import snapshots  # here: a plain job's wrapper starts without it
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
    except ws_failed as exc:    # said in the log already; nothing of it is left
        code = int(getattr(exc, "code", 125))
    if ws:
        workspace.finish(ws, str(meta["job"].get("task", "")), code,
                         workspace.stop_reason(str(job_dir)), log)
    record_exit(job_dir, code)
    return 0


def _tee(meta: dict, job_dir: Path, log, pane: bool):
    """The output adapter's tee when the command declares a format, else None."""
    fmt = meta.get("format") or "none"
    if fmt == "none":
        return None
    from luzia.agents.adapters.stream import Tee
    return Tee(job_dir, fmt, log, pane, write_atomic)


def wait_for_job(address: str, session: str) -> str:
    """`wrap --idle SOCKET SESSION`: a warm pane (luzia/agents/warm.py). Say our session's
    name on the agent's socket and wait for a job directory's path; "" when the agent went
    away first (its end closed: a stop, a crash), and the session ends with us."""
    import socket

    from luzia import snapshots  # noqa: F401  (loaded now: every job's wrapper imports it)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    data = b""
    try:
        sock.connect(address)
        sock.sendall(session.encode() + b"\n")
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                return ""
            data += chunk
    except OSError:
        return ""
    finally:
        sock.close()
    return os.fsdecode(data[:-1])


def exec_with(env_file: Path, argv: list[str]) -> int:
    """`wrap --exec ENV_FILE -- ARGV`: become ARGV with the environment in ENV_FILE (and the
    pane's terminal variables): how the interactive runner starts a slot's REPL with its
    agent's environment rather than the tmux server's."""
    try:
        env = environment(env_file, pane=True)
        os.execvpe(argv[0], argv, env)
    except (OSError, ValueError) as exc:
        print(f"luzia: cannot start {argv[0]!r}: {exc}", file=sys.stderr)
    return 127


def environment(path: Path, pane: bool) -> dict[str, str]:
    """The agent's environment as it laid out the job (env.json, removed once read: it may
    hold secrets), never the tmux server's; in a pane (`pane`) the pane's terminal
    variables. A job laid out by an older agent has no env.json: our own environment."""
    try:
        with open(path, "rb") as f:
            env = json.load(f)
        os.unlink(path)
    except FileNotFoundError:
        return dict(os.environ)
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError(f"{path} is not a map of strings")
    if pane:
        env.update({k: os.environ[k] for k in layout.PANE_ENV if k in os.environ})
    return env


def _status(returncode: int) -> int:
    """A shell's convention: death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def run_plain(argv, cwd, env, log, job_dir: Path, tee=None) -> int:
    """No terminal: the command's stdout and stderr go straight into output.log (through
    the tee when it has one)."""
    import subprocess  # here: a pane's wrapper has no use for it
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=log if tee is None else subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    record_pid(job_dir, proc.pid)
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
    record_pid(job_dir, pid)
    _forward_signals(pid)
    try:
        os.chdir(cwd)     # the pane's current path is the job's (a warm pane started elsewhere)
    except OSError:
        pass
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
            try:
                termios.tcsetattr(0, termios.TCSAFLUSH, saved)
            except (termios.error, OSError):   # the pane is gone (its session was killed)
                pass
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
            try:
                data = os.read(0, 4096)
            except OSError:          # the pane hung up: the command goes on without its keys
                data = b""
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
