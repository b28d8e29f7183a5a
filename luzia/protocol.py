"""The wire protocol: every message Luzia sends, its frames, and how it is checked.

Frames on every socket: ``[b"LZ1", TYPE, msgpack(body)]``; a ROUTER adds the peer's identity
in front, and the PUB socket puts the topic (``job.<state>``, ``agent.<state>``) in front.
The body is a msgpack map whose keys are the fields of the message's dataclass.

Decoding never trusts its input: the version, the type, every field's presence, type, size
and range are checked, and anything wrong raises the one `ProtocolError`. Nothing outside
this module touches frame positions, and nothing outside it and luzia/message.py (the field
checks and the msgpack conversion under every message) touches msgpack.

Sockets and who speaks on them:

=========  =========================  ===========================================
socket     peers                       messages
=========  =========================  ===========================================
submit     CLI PUSH -> broker PULL     Submit
agents     agent DEALER <-> ROUTER     Hello, Heartbeat, Started, Progress, Done,
                                        LogChunk (agent -> broker);
                                        Welcome, Heartbeat, Assign, Cancel,
                                        LogRequest, Disconnect (broker -> agent)
control    CLI DEALER <-> ROUTER       Request -> Reply
events     broker PUB -> SUB           Event (topic job.<state> / agent.<state>)
=========  =========================  ===========================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

from luzia.errors import ProtocolError
from luzia.frozen import frozen
from luzia.ids import JOB_ID_RE
from luzia.message import (
    MAX_LINE,
    MAX_LIST,
    MAX_MESSAGE,
    MAX_NAME,
    Message,
    field,
    from_plain,
    pack,
    to_plain,
    unpack,
)

VERSION = b"LZ1"
MAX_TASK = 64 * 1024           # bytes of task text
MAX_METADATA = 16 * 1024       # bytes of a job's metadata, msgpack-encoded
MAX_TAIL_LINES = 50
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


# ---------------------------------------------------------------------------
# job description


@frozen
class JobSpec(Message):
    """What to run: made by the client, stored by the broker, handed to an agent in Assign."""

    id: str = field(pattern=JOB_ID_RE)
    project: str = field(pattern=NAME_RE)
    task: str = field(max=MAX_TASK)
    user: str = field(pattern=NAME_RE)
    priority: int = field(2, min=0, max=3)
    type: str = field("", max=32)               # "" : the broker detects it from the text
    timeout: float = field(0.0, min=0, max=30 * 86400)   # seconds; 0: none
    max_retries: int = field(0, min=0, max=100)
    after: list[str] = field([], items=64, pattern=JOB_ID_RE)
    metadata: dict[str, Any] = field({}, max=MAX_METADATA)
    workdir: str = field("", max=4096)
    submitted_at: float = field(0.0, min=0)


@frozen
class Usage(Message):
    """What an agent's output adapter saw of one attempt (docs/AGENTS.md): cost, tokens, turns,
    model and the conversation's session id. In Progress and Done; all unknown by default.
    Added after protocol 1: every field optional."""

    cost_usd: float = field(-1.0, min=-1, max=1e9)  # -1: the adapter reported no cost
    tokens_in: int = field(0, min=0)
    tokens_out: int = field(0, min=0)
    cache_read: int = field(0, min=0)
    cache_write: int = field(0, min=0)
    turns: int = field(0, min=0, max=1 << 31)
    model: str = field("", max=MAX_NAME * 2)
    session_id: str = field("", max=MAX_NAME * 2)
    malformed: int = field(0, min=0)            # output lines the adapter could not read

    @property
    def known(self) -> bool:
        """The adapter saw anything at all."""
        return self != NO_USAGE


NO_USAGE = Usage()


@frozen
class HeldJob(Message):
    """A job an agent still knows about when it says Hello: running, or ended while unobserved."""

    job_id: str = field(pattern=JOB_ID_RE)
    attempt: int = field(1, min=1)
    exit_code: int | None = field(None)         # None: still running


# ---------------------------------------------------------------------------
# CLI -> broker (submit socket)


@frozen
class Submit(Message):
    """A new job, fired by the CLI (or luzia.client) over PUSH. Idempotent by job id."""

    kind: ClassVar[bytes] = b"SUBMIT"
    job: JobSpec = field()


# ---------------------------------------------------------------------------
# agent -> broker


@frozen
class Hello(Message):
    """First message of an agent after (re)connecting: who it is, its credits, what it holds."""

    kind: ClassVar[bytes] = b"HELLO"
    name: str = field(pattern=NAME_RE)
    slots: int = field(min=1, max=1024)
    capabilities: list[str] = field(items=32, pattern=TYPE_RE)
    tags: list[str] = field([], items=32, max=MAX_NAME)
    held: list[HeldJob] = field([], items=MAX_LIST)
    pid: int = field(0, min=0)
    accounts: list[str] = field([], items=64, pattern=NAME_RE)   # [accounts.*]; []: none declared
    # issue 17: its host and state directory (a hash); the same name and instance is the same
    # agent restarted, another instance under a live agent's name is refused. "": not told
    instance: str = field("", max=64)


@frozen
class Heartbeat(Message):
    """Sent both ways every heartbeat interval. The agent's carries its load and running jobs."""

    kind: ClassVar[bytes] = b"HEARTBEAT"
    cpu: float = field(0.0, min=0, max=1)       # fraction of all cores busy
    memory: float = field(0.0, min=0, max=1)    # fraction of memory in use
    gpu_memory: float = field(-1.0, min=-1, max=1)   # fraction of GPU memory used; -1: no GPU
    gpu_util: float = field(-1.0, min=-1, max=1)
    gpu_free_gb: float = field(-1.0, min=-1)
    running: list[str] = field([], items=MAX_LIST, pattern=JOB_ID_RE)
    slots: int = field(0, min=0, max=1024)      # the agent's credits now (adaptive); 0: as in Hello
    degraded: str = field("", max=MAX_LINE)     # issue 17: why it takes no new work (disk full); "": ok


