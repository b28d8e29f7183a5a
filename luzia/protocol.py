"""The wire protocol: every message Luzia sends, its frames, and how it is checked.

Frames on every socket: ``[b"LZ1", TYPE, msgpack(body)]``; a ROUTER adds the peer's identity
in front, and the PUB socket puts the topic (``job.<state>``, ``agent.<state>``) in front.
The body is a msgpack map whose keys are the fields of the message's class.

Decoding never trusts its input: the frames, the type, and every field's type, size and
range are checked (msgspec, in C), and anything wrong raises the one `ProtocolError`.
Nothing outside this module touches frame positions, and nothing outside it and
luzia/message.py (the Struct base, the checks and the encoder under every message) touches
msgpack, but luzia/submitbody.py: the one Submit a one-shot CLI sends, packed byte for byte
as here without importing msgspec, and held so by its test (DECISIONS 85).

Versions (docs/PROTOCOL.md, "Versions"; DECISIONS 70). ``LZ1`` names the frame layout and
never changes while it holds. `PROTOCOL` is the number of this release's messages; a peer
says its own in Hello and Request (absent: 1, the first release). A broker serves peers from
`OLDEST` (or its `broker.min_protocol`) up, and refuses an older agent at Hello and an older
CLI's requests with a line that names both numbers.

Adding a field: one line in the message's class, with a default (what a peer that does not
send it means) and its limits in its type, e.g. in JobSpec

    base_commit: Annotated[str, Meta(max_length=64)] = ""    # protocol 3: the workspace's base

then `PROTOCOL += 1` once per release that adds fields, and a line in docs/PROTOCOL.md.
Peers of protocol 2 and later ignore a field they do not know and fill in the default of one
they are not sent; a protocol-1 peer is sent only the fields it had (message.V1_FIELDS). A
field that an older peer must not ignore (it would do the wrong thing without it) needs the
sender to look at the peer's protocol first: the broker keeps each agent's (`Agent.protocol`).
Never change a default, never change what a field means, never remove a field; a new message
type goes only to peers whose protocol has it.

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

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

from luzia.errors import ProtocolError
from luzia.ids import JOB_ID_RE
from luzia.message import (  # MAX_*, check, from_plain, to_plain: for the modules that use ours
    BIG,
    MAX_LINE as MAX_LINE,
    MAX_LIST as MAX_LIST,
    MAX_MESSAGE as MAX_MESSAGE,
    MAX_NAME as MAX_NAME,
    Count,
    Fraction,
    Line,
    Map,
    Message,
    Meta,
    Seconds,
    Unknown,
    body,
    check as check,
    from_plain as from_plain,
    pack,
    parse,
    replace as replace,
    to_plain as to_plain,
)

VERSION = b"LZ1"               # the frame layout (never changes while it holds)
PROTOCOL = 4                   # this release's messages: 1 the first release, 2 + versions,
                               # 3 + workspaces, 4 + agent-aware jobs (usage, accounts)
OLDEST = 1                     # the oldest peer protocol this release still serves
MAX_TASK = 64 * 1024           # bytes of task text
MAX_METADATA = 16 * 1024       # bytes of a job's metadata, msgpack-encoded
MAX_TAIL_LINES = 50
# msgspec searches a pattern: anchored at both ends, and \Z, since $ matches before a final \n
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
TYPE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}\Z"
JOB_ID_PATTERN = JOB_ID_RE.pattern                 # luzia/ids.py makes them

JobId = Annotated[str, Meta(pattern=JOB_ID_PATTERN)]
JobIds = Annotated[list[JobId], Meta(max_length=MAX_LIST)]
Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
Attempt = Annotated[int, Meta(ge=1, le=BIG)]
ExitCode = Annotated[int, Meta(ge=-BIG - 1, le=BIG)]
Slots = Annotated[int, Meta(ge=1, le=1024)]
Tail = Annotated[list[Line], Meta(max_length=MAX_TAIL_LINES)]
Protocol = Annotated[int, Meta(ge=1, le=BIG)]
Version = Annotated[str, Meta(max_length=MAX_NAME)]
Commit = Annotated[str, Meta(pattern=r"^(?:[0-9a-f]{40}(?:[0-9a-f]{24})?)?\Z")]   # "": unknown
Path = Annotated[str, Meta(max_length=4096)]


# ---------------------------------------------------------------------------
# job description


class JobSpec(Message, frozen=True):
    """What to run: made by the client, stored by the broker, handed to an agent in Assign."""

    id: JobId
    project: Name
    task: Annotated[str, Meta(max_length=MAX_TASK)]
    user: Name
    priority: Annotated[int, Meta(ge=0, le=3)] = 2
    type: Annotated[str, Meta(max_length=32)] = ""      # "": the broker detects it from the text
    timeout: Seconds = 0.0                              # 0: none
    max_retries: Annotated[int, Meta(ge=0, le=100)] = 0
    after: Annotated[list[JobId], Meta(max_length=64)] = []
    metadata: Map = {}                                  # at most MAX_METADATA bytes packed
    workdir: Annotated[str, Meta(max_length=4096)] = ""
    submitted_at: Annotated[float, Meta(ge=0, le=2**63)] = 0.0
    # protocol 3 (issue 12, docs/WORKSPACES.md): its own git worktree; "": none
    repo: Path = ""                         # the project's git repo: a path or a URL
    base: Annotated[str, Meta(max_length=256)] = ""     # the branch/tag/commit asked; "": HEAD
    base_commit: Commit = ""                # fixed at the first attempt, kept for retries

    def __post_init__(self) -> None:        # the one limit a type cannot say
        if self.metadata and len(pack(self.metadata)) > MAX_METADATA:
            raise ProtocolError(f"JobSpec.metadata: larger than {MAX_METADATA} bytes")


class Usage(Message, frozen=True):
    """What an agent's output adapter saw of one attempt (docs/AGENTS.md): cost, tokens, turns,
    model and the conversation's session id. In Progress and Done (protocol 4); all unknown
    by default."""

    cost_usd: Annotated[float, Meta(ge=-1, le=1e9)] = -1.0     # -1: the adapter reported no cost
    tokens_in: Count = 0
    tokens_out: Count = 0
    cache_read: Count = 0
    cache_write: Count = 0
    turns: Annotated[int, Meta(ge=0, le=1 << 31)] = 0
    model: Annotated[str, Meta(max_length=MAX_NAME * 2)] = ""
    session_id: Annotated[str, Meta(max_length=MAX_NAME * 2)] = ""
    malformed: Count = 0                    # output lines the adapter could not read

    @property
    def known(self) -> bool:
        """The adapter saw anything at all."""
        return self != NO_USAGE


NO_USAGE = Usage()


class HeldJob(Message, frozen=True):
    """A job an agent still knows about when it says Hello: running, or ended while unobserved."""

    job_id: JobId
    attempt: Attempt = 1
    exit_code: ExitCode | None = None   # None: still running


# ---------------------------------------------------------------------------
# CLI -> broker (submit socket)


class Submit(Message, frozen=True):
    """A new job, fired by the CLI (or luzia.client) over PUSH. Idempotent by job id."""

    kind: ClassVar[bytes] = b"SUBMIT"
    job: JobSpec


# ---------------------------------------------------------------------------
# agent -> broker


class Hello(Message, frozen=True):
    """First message of an agent after (re)connecting: who it is, its credits, what it holds,
    and which protocol it speaks (a broker that cannot serve it answers Disconnect(refused))."""

    kind: ClassVar[bytes] = b"HELLO"
    name: Name
    slots: Slots
    capabilities: Annotated[list[Annotated[str, Meta(pattern=TYPE_PATTERN)]], Meta(max_length=32)]
    tags: Annotated[list[Annotated[str, Meta(max_length=MAX_NAME)]], Meta(max_length=32)] = []
    held: Annotated[list[HeldJob], Meta(max_length=MAX_LIST)] = []
    pid: Count = 0
    protocol: Protocol = 1                  # protocol 2: the agent's PROTOCOL
    version: Version = ""                   # protocol 2: its Luzia release, for people
    # protocol 2 (issue 17): its host and state directory (a hash); the same name and instance
    # is the same agent restarted, another instance under a live agent's name is refused
    instance: Annotated[str, Meta(max_length=64)] = ""      # "": not told (protocol 1)
    # protocol 4 (issue 13): its [accounts.*] (docs/AGENTS.md); []: none declared
    accounts: Annotated[list[Name], Meta(max_length=64)] = []


class Heartbeat(Message, frozen=True):
    """Sent both ways every heartbeat interval. The agent's carries its load and running jobs."""

    kind: ClassVar[bytes] = b"HEARTBEAT"
    cpu: Fraction = 0.0                     # of all cores busy
    memory: Fraction = 0.0                  # of memory in use
    gpu_memory: Unknown = -1.0              # of GPU memory used; -1: no GPU
    gpu_util: Unknown = -1.0
    gpu_free_gb: Annotated[float, Meta(ge=-1, le=2**63)] = -1.0
    running: JobIds = []
    slots: Annotated[int, Meta(ge=0, le=1024)] = 0      # its credits now (adaptive); 0: as in Hello
    degraded: Line = ""                     # protocol 2 (issue 17): why it takes no new work; "": ok

    # protocol 3 (workspaces). Agent -> broker: the disk its worktrees use (-1: not measured
    # yet) and how many; jobs whose branch a retried push brought home, and jobs whose
    # worktree it removed (discarded, or kept long enough). Broker -> agent: discarded jobs
    # whose worktree and branch to remove.
    workspace_bytes: Annotated[int, Meta(ge=-1, le=BIG)] = -1
    workspaces: Count = 0
    pushed: JobIds = []
    removed: JobIds = []
    discard: JobIds = []

