"""status.json, the agent's record of a job's current attempt, defined once.

The worker and the runners write it (`JobDir.set_status(field=...)`, checked against this
record: an unknown field is a TypeError, not a silent new key); the worker reads it back
after a restart, `luzia attach` reads its `session`. A missing or unreadable file reads as
the empty record (`state == ""`); a field of the wrong type reads as its default, so a
hand-edited file cannot crash the agent. Imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


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
        return dataclasses.asdict(self)

    def with_fields(self, **fields: Any) -> JobStatus:
        """A copy with `fields` changed; an unknown field name raises TypeError."""
        if "state" in fields and isinstance(fields["state"], AttemptState):
            fields["state"] = fields["state"].value
        return dataclasses.replace(self, **fields)


_JSON_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
