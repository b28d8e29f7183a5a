"""`python -S -I spawner.py JOBS_DIR MARK`: the subprocess runner's tracker, one per agent.

The agent sends it job directories, one path a line, over the socket that is its stdin; for
each it reads meta.json (argv, cwd, env: the task text never meets a shell), starts the
command in its own session with output.log as stdout and stderr, and writes its pid into
the job's `process` file. When a command ends it writes the exit status there (in place,
synced) and tells the agent `exited JOB_ID CODE`. It is the commands' parent, so their
exit status is never lost: when the agent goes (stopped, or killed with -9) it still reaps
every command it started and records each end, then exits; the next agent re-adopts those
jobs from their directories.

MARK is a file the agent made before it sent the first path; this process removes it once
the agent's end of the socket is closed and every path sent was read, so the next agent can
tell "never sent" from "not read yet" (luzia/agents/readopt.py).

Started once per agent, not once per job, so it may cost an interpreter's start; it imports
nothing of ours (-I: not even from its own directory), so it runs as a plain script. The
names it shares with the agent are layout.py's; tests/agents/test_spawner.py checks them.
"""

import errno
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading

META, OUTPUT, PROCESS = "meta.json", "output.log", "process"
PID_AT, EXIT_AT = 0, 32
PANE_ENV = ("TERM", "TMUX", "TMUX_PANE")
CANNOT_START = 127


def write_field(job_dir: str, at: int, text: str) -> int:
    """Write one field of the job's `process` file in place, into the room the agent
    reserved when it laid the job out (on a full disk it still fits; a field is written
    once, over spaces, so a reader sees all of it or none); the open descriptor, to sync
    later. layout.PROCESS, as wrap._record writes it."""
    fd = os.open(os.path.join(job_dir, PROCESS), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, text.encode(), at)
    except OSError:
        os.close(fd)
        raise
    return fd


class Syncer:
    """Syncs written exit codes on a thread of its own, so a slow disk delays neither the
    next start nor the agent's news of the end (the agent reads the file, not the disk)."""

    def __init__(self) -> None:
        self.fds: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, fd: int) -> None:
        self.fds.put(fd)

    def close(self) -> None:
        self.fds.put(-1)
        self.thread.join()

    def _run(self) -> None:
        while (fd := self.fds.get()) >= 0:
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)


class Spawner:
    def __init__(self, ctl: socket.socket, mark: str) -> None:
        self.ctl = ctl
        self.mark = mark
        self.reading = True
        self.telling = True
        self.pending = b""
        self.children: dict[int, tuple[subprocess.Popen, str]] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in PANE_ENV}
        self.syncer = Syncer()

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            # it stops when its last command has ended (the agent stops commands); a handler,
            # not SIG_IGN, which the commands would inherit through exec
            signal.signal(sig, lambda *_: None)
        poll = select.poll()
        poll.register(self.ctl.fileno(), select.POLLIN)
        poll.register(wake_r, select.POLLIN)
        while self.reading or self.children:
            for fd, _ in poll.poll(None if self.children or self.reading else 0):
                if fd == wake_r:
                    _drain(wake_r)
                elif self.reading:
                    self.read()
                    if not self.reading:
                        poll.unregister(self.ctl.fileno())
            self.reap()
        self.syncer.close()

    def read(self) -> None:
        try:
            data = self.ctl.recv(65536)
        except OSError:
            data = b""
        if not data:                    # the agent is gone: finish what it sent, take no more
            self.reading = False
            _unlink(self.mark)
            return
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            if line:
                self.spawn(os.fsdecode(line))

    def spawn(self, job_dir: str) -> None:
        try:
            out = os.open(os.path.join(job_dir, OUTPUT), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                          0o644)
        except OSError as exc:
            self.ended(job_dir, CANNOT_START, f"cannot open its output.log: {exc}")
            return
        try:
            argv, cwd, env = self.command(job_dir)
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, start_new_session=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _say(out, f"luzia: cannot start the job's command: {exc}\n")
            os.close(out)
            self.ended(job_dir, CANNOT_START)
            return
        os.close(out)
        self.children[proc.pid] = (proc, job_dir)
        try:
            os.close(write_field(job_dir, PID_AT, f"pid {proc.pid}\n"))
        except OSError as exc:
            self.warn(f"job {os.path.basename(job_dir)}: cannot write its pid: {exc}")

    def command(self, job_dir: str) -> tuple[list[str], str, dict[str, str]]:
        with open(os.path.join(job_dir, META), "rb") as f:
            meta = json.load(f)
        argv, cwd = meta["argv"], meta["cwd"]
        if not argv or not all(isinstance(a, str) for a in argv) or not isinstance(cwd, str):
            raise ValueError("meta.json: argv must be a non-empty list of strings")
        if not os.path.isdir(cwd):
            raise FileNotFoundError(f"work directory {cwd} does not exist")
        return argv, cwd, {**self.env, **meta["env"]}

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc, job_dir = self.children.pop(pid, (None, ""))
            if proc is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code          # reaped here: subprocess must not wait for it again
            self.ended(job_dir, 128 - code if code < 0 else code)

    def ended(self, job_dir: str, code: int, why: str = "") -> None:
        job_id = os.path.basename(job_dir)
        if why:
            self.warn(f"job {job_id}: {why}")
        try:
            self.syncer.put(write_field(job_dir, EXIT_AT, f"exit {code}\n"))
        except OSError as exc:
            self.warn(f"job {job_id}: cannot write its exit code {code}: {exc}")
        self.tell(f"exited {job_id} {code}\n")

    def tell(self, line: str) -> None:
        """News for the agent; dropped when it is gone or not reading (it also looks at the
        job's files on its own every turn)."""
        if not self.telling:
            return
        try:
            self.ctl.send(line.encode(), socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        except OSError:
            self.telling = False

    def warn(self, text: str) -> None:
        try:
            print(f"luzia spawner {os.getpid()}: {text}", file=sys.stderr, flush=True)
        except OSError:                  # the agent's log went with the agent
            pass


def _say(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    except OSError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: spawner.py JOBS_DIR MARK (stdin: the agent's socket)", file=sys.stderr)
        return 2
    ctl = socket.socket(fileno=0)
    Spawner(ctl, argv[1]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