class Started(Message, frozen=True):
    """The agent started (or re-adopted) a job's process."""

    kind: ClassVar[bytes] = b"STARTED"
    job_id: JobId
    attempt: Attempt
    session: Annotated[str, Meta(max_length=256)] = ""  # tmux session name, "" for subprocess
    pid: Count = 0
    workspace: Path = ""                    # protocol 3: its worktree's path on the agent's host
    branch: Annotated[str, Meta(max_length=256)] = ""   # protocol 3: the worktree's branch


class Progress(Message, frozen=True):
    """A running job's progress and the last lines of its output."""

    kind: ClassVar[bytes] = b"PROGRESS"
    job_id: JobId
    attempt: Attempt
    percent: Annotated[float, Meta(ge=-1, le=100)] = -1.0   # -1: unknown
    message: Line = ""
    tail: Tail = []
    stalled: bool = False                   # output unchanged for the agent's stall_after
    stalled_for: Seconds = 0.0              # seconds since it last changed
    usage: Usage = NO_USAGE                 # protocol 4 (issue 13): its cost and tokens so far
    # protocol 2 (issue 14): its pane waits for a person (attention.py), and its last lines then
    needs_input: bool = False
    needs_input_lines: Tail = []

    base_commit: Commit = ""                # protocol 3: the base its worktree was made at

