"""The agent's one tmux client: every runner and the REPL watcher reach tmux through it.

Every call is `[*prefix, "tmux", "-L", socket, ...]` run as a subprocess with a timeout, so
with a prefix such as `["docker", "exec", "-i", "NAME"]` the sessions live inside a container
(seed 001's DockerTmuxController), and a hung tmux cannot stop the agent's loop. Two races of
a tmux server are handled here, once: a session started just as the server exits (its last
session ended) is started again, and a listing that failed for another reason than "no
server" is reported as unknown, never as "no sessions" (which would read as every job gone).

For the REPLs: text is sent with `send-keys -l` (literal: a task saying "C-c" types those
three characters; several lines are pasted), a delay, then Enter, because TUIs drop an
Enter that arrives with the text. The waits poll the pane: `wait_for_prompt` (a regex on the
last non-blank line), `wait_for_idle` (the content's hash unchanged for N seconds) and
`wait_for_shell_prompt`. Imports nothing of ours: the REPL watcher starts once per job.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence

SHELL_PROMPT = r"[$#%>]\s*$"   # bash, zsh, sh, root: the line ends with the prompt character
POLL = 0.1                     # seconds between looks at the pane
NO_SESSION, UNKNOWN = -1, -2  # pane_dead(): no such session; dead with no recorded status
HISTORY_LIMIT = 50000          # scrollback lines kept per slot pane (the job's output is diffed from it)
START_TRIES = 3                # a session start that met a server on its way out is tried again
START_TIMEOUT = 60.0           # seconds a session start may take (other calls: the controller's timeout)
# what a client prints when its server went away under it (it was exiting: it had no sessions)
SERVER_GONE = ("server exited", "lost server")
# what a client prints when no server runs on the socket (none, or a dead one's socket file)
NO_SERVER = ("no server running", "No such file or directory", "Connection refused")


class TmuxError(RuntimeError):
    """tmux (or the prefix, e.g. docker exec) failed."""


class TmuxController:
    """One tmux server (`-L socket`), reached through an optional command prefix."""

    def __init__(self, socket: str, prefix: Sequence[str] = (), timeout: float = 10.0) -> None:
        self.base = [*prefix, "tmux", "-L", socket]
        self.timeout = timeout

    def run(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        try:
            out = subprocess.run([*self.base, *args], capture_output=True, text=True,
                                 timeout=timeout or self.timeout, input=input,
                                 stdin=None if input is not None else subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TmuxError(f"{shlex.join(self.base)} {args[0]}: {exc}") from None
        if check and out.returncode:
            raise TmuxError(f"tmux {args[0]} failed: {out.stderr.strip() or out.returncode}")
        return out

    # sessions -----------------------------------------------------------------------
    def start_session(self, name: str, argv: Sequence[str], width: int = 200,
                      height: int = 50, cwd: str = "") -> None:
        """A detached session running `argv` (shell-quoted: tmux hands it to sh -c) in `cwd`
        (default: ours); it ends when the command ends."""
        self._start(name, "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                    *(["-c", cwd] if cwd else []), shlex.join(argv))

    def spawn_session(self, name: str, argv: Sequence[str], delay: float = 0.0,
                      width: int = 200, height: int = 50) -> subprocess.Popen:
        """Start a detached session running `argv` (after `delay` seconds, in its shell)
        without waiting for tmux: the caller polls the process (a warm pane is started off
        a job's path)."""
        command = shlex.join(argv)
        if delay > 0:
            command = f"sleep {delay:g}; exec {command}"
        return self.spawn("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                          command)

    def spawn(self, *args: str) -> subprocess.Popen:
        """A tmux command not waited for (the caller polls it); it completes even if we die."""
        return subprocess.Popen([*self.base, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=True)

    def rename_session(self, name: str, new: str) -> None:
        self.run("rename-session", "-t", f"={name}", new)

    def pane_pid(self, name: str) -> int:
        """The pid of the process session `name`'s first pane runs (0: none)."""
        out = self.run("list-panes", "-t", f"={name}:", "-F", "#{pane_pid}", check=False)
        first = out.stdout.split("\n")[0].strip()
        return int(first) if first.isdigit() else 0

    def new_session(self, name: str, argv: Sequence[str], cwd: str, width: int = 200,
                    height: int = 50, options: dict[str, str] | None = None) -> None:
        """A REPL's detached session running `argv` in `cwd`. One command sequence, so the
        options are set before a command that dies at once is reaped: the pane stays after
        the command exits, to read its output and status."""
        args = ["start-server", ";", "set-option", "-g", "history-limit", str(HISTORY_LIMIT),
                ";", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                "-c", cwd, shlex.join(argv), ";",
                # explicit targets: with no -t, tmux picks the "current" session, which from
                # outside tmux may be another slot's
                "set-option", "-w", "-t", f"={name}:", "remain-on-exit", "on"]
        for option, value in (options or {}).items():
            args += [";", "set-option", "-t", f"={name}:", option, value]
        self._start(name, *args)

    def _start(self, name: str, *args: str) -> None:
        """Run a command that starts session `name`; again when the server exited under it
        (a server whose last session just ended exits, and a client that reached it first
        fails): the session did not exist then, so a second try cannot make two. A start
        that timed out is looked for before it is called failed: a job whose session runs
        must not be reported as never started."""
        for attempt in range(1, START_TRIES + 1):
            try:
                out = self.run(*args, check=False, timeout=START_TIMEOUT)
            except TmuxError:
                if name in (self.sessions() or ()):
                    return
                raise
            if not out.returncode:
                return
            if attempt == START_TRIES or not any(s in out.stderr for s in SERVER_GONE):
                raise TmuxError(f"tmux new-session failed: {out.stderr.strip() or out.returncode}")
            time.sleep(0.05 * attempt)   # the old server is still closing its socket

    def sessions(self, prefix: str = "") -> set[str] | None:
        """The names of the server's sessions that start with `prefix`: empty when no server
        runs, None when tmux failed otherwise (unknown, not "none")."""
        try:
            out = self.run("list-sessions", "-F", "#{session_name}", check=False)
        except TmuxError:
            return None
        if out.returncode:
            gone = any(s in out.stderr for s in NO_SERVER + SERVER_GONE)
            return set() if gone else None
        return {s for s in out.stdout.split("\n") if s.startswith(prefix) and s}

    def kill_session(self, name: str) -> None:
        self.run("kill-session", "-t", f"={name}", check=False)

    def show_option(self, name: str, option: str) -> str:
        out = self.run("show-options", "-v", "-t", f"={name}", option, check=False)
        return out.stdout.rstrip("\n") if out.returncode == 0 else ""

    def pane_dead(self, name: str) -> int | None:
        """None while the pane's command runs; once it ended its exit status, UNKNOWN when
        tmux did not record one (it sometimes sees the terminal close first), NO_SESSION."""
        out = self.run("list-panes", "-t", f"={name}:", "-F",
                       "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}", check=False)
        if out.returncode or not out.stdout.strip():
            return NO_SESSION
        dead, status, sig = (out.stdout.split("\n")[0].split(":") + ["", ""])[:3]
        if dead != "1":
            return None
        if status.isdigit():
            return int(status)
        return 128 + int(sig) if sig.isdigit() else UNKNOWN

    def cursor_at_line_start(self, name: str) -> bool:
        """The cursor sits at the start of a line: the line above it is complete."""
        out = self.run("list-panes", "-t", f"={name}:", "-F", "#{cursor_x}", check=False)
        return out.stdout.split("\n")[0].strip() == "0"

    # keys and content -----------------------------------------------------------------
    def send_keys(self, name: str, text: str, enter: bool = True, delay: float = 1.0,
                  sleep: Callable[[float], None] = time.sleep) -> None:
        """Type `text` literally, wait `delay`, press Enter (the seed's delay_enter, 1 s).
        Text of several lines is pasted instead (bracketed when the program asked for it,
        as a terminal does), so a TUI takes it as one message, not one per line."""
        if "\n" in text:
            buffer = f"luzia-{os.getpid()}"
            self.run("load-buffer", "-b", buffer, "-", input=text)
            self.run("paste-buffer", "-p", "-d", "-b", buffer, "-t", f"={name}:")
        elif text:
            self.run("send-keys", "-t", f"={name}:", "-l", "--", text)
        if enter:
            if delay > 0:
                sleep(delay)
            self.run("send-keys", "-t", f"={name}:", "Enter")

    def send_key(self, name: str, key: str) -> None:
        """One named key, e.g. C-c."""
        self.run("send-keys", "-t", f"={name}:", key, check=False)

    def screen(self, name: str, option: str) -> tuple[list[str], str]:
        """The pane's visible lines (as `capture`) and the session's user option `option`
        ("" when unset), read by one tmux call."""
        out = self.run("capture-pane", "-p", "-J", "-t", f"={name}:", ";",
                       "display-message", "-p", "-t", f"={name}:", f"#{{{option}}}")
        parts = out.stdout.split("\n")      # ..., the pane's last line, the option, ""
        if len(parts) < 2:
            raise TmuxError(f"tmux capture-pane of {name}: no output")
        lines = parts[:-2]
        while lines and not lines[-1].strip():
            lines.pop()
        return [line.rstrip() for line in lines], parts[-2].strip()

    def capture(self, name: str, history: bool = False) -> list[str]:
        """The pane's lines (with `history`, the whole scrollback too), trailing blanks dropped."""
        args = ["capture-pane", "-p", "-J", "-t", f"={name}:"]
        if history:
            args += ["-S", "-", "-E", "-"]
        lines = self.run(*args).stdout.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        return [line.rstrip() for line in lines]

    # waiting --------------------------------------------------------------------------
    def wait(self, name: str, ready: Callable[[list[str], float], bool], timeout: float,
             stop: Callable[[], bool] = lambda: False,
             each: Callable[[list[str]], None] = lambda lines: None) -> bool:
        """Poll the pane until `ready(lines, now)`; False on timeout, `stop()` or a dead pane.
        `each` sees every capture (the runner copies new output with it)."""
        deadline = time.monotonic() + timeout
        while not stop() and self.pane_dead(name) is None:
            lines = self.capture(name)
            each(lines)
            now = time.monotonic()
            if ready(lines, now):
                return True
            if now > deadline:
                return False
            time.sleep(POLL)
        return False

    def wait_for_prompt(self, name: str, pattern: str, timeout: float,
                        since: list[str] | None = None, **kw) -> bool:
        return self.wait(name, PromptSeen(pattern, since), timeout, **kw)

    def wait_for_shell_prompt(self, name: str, timeout: float, since: list[str] | None = None,
                              **kw) -> bool:
        return self.wait(name, PromptSeen(SHELL_PROMPT, since), timeout, **kw)

    def wait_for_idle(self, name: str, idle: float, timeout: float, **kw) -> bool:
        return self.wait(name, IdleFor(idle), timeout, **kw)


class PromptSeen:
    """Ready once the last non-blank line matches the prompt pattern and, with `since`, the
    pane differs from that content (the prompt came back; it is not the one we typed at)."""

    def __init__(self, pattern: str, since: list[str] | None = None) -> None:
        self.regex = re.compile(pattern)
        self.since = since

    def __call__(self, lines: list[str], now: float) -> bool:
        return bool(lines) and bool(self.regex.search(lines[-1])) and lines != self.since


class IdleFor:
    """Ready once the pane's content hash stayed the same for `idle` seconds."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.last, self.changed = "", time.monotonic()

    def __call__(self, lines: list[str], now: float) -> bool:
        digest = hashlib.sha1("\n".join(lines).encode()).hexdigest()
        if digest != self.last:
            self.last, self.changed = digest, now
            return False
        return now - self.changed >= self.idle
