"""status.json, the agent's record of a job's current attempt, defined once.

The worker and the runners write it (`JobDir.set_status(field=...)`, checked against this
record: an unknown field is a TypeError, not a silent new key); the worker reads it back
after a restart, `luzia attach` reads its `session`, the broker's rebuild its `acked`. It is
meta.json's `status` until it changes after the start, then status.json (`attempt_record`). A
missing or unreadable record reads as the empty record (`state == ""`); a field of the wrong
type reads as its default, so a hand-edited file cannot crash the agent. Also here: the
readers of the tracker's `process` file (the pid and the exit status) and of an earlier
release's `pid` and `exit_code`. Imports nothing of ours but layout.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luzia import layout


class AttemptState(str, enum.Enum):
    """What the agent last knew of the attempt (the file's `state`)."""

    RUNNING = "running"                # laid out and started (or being started)
    EXITED = "exited"                  # its exit code is known
    NEVER_STARTED = "never started"    # the agent died before its command started


@dataclass(frozen=True)
class JobStatus:
    state: str = ""                  # an AttemptState value; "" when there is no record
    attempt: int = 1
    acked: bool = False              # the broker has this attempt's end: the job is no longer held
    started_at: float = 0.0          # time.time() of the attempt's start (its timeout counts from it)
    finished_at: float = 0.0
    updated_at: float = 0.0
    runner: str = ""                 # the runner that started it: tmux, subprocess, interactive
    session: str = ""                # its tmux session (tmux and interactive runners)
    socket: str = ""                 # that session's tmux server (-L), for `luzia attach`
    slot: int | None = None          # the interactive runner's slot
    wrapper_pid: int = 0             # the wrapper's (or the REPL watcher's) pid, 0 if not known
    exit_code: int | None = None
    reason: str = ""                 # why it ended: cancelled, timeout, stalled, runner: ...
    progress: float = -1.0           # percent from progress.md, -1 if none
    message: str = ""                # progress.md's message

    @property
    def found(self) -> bool:
        """A record was written (every attempt's first write sets `state`)."""
        return bool(self.state)

    @classmethod
    def from_json(cls, data: Any) -> JobStatus:
        """The record in a parsed status.json; wrong types read as the defaults."""
        if not isinstance(data, dict):
            return cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = data.get(f.name)
            if value is None:
                continue
            kind = _JSON_TYPES[f.type.split("|")[0].strip()]   # "int | None" -> int
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
                values[f.name] = value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}   # flat: asdict's walk not needed

    def with_fields(self, **fields: Any) -> JobStatus:
        """A copy with `fields` changed; an unknown field name raises TypeError."""
        if "state" in fields and isinstance(fields["state"], AttemptState):
            fields["state"] = fields["state"].value
        return dataclasses.replace(self, **fields)


_FIELDS = tuple(f.name for f in dataclasses.fields(JobStatus))
_JSON_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def attempt_record(job_dir: Path) -> tuple[dict[str, Any], str]:
    """The attempt's record as stored (a dict, {} when there is none) and the file that
    holds it: status.json when there is one (a change after the start; an earlier
    release's layout), else meta.json's `status`. For the broker's rebuild and `luzia
    attach` too, which read a job directory of this host."""
    for name in (layout.STATUS, layout.META):
        try:
            data = json.loads((job_dir / name).read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return {}, name
        if name == layout.META:
            data = data.get("status") if isinstance(data, dict) else None
        return (data, name) if isinstance(data, dict) else ({}, name)
    return {}, ""


def read_exit_code(job_dir: Path) -> int | None:
    """The exit status in `process`, or (an earlier release's directory, without one) in
    `exit_code`; None while there is none."""
    fields = _process_fields(job_dir)
    if fields is None:
        return _number(job_dir / layout.EXIT_CODE)
    return _field(fields, layout.EXIT_AT, b"exit ")


def read_pid(job_dir: Path) -> int:
    """The pid in `process`; else (an earlier release's directory, or a workspace's setup
    running before its command) in a `pid` file; 0 when none is known."""
    fields = _process_fields(job_dir)
    pid = _field(fields, layout.PID_AT, b"pid ") if fields else None
    return pid if pid is not None else _number(job_dir / layout.PID) or 0


def _process_fields(job_dir: Path) -> bytes | None:
    """`process` as its bytes; None when the directory has none."""
    try:
        with open(job_dir / layout.PROCESS, "rb") as f:
            return f.read(2 * layout.PROCESS_BYTES)
    except FileNotFoundError:
        return None
    except OSError:
        return b""


def _field(data: bytes, at: int, name: bytes) -> int | None:
    """`NAME digits\n` at `at`, or None. The room was spaces and a field is written once
    over them, so a field read while being written (some bytes new, some still spaces)
    never matches: the digits and their newline must all be there."""
    m = _FIELD_RE.match(data, at)
    return int(m.group(2)) if m and m.group(1) == name else None


_FIELD_RE = re.compile(rb"([a-z]+ )([0-9]{1,10})\n")


def _number(path: Path) -> int | None:
    """An earlier release's `pid` or `exit_code` file."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