class Done(Message, frozen=True):
    """A job's process ended. exit_code 0 is success; reason says why it ended otherwise."""

    kind: ClassVar[bytes] = b"DONE"
    job_id: JobId
    attempt: Attempt
    exit_code: ExitCode
    reason: Line = ""                       # "", "timeout", "cancelled", "runner: ..."
    tail: Tail = []
    started: bool = True                    # protocol 2 (issue 17): False: its command never started
    # protocol 3: its workspace's end (docs/WORKSPACES.md); files_changed -1: no workspace
    base_commit: Commit = ""
    head_commit: Commit = ""                # the branch's tip after the end commit
    files_changed: Annotated[int, Meta(ge=-1, le=BIG)] = -1
    lines_added: Count = 0
    lines_removed: Count = 0
    workspace_note: Line = ""               # "no changes", why it could not be made, ...
    push: Line = ""                         # "", "pushed", "failed: <why> (retrying)"
    # protocol 4 (issue 13, docs/AGENTS.md): its cost and tokens; a usage limit ended it
    usage: Usage = NO_USAGE
    limited_until: Annotated[float, Meta(ge=0, le=2**40)] = 0.0   # the limit's reset (unix time)
    limit: Line = ""                        # the output line that showed the limit


class LogChunk(Message, frozen=True):
    """The agent's answer to LogRequest: bytes of a job's output.log from `offset`."""

    kind: ClassVar[bytes] = b"LOGCHUNK"
    req: Count
    job_id: JobId
    offset: Count = 0
    data: Annotated[bytes, Meta(max_length=MAX_MESSAGE // 2)] = b""
    size: Count = 0                         # the log's size when read
    error: Line = ""


# ---------------------------------------------------------------------------
# broker -> agent


class Welcome(Message, frozen=True):
    """The broker's answer to Hello: the agent is registered; beat at this interval."""

    kind: ClassVar[bytes] = b"WELCOME"
    heartbeat_interval: Annotated[float, Meta(ge=0.01, le=3600)] = 1.0
    liveness: Annotated[int, Meta(ge=1, le=100)] = 3
    adopt: JobIds = []                      # held jobs to keep running
    drop: JobIds = []                       # held jobs to stop
    protocol: Protocol = 1                  # protocol 2: the broker's PROTOCOL
    version: Version = ""                   # protocol 2: its Luzia release


class Assign(Message, frozen=True):
    """Run this job (attempt n). Uses one of the agent's credits until Done."""

    kind: ClassVar[bytes] = b"ASSIGN"
    job: JobSpec
    attempt: Attempt = 1
    # protocol 4 (issue 13): the [accounts.*] to run it under, the agent's session to resume
    account: Annotated[str, Meta(max_length=MAX_NAME)] = ""     # "": none
    resume: Annotated[str, Meta(max_length=MAX_NAME * 2)] = ""  # "": a fresh start


class Cancel(Message, frozen=True):
    """Stop this job: SIGTERM, then SIGKILL after the agent's grace; report Done."""

    kind: ClassVar[bytes] = b"CANCEL"
    job_id: JobId
    reason: Line = "cancelled"


class LogRequest(Message, frozen=True):
    """Send up to `limit` bytes of this job's output.log from `offset` (LogChunk answers)."""

    kind: ClassVar[bytes] = b"LOGREQ"
    req: Count
    job_id: JobId
    offset: Count = 0
    limit: Annotated[int, Meta(ge=1, le=MAX_MESSAGE // 2)] = 65536


class Disconnect(Message, frozen=True):
    """The broker does not know this agent (e.g. the broker restarted): say Hello again. With
    `refused`, the broker will not take it (`reason` says why): it cannot serve the agent's
    protocol (the line names both), or another live agent holds its name. The agent says so
    in its log and tries again later, with its reconnect backoff, not at once."""

    kind: ClassVar[bytes] = b"DISCONNECT"
    reason: Line = ""
    refused: bool = False                   # protocol 2


# ---------------------------------------------------------------------------
# control socket


class Request(Message, frozen=True):
    """A control command (see luzia/broker/ops/ for the operations and their args)."""

    kind: ClassVar[bytes] = b"REQUEST"
    req: Count
    op: Annotated[str, Meta(pattern=r"^[a-z][a-z_.]{0,63}\Z")]
    args: Map = {}
    protocol: Protocol = 1                  # protocol 2: the client's PROTOCOL


class Reply(Message, frozen=True):
    """The answer to one Request: ok with a result, or an error (one line) and its kind."""

    kind: ClassVar[bytes] = b"REPLY"
    req: Count
    ok: bool = True
    result: Any = None
    error: Line = ""
    code: Annotated[str, Meta(max_length=32)] = ""      # error kind: "not_found", "bad_request", ...


# ---------------------------------------------------------------------------
# events socket


class Event(Message, frozen=True):
    """A state change, published with its topic in front: job.<state> or agent.<state>."""

    kind: ClassVar[bytes] = b"EVENT"
    topic: Annotated[str, Meta(max_length=64)]
    data: Map = {}


MESSAGES: dict[bytes, type[Message]] = {
    cls.kind: cls for cls in (Submit, Hello, Heartbeat, Started, Progress, Done, LogChunk,
                              Welcome, Assign, Cancel, LogRequest, Disconnect, Request, Reply,
                              Event)
}
TO_BROKER_FROM_AGENT: frozenset[type[Message]] = frozenset(
    {Hello, Heartbeat, Started, Progress, Done, LogChunk})
TO_AGENT: frozenset[type[Message]] = frozenset(
    {Welcome, Heartbeat, Assign, Cancel, LogRequest, Disconnect})


# ---------------------------------------------------------------------------
# encode / decode


def encode(msg: Message, peer: int = PROTOCOL) -> list[bytes]:
    """Frames for `msg` (without identity or topic), for a peer of protocol `peer`."""
    return [VERSION, msg.kind, body(msg, peer)]


def encode_event(topic: str, data: dict[str, Any]) -> list[bytes]:
    """Frames for the PUB socket: topic first, so subscribers can filter on it. Subscribers of
    every protocol served read them (the body is for the oldest)."""
    ev = Event(topic=topic, data=data)
    return [topic.encode(), VERSION, ev.kind, body(ev, OLDEST)]


def decode(frames: list[bytes], expect: Iterable[type[Message]] | None = None) -> Message:
    """Check and decode `[VERSION, TYPE, body]`. Raise ProtocolError on anything wrong."""
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames, got {len(frames)}")
    version, kind, data = frames
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {bytes(version[:16])!r} (this is {VERSION!r})")
    cls = MESSAGES.get(bytes(kind))
    if cls is None:
        raise ProtocolError(f"unknown message type {bytes(kind[:32])!r}")
    if expect is not None and cls not in expect:
        raise ProtocolError(f"message {cls.kind.decode()} is not accepted on this socket")
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message body of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return parse(cls, data)


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
    return body(msg)


def spool_load(data: bytes) -> Submit:
    """Parse a spool file's content; ProtocolError if it is not a valid Submit."""
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"spool file of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return parse(Submit, data)
