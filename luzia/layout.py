"""Names that more than one process agrees on: files in a job's directory, in the spool and
the run directory, and tmux session names. Defined once and imported (as the ZeroMQ guide's
MDP.py does for its protocol), so a writer and a reader in two processes cannot drift apart.
Imports nothing."""

from __future__ import annotations

import re
from typing import TypeGuard

# A job's directory, `<jobs_dir>/<job id>/` --------------------------------------------
META = "meta.json"          # the job and how to run it, and the agent's first record of the
                            # attempt under "status" (written by the agent, read by the tracker)
STATUS = "status.json"      # the agent's record once it changed after the start (or a
                            # directory of an earlier release): state, attempt, acked, pids
OUTPUT = "output.log"       # everything the job printed, every attempt
PROGRESS = "progress.md"    # written by the job's command: percent and a message
PROCESS = "process"         # the job's process: its pid and its exit status, each a field
                            # written in place by the tracker into room the agent reserved
PROCESS_BYTES = 64          # the reserved room: spaces, then `pid N\n` at PID_AT and
PID_AT, EXIT_AT = 0, 32     # `exit N\n` at EXIT_AT (a field reads only once wholly written)
PID = "pid"                 # an earlier release's pid file (and a workspace setup's pid)
EXIT_CODE = "exit_code"     # an earlier release's exit status file, read for its jobs
TASK = "task.txt"           # the task text, for commands that take a file
ENV = "env.json"            # the agent's environment for the wrapper (0600; removed once read)
PANE_ENV = ("TERM", "TMUX", "TMUX_PANE")   # a pane's own: the terminal a job really draws on
STALL_SNAPSHOT = "stall-snapshot.txt"
RAW_OUTPUT = "output.jsonl"  # an agent command's own output, when it declares a format (JSON lines)
USAGE = "usage.json"        # what its output adapter learnt of the attempt (written by the wrapper)
SESSIONS = "sessions.json"  # the agent's conversations this host holds for the job: id -> account
WORKSPACE_ERROR = "workspace-error"   # why its worktree could not be made (one line, the wrapper)
OLD_RESERVES = (".pid.tmp", ".exit_code.tmp")   # an earlier release's room for PID, EXIT_CODE
# cleared at a new attempt (PROCESS is blanked in place instead: no new file)
ATTEMPT_FILES = (EXIT_CODE, PID, PROGRESS, STATUS, ENV, USAGE, WORKSPACE_ERROR, *OLD_RESERVES)

# The spool, `<home>/spool/`: jobs a CLI made durable before it printed their id ------------
SPOOL_SUFFIX = ".job"       # `<id>.job`, written atomically
SPOOL_TMP_SUFFIX = ".tmp"   # `.<id>.tmp` while it is being written
SPOOL_OWNER = ".broker"     # the submit endpoint of the broker that sweeps this spool


def spool_name(job_id: str) -> str:
    return f"{job_id}{SPOOL_SUFFIX}"


def spool_tmp_name(job_id: str) -> str:
    return f".{job_id}{SPOOL_TMP_SUFFIX}"


def atomic_tmp_name(name: str) -> str:
    """The temporary name a file is written under before its rename into `name`."""
    return f".{name}.tmp"


# The state directory, `<home>/` ------------------------------------------------------
BROKER_LOCK = "broker.lock"  # held by the running broker (and by `luzia db recover`): one at a time


# The run directory, `<home>/run/` -------------------------------------------------------
def agent_lock(name: str) -> str:
    """Held by the running agent `name` of this state directory: one process per name."""
    return f"agent-{name}.lock"


def warm_socket(pid: int) -> str:
    """Where agent `pid`'s warm panes (luzia/agents/warm.py) connect and wait for a job."""
    return f"warm-{pid}.sock"


def warm_socket_pid(name: str) -> int | None:
    """The agent's pid in a `warm_socket` file name; None for any other name."""
    m = re.fullmatch(r"warm-([0-9]+)\.sock", name)
    return int(m.group(1)) if m else None


def spawner_mark(token: str) -> str:
    """Present while a spawner may still read jobs its agent sent (luzia/agents/spawner.py)."""
    return f"spawner-{token}.open"


QUEUE_FULL = "queue-full"   # present while the broker rejects submissions for a full queue
WEB_URL = "web.url"         # the dashboard's address, written by luzia-web once it listens
WEB_HEALTH = "web"          # the dashboard's health socket (the supervisor's ping)

# The state directory, `<home>/` ----------------------------------------------------------
WEB_TOKENS = "web-tokens.json"   # the dashboard's token per user (mode 0600)

# The CLI's answer cache, `<home>/cache/` (luzia/cache.py) -------------------------------
CACHE_DIR = "cache"
CACHE_CHANGED = "changed"   # touched by every change made from this host: older answers are void

# tmux --------------------------------------------------------------------------------
SESSION_PREFIX = "luzia-"
_SESSION_NAME = re.escape(SESSION_PREFIX) + r"[A-Za-z0-9_-]{1,120}"
ANSWERED_OPTION = "@luzia-answered"   # set on a job's session by `luzia reply`: the agent's
                                      # attention watch takes the screen as answered


def is_session(name: object) -> TypeGuard[str]:
    """A job's tmux session name as `attach` and `reply` accept it (SESSION_PREFIX and 1-120
    letters, digits, _ or -), matched by `re` on first use rather than compiled at import."""
    return isinstance(name, str) and re.fullmatch(_SESSION_NAME, name) is not None


def job_session(job_id: str) -> str:
    """The tmux session of a job run by the tmux runner."""
    return SESSION_PREFIX + job_id


def warm_session_prefix(agent: str) -> str:
    """The tmux runner's idle sessions (a started wrapper waiting for a job, renamed to the
    job's session when it gets one): `lzwarm-<agent>-`. Not SESSION_PREFIX: never a job."""
    return f"lzwarm-{re.sub(r'[.:]', '_', agent)}-"


def slot_session_prefix(agent: str) -> str:
    """The interactive runner's slot sessions: `luzia-<agent>-slot-<n>`."""
    return f"{SESSION_PREFIX}{re.sub(r'[.:]', '_', agent)}-slot-"


_TMUX_SOCKET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def tmux_socket_ok(name: str) -> bool:
    """A tmux server name (`tmux -L`) as config accepts it: 1-100 letters, digits, . _ -
    (checked on every config load, so without compiling a regex on the submit path)."""
    return 0 < len(name) <= 100 and _TMUX_SOCKET_CHARS.issuperset(name)