@frozen
class Started(Message):
    """The agent started (or re-adopted) a job's process."""

    kind: ClassVar[bytes] = b"STARTED"
    job_id: str = field(pattern=JOB_ID_RE)
    attempt: int = field(min=1)
    session: str = field("", max=256)           # tmux session name, "" for the subprocess runner
    pid: int = field(0, min=0)


@frozen
class Progress(Message):
    """A running job's progress and the last lines of its output."""

    kind: ClassVar[bytes] = b"PROGRESS"
    job_id: str = field(pattern=JOB_ID_RE)
    attempt: int = field(min=1)
    percent: float = field(-1.0, min=-1, max=100)   # -1: unknown
    message: str = field("", max=MAX_LINE)
    tail: list[str] = field([], items=MAX_TAIL_LINES, max=MAX_LINE)
    stalled: bool = field(False)                # output unchanged for the agent's stall_after
    stalled_for: float = field(0.0, min=0, max=30 * 86400)   # seconds since it last changed
    usage: Usage = field(NO_USAGE)              # the attempt's cost and tokens so far
    # issue 14: its pane waits for a person (attention.py), and the pane's last lines then
    needs_input: bool = field(False)
    needs_input_lines: list[str] = field([], items=MAX_TAIL_LINES, max=MAX_LINE)


@frozen
class Done(Message):
    """A job's process ended. exit_code 0 is success; reason says why it ended otherwise."""

    kind: ClassVar[bytes] = b"DONE"
    job_id: str = field(pattern=JOB_ID_RE)
    attempt: int = field(min=1)
    exit_code: int = field()
    reason: str = field("", max=MAX_LINE)       # "", "timeout", "cancelled", "runner: ..."
    tail: list[str] = field([], items=MAX_TAIL_LINES, max=MAX_LINE)
    usage: Usage = field(NO_USAGE)              # the attempt's cost and tokens
    limited_until: float = field(0.0, min=0, max=2**40)   # a usage limit ended it: its reset (unix time)
    limit: str = field("", max=MAX_LINE)        # the output line that showed the limit
    started: bool = field(True)                 # issue 17: False when its command never started


@frozen
class LogChunk(Message):
    """The agent's answer to LogRequest: bytes of a job's output.log from `offset`."""

    kind: ClassVar[bytes] = b"LOGCHUNK"
    req: int = field(min=0)
    job_id: str = field(pattern=JOB_ID_RE)
    offset: int = field(0, min=0)
    data: bytes = field(b"", max=MAX_MESSAGE // 2)
    size: int = field(0, min=0)                 # the log's size when read
    error: str = field("", max=MAX_LINE)


# ---------------------------------------------------------------------------
# broker -> agent


@frozen
class Welcome(Message):
    """The broker's answer to Hello: the agent is registered; beat at this interval."""

    kind: ClassVar[bytes] = b"WELCOME"
    heartbeat_interval: float = field(1.0, min=0.01, max=3600)
    liveness: int = field(3, min=1, max=100)
    adopt: list[str] = field([], items=MAX_LIST, pattern=JOB_ID_RE)    # held jobs to keep running
    drop: list[str] = field([], items=MAX_LIST, pattern=JOB_ID_RE)     # held jobs to stop


@frozen
class Assign(Message):
    """Run this job (attempt n). Uses one of the agent's credits until Done."""

    kind: ClassVar[bytes] = b"ASSIGN"
    job: JobSpec = field()
    attempt: int = field(1, min=1)
    account: str = field("", max=MAX_NAME)      # the [accounts.*] to run it under; "": none
    resume: str = field("", max=MAX_NAME * 2)   # the agent's session id to resume; "": fresh


@frozen
class Cancel(Message):
    """Stop this job: SIGTERM, then SIGKILL after the agent's grace; report Done."""

    kind: ClassVar[bytes] = b"CANCEL"
    job_id: str = field(pattern=JOB_ID_RE)
    reason: str = field("cancelled", max=MAX_LINE)


@frozen
class LogRequest(Message):
    """Send up to `limit` bytes of this job's output.log from `offset` (LogChunk answers)."""

    kind: ClassVar[bytes] = b"LOGREQ"
    req: int = field(min=0)
    job_id: str = field(pattern=JOB_ID_RE)
    offset: int = field(0, min=0)
    limit: int = field(65536, min=1, max=MAX_MESSAGE // 2)


@frozen
class Disconnect(Message):
    """The broker does not know this agent (e.g. the broker restarted): say Hello again.
    With `refused`, the broker will not take it: another live agent holds its name."""

    kind: ClassVar[bytes] = b"DISCONNECT"
    reason: str = field("", max=MAX_LINE)
    refused: bool = field(False)                # issue 17: say Hello again later, not at once


# ---------------------------------------------------------------------------
# control socket


@frozen
class Request(Message):
    """A control command (see luzia/broker/ops/ for the operations and their args)."""

    kind: ClassVar[bytes] = b"REQUEST"
    req: int = field(min=0)
    op: str = field(pattern=re.compile(r"^[a-z][a-z_.]{0,63}$"))
    args: dict[str, Any] = field({}, max=MAX_MESSAGE)


@frozen
class Reply(Message):
    """The answer to one Request: ok with a result, or an error (one line) and its kind."""

    kind: ClassVar[bytes] = b"REPLY"
    req: int = field(min=0)
    ok: bool = field(True)
    result: Any = field(None)
    error: str = field("", max=MAX_LINE)
    code: str = field("", max=32)               # error kind: "not_found", "bad_request", ...


# ---------------------------------------------------------------------------
# events socket


@frozen
class Event(Message):
    """A state change, published with its topic in front: job.<state> or agent.<state>."""

    kind: ClassVar[bytes] = b"EVENT"
    topic: str = field(max=64)
    data: dict[str, Any] = field({}, max=MAX_MESSAGE)


MESSAGES: dict[bytes, type[Message]] = {
    cls.kind: cls for cls in (Submit, Hello, Heartbeat, Started, Progress, Done, LogChunk,
                              Welcome, Assign, Cancel, LogRequest, Disconnect, Request, Reply,
                              Event)
}
TO_BROKER_FROM_AGENT = frozenset({Hello, Heartbeat, Started, Progress, Done, LogChunk})
TO_AGENT = frozenset({Welcome, Heartbeat, Assign, Cancel, LogRequest, Disconnect})


# ---------------------------------------------------------------------------
# encode / decode


def encode(msg: Message) -> list[bytes]:
    """Frames for `msg` (without identity or topic)."""
    return [VERSION, msg.kind, pack(to_plain(msg))]


def encode_event(topic: str, data: dict[str, Any]) -> list[bytes]:
    """Frames for the PUB socket: topic first, so subscribers can filter on it."""
    ev = Event(topic=topic, data=data)
    return [topic.encode(), VERSION, ev.kind, pack(to_plain(ev))]


def decode(frames: list[bytes], expect: Iterable[type[Message]] | None = None) -> Message:
    """Check and decode `[VERSION, TYPE, body]`. Raise ProtocolError on anything wrong."""
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames, got {len(frames)}")
    version, kind, body = frames
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {bytes(version[:16])!r} (this is {VERSION!r})")
    cls = MESSAGES.get(bytes(kind))
    if cls is None:
        raise ProtocolError(f"unknown message type {bytes(kind[:32])!r}")
    if expect is not None and cls not in expect:
        raise ProtocolError(f"message {cls.kind.decode()} is not accepted on this socket")
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message body of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return from_plain(cls, unpack(body))


def decode_event(frames: list[bytes]) -> Event:
    if len(frames) != 4:
        raise ProtocolError(f"expected 4 event frames, got {len(frames)}")
    msg = decode(frames[1:], expect=(Event,))
    assert isinstance(msg, Event)
    return msg


# ---------------------------------------------------------------------------
# spool files: a Submit kept on disk by the CLI until the broker has committed it


def spool_bytes(msg: Submit) -> bytes:
    """The content of a spool file for `msg` (same checks as the wire)."""
    return pack(to_plain(msg))


def spool_load(data: bytes) -> Submit:
    """Parse a spool file's content; ProtocolError if it is not a valid Submit."""
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"spool file of {len(data)} bytes exceeds {MAX_MESSAGE}")
    msg = from_plain(Submit, unpack(data))
    assert isinstance(msg, Submit)
    return msg
