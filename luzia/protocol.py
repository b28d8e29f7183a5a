"""The wire protocol: every message Luzia sends, its frames, and how it is checked.

Frames on every socket: ``[b"LZ1", TYPE, msgpack(body)]``; a ROUTER adds the peer's identity
in front, and the PUB socket puts the topic (``job.<state>``, ``agent.<state>``) in front.
The body is a msgpack map whose keys are the fields of the message's dataclass.

Decoding never trusts its input: the version, the type, every field's presence, type, size
and range are checked, and anything wrong raises the one `ProtocolError`. Nothing outside
this module touches msgpack or frame positions.

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

import dataclasses
import math
import re
import types
import typing
from dataclasses import field
from typing import Any, Callable, ClassVar

import msgpack

from luzia.errors import ProtocolError
from luzia.frozen import Frozen, frozen
from luzia.ids import JOB_ID_RE

VERSION = b"LZ1"
MAX_MESSAGE = 1 << 20          # bytes in one frame; sockets also set zmq.MAXMSGSIZE
MAX_TASK = 64 * 1024           # bytes of task text
MAX_METADATA = 16 * 1024       # bytes of a job's metadata, msgpack-encoded
MAX_NAME = 64
MAX_TAIL_LINES = 50
MAX_LINE = 2048
MAX_LIST = 1024
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def _f(default: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A field with checks: max (length or value), min, pattern, items (list length)."""
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class Message(Frozen):
    """Base of every message. Subclasses are `@frozen` dataclasses with a `kind` (the TYPE
    frame)."""

    kind: ClassVar[bytes] = b""

    def __post_init__(self) -> None:
        _check(self)


# ---------------------------------------------------------------------------
# job description


@frozen
class JobSpec(Message):
    """What to run: made by the client, stored by the broker, handed to an agent in Assign."""

    id: str = _f(pattern=JOB_ID_RE)
    project: str = _f(pattern=NAME_RE)
    task: str = _f(max=MAX_TASK)
    user: str = _f(pattern=NAME_RE)
    priority: int = _f(2, min=0, max=3)
    type: str = _f("", max=32)               # "" : the broker detects it from the text
    timeout: float = _f(0.0, min=0, max=30 * 86400)   # seconds; 0: none
    max_retries: int = _f(0, min=0, max=100)
    after: list[str] = _f([], items=64, pattern=JOB_ID_RE)
    metadata: dict[str, Any] = _f({}, max=MAX_METADATA)
    workdir: str = _f("", max=4096)
    submitted_at: float = _f(0.0, min=0)


@frozen
class HeldJob(Message):
    """A job an agent still knows about when it says Hello: running, or ended while unobserved."""

    job_id: str = _f(pattern=JOB_ID_RE)
    attempt: int = _f(1, min=1)
    exit_code: int | None = _f(None)         # None: still running


# ---------------------------------------------------------------------------
# CLI -> broker (submit socket)


@frozen
class Submit(Message):
    """A new job, fired by the CLI (or luzia.client) over PUSH. Idempotent by job id."""

    kind: ClassVar[bytes] = b"SUBMIT"
    job: JobSpec = _f()


# ---------------------------------------------------------------------------
# agent -> broker


@frozen
class Hello(Message):
    """First message of an agent after (re)connecting: who it is, its credits, what it holds."""

    kind: ClassVar[bytes] = b"HELLO"
    name: str = _f(pattern=NAME_RE)
    slots: int = _f(min=1, max=1024)
    capabilities: list[str] = _f(items=32, pattern=TYPE_RE)
    tags: list[str] = _f([], items=32, max=MAX_NAME)
    held: list[HeldJob] = _f([], items=MAX_LIST)
    pid: int = _f(0, min=0)


@frozen
class Heartbeat(Message):
    """Sent both ways every heartbeat interval. The agent's carries its load and running jobs."""

    kind: ClassVar[bytes] = b"HEARTBEAT"
    cpu: float = _f(0.0, min=0, max=1)       # fraction of all cores busy
    memory: float = _f(0.0, min=0, max=1)    # fraction of memory in use
    gpu_memory: float = _f(-1.0, min=-1, max=1)   # fraction of GPU memory used; -1: no GPU
    gpu_util: float = _f(-1.0, min=-1, max=1)
    gpu_free_gb: float = _f(-1.0, min=-1)
    running: list[str] = _f([], items=MAX_LIST, pattern=JOB_ID_RE)
    slots: int = _f(0, min=0, max=1024)      # the agent's credits now (adaptive); 0: as in Hello


@frozen
class Started(Message):
    """The agent started (or re-adopted) a job's process."""

    kind: ClassVar[bytes] = b"STARTED"
    job_id: str = _f(pattern=JOB_ID_RE)
    attempt: int = _f(min=1)
    session: str = _f("", max=256)           # tmux session name, "" for the subprocess runner
    pid: int = _f(0, min=0)


@frozen
class Progress(Message):
    """A running job's progress and the last lines of its output."""

    kind: ClassVar[bytes] = b"PROGRESS"
    job_id: str = _f(pattern=JOB_ID_RE)
    attempt: int = _f(min=1)
    percent: float = _f(-1.0, min=-1, max=100)   # -1: unknown
    message: str = _f("", max=MAX_LINE)
    tail: list[str] = _f([], items=MAX_TAIL_LINES, max=MAX_LINE)
    stalled: bool = _f(False)                # output unchanged for the agent's stall_after
    stalled_for: float = _f(0.0, min=0, max=30 * 86400)   # seconds since it last changed


@frozen
class Done(Message):
    """A job's process ended. exit_code 0 is success; reason says why it ended otherwise."""

    kind: ClassVar[bytes] = b"DONE"
    job_id: str = _f(pattern=JOB_ID_RE)
    attempt: int = _f(min=1)
    exit_code: int = _f()
    reason: str = _f("", max=MAX_LINE)       # "", "timeout", "cancelled", "runner: ..."
    tail: list[str] = _f([], items=MAX_TAIL_LINES, max=MAX_LINE)


@frozen
class LogChunk(Message):
    """The agent's answer to LogRequest: bytes of a job's output.log from `offset`."""

    kind: ClassVar[bytes] = b"LOGCHUNK"
    req: int = _f(min=0)
    job_id: str = _f(pattern=JOB_ID_RE)
    offset: int = _f(0, min=0)
    data: bytes = _f(b"", max=MAX_MESSAGE // 2)
    size: int = _f(0, min=0)                 # the log's size when read
    error: str = _f("", max=MAX_LINE)


# ---------------------------------------------------------------------------
# broker -> agent


@frozen
class Welcome(Message):
    """The broker's answer to Hello: the agent is registered; beat at this interval."""

    kind: ClassVar[bytes] = b"WELCOME"
    heartbeat_interval: float = _f(1.0, min=0.01, max=3600)
    liveness: int = _f(3, min=1, max=100)
    adopt: list[str] = _f([], items=MAX_LIST, pattern=JOB_ID_RE)    # held jobs to keep running
    drop: list[str] = _f([], items=MAX_LIST, pattern=JOB_ID_RE)     # held jobs to stop


@frozen
class Assign(Message):
    """Run this job (attempt n). Uses one of the agent's credits until Done."""

    kind: ClassVar[bytes] = b"ASSIGN"
    job: JobSpec = _f()
    attempt: int = _f(1, min=1)


@frozen
class Cancel(Message):
    """Stop this job: SIGTERM, then SIGKILL after the agent's grace; report Done."""

    kind: ClassVar[bytes] = b"CANCEL"
    job_id: str = _f(pattern=JOB_ID_RE)
    reason: str = _f("cancelled", max=MAX_LINE)


@frozen
class LogRequest(Message):
    """Send up to `limit` bytes of this job's output.log from `offset` (LogChunk answers)."""

    kind: ClassVar[bytes] = b"LOGREQ"
    req: int = _f(min=0)
    job_id: str = _f(pattern=JOB_ID_RE)
    offset: int = _f(0, min=0)
    limit: int = _f(65536, min=1, max=MAX_MESSAGE // 2)


@frozen
class Disconnect(Message):
    """The broker does not know this agent (e.g. the broker restarted): say Hello again."""

    kind: ClassVar[bytes] = b"DISCONNECT"
    reason: str = _f("", max=MAX_LINE)


# ---------------------------------------------------------------------------
# control socket


@frozen
class Request(Message):
    """A control command (see luzia/broker/control.py for the operations and their args)."""

    kind: ClassVar[bytes] = b"REQUEST"
    req: int = _f(min=0)
    op: str = _f(pattern=re.compile(r"^[a-z][a-z_.]{0,63}$"))
    args: dict[str, Any] = _f({}, max=MAX_MESSAGE)


@frozen
class Reply(Message):
    """The answer to one Request: ok with a result, or an error (one line) and its kind."""

    kind: ClassVar[bytes] = b"REPLY"
    req: int = _f(min=0)
    ok: bool = _f(True)
    result: Any = _f(None)
    error: str = _f("", max=MAX_LINE)
    code: str = _f("", max=32)               # error kind: "not_found", "bad_request", ...


# ---------------------------------------------------------------------------
# events socket


@frozen
class Event(Message):
    """A state change, published with its topic in front: job.<state> or agent.<state>."""

    kind: ClassVar[bytes] = b"EVENT"
    topic: str = _f(max=64)
    data: dict[str, Any] = _f({}, max=MAX_MESSAGE)


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
    return [VERSION, msg.kind, pack(_to_plain(msg))]


def encode_event(topic: str, data: dict[str, Any]) -> list[bytes]:
    """Frames for the PUB socket: topic first, so subscribers can filter on it."""
    ev = Event(topic=topic, data=data)
    return [topic.encode(), VERSION, ev.kind, pack(_to_plain(ev))]


def decode(frames: list[bytes], expect: typing.Iterable[type[Message]] | None = None) -> Message:
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


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, UnicodeDecodeError, OverflowError, RecursionError) as exc:
        raise ProtocolError(f"bad msgpack body: {exc.__class__.__name__}: {str(exc)[:100]}") from None


def from_plain(cls: type[Message], obj: Any) -> Message:
    """Build a message from a decoded map, checking every field."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"{cls.__name__}: body must be a map, got {type(obj).__name__}")
    names, required, nested = _shape(cls)
    if not names.issuperset(obj):
        unknown = sorted(map(str, set(obj) - names))
        raise ProtocolError(f"{cls.__name__}: unknown field {unknown[0]!r}")
    if not required.issubset(obj):
        raise ProtocolError(f"{cls.__name__}: missing field {sorted(required - set(obj))[0]!r}")
    if nested:
        obj = dict(obj)
        for name, convert in nested:
            if name in obj:
                obj[name] = convert(obj[name])
    return cls(**obj)


_SHAPES: dict[type, tuple[frozenset[str], frozenset[str], list[tuple[str, Callable[[Any], Any]]]]] = {}


def _shape(cls: type) -> tuple[frozenset[str], frozenset[str], list[tuple[str, Callable[[Any], Any]]]]:
    """Field names, required names and converters for nested messages, built once per class."""
    if cls not in _SHAPES:
        fields = _fields(cls)
        required = frozenset(n for n, (_, f) in fields.items()
                             if f.default is dataclasses.MISSING
                             and f.default_factory is dataclasses.MISSING)
        nested = []
        for name, (hint, _) in fields.items():
            where = f"{cls.__name__}.{name}"
            if isinstance(hint, type) and issubclass(hint, Message):
                nested.append((name, lambda v, h=hint: from_plain(h, v)))
            elif typing.get_origin(hint) is list:
                (item,) = typing.get_args(hint)
                if isinstance(item, type) and issubclass(item, Message):
                    nested.append((name, lambda v, h=item, w=where: _nested_list(h, v, w)))
        _SHAPES[cls] = (frozenset(fields), required, nested)
    return _SHAPES[cls]


def _nested_list(item: type[Message], value: Any, where: str) -> list[Message]:
    if not isinstance(value, list):
        raise ProtocolError(f"{where}: expected a list")
    if len(value) > MAX_LIST:
        raise ProtocolError(f"{where}: more than {MAX_LIST} items")
    return [from_plain(item, v) for v in value]


def to_plain(msg: Message) -> dict[str, Any]:
    return _to_plain(msg)


def _to_plain(msg: Message) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        value = getattr(msg, f.name)
        if isinstance(value, Message):
            value = _to_plain(value)
        elif isinstance(value, list) and value and isinstance(value[0], Message):
            value = [_to_plain(v) for v in value]
        out[f.name] = value
    return out


_FIELDS: dict[type, dict[str, tuple[Any, dataclasses.Field]]] = {}


def _fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}
    return _FIELDS[cls]


def _check(msg: Message) -> None:
    for name, check in _checkers(type(msg)):
        check(getattr(msg, name))


_CHECKERS: dict[type, list[tuple[str, Callable[[Any], None]]]] = {}


def _checkers(cls: type) -> list[tuple[str, Callable[[Any], None]]]:
    """Per-class field checks, built once from the type hints and field metadata."""
    if cls not in _CHECKERS:
        _CHECKERS[cls] = [(name, _checker(hint, f.metadata, f"{cls.__name__}.{name}"))
                          for name, (hint, f) in _fields(cls).items()]
    return _CHECKERS[cls]


def _checker(hint: Any, meta: typing.Mapping[str, Any], where: str) -> Callable[[Any], None]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = _checker(next(a for a in typing.get_args(hint) if a is not type(None)), meta, where)

        def check_optional(value: Any) -> None:
            if value is not None:
                inner(value)
        return check_optional
    if hint is Any:
        return lambda value: None
    if isinstance(hint, type) and issubclass(hint, Message):
        def check_message(value: Any) -> None:
            if not isinstance(value, hint):
                raise ProtocolError(f"{where}: expected {hint.__name__}")
        return check_message
    if origin is list:
        (item,) = typing.get_args(hint)
        limit = meta.get("items", MAX_LIST)
        item_check = _checker(item, {k: v for k, v in meta.items() if k != "items"}, f"{where}[]")

        def check_list(value: Any) -> None:
            if not isinstance(value, list):
                raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
            if len(value) > limit:
                raise ProtocolError(f"{where}: more than {limit} items")
            for v in value:
                item_check(v)
        return check_list
    if origin is dict:
        max_bytes = meta.get("max")

        def check_map(value: Any) -> None:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ProtocolError(f"{where}: expected a map with string keys")
            if max_bytes is not None and value and len(pack(value)) > max_bytes:
                raise ProtocolError(f"{where}: larger than {max_bytes} bytes")
        return check_map
    if hint is bool:
        def check_bool(value: Any) -> None:
            if value is not True and value is not False:
                raise ProtocolError(f"{where}: expected true/false, got {type(value).__name__}")
        return check_bool
    if hint in (int, float):
        kinds = (int,) if hint is int else (int, float)
        lo, hi = meta.get("min", -2**63), meta.get("max", 2**63)

        def check_number(value: Any) -> None:
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise ProtocolError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
            if value != value or value in (math.inf, -math.inf):
                raise ProtocolError(f"{where}: not a finite number")
            if not lo <= value <= hi:
                raise ProtocolError(f"{where}: {value} is outside {lo}..{hi}")
        return check_number
    if hint is str:
        pattern = meta.get("pattern")
        limit = meta.get("max", MAX_LINE if pattern is None else MAX_NAME + 64)

        def check_str(value: Any) -> None:
            if not isinstance(value, str):
                raise ProtocolError(f"{where}: expected a string, got {type(value).__name__}")
            if len(value) > limit:
                raise ProtocolError(f"{where}: longer than {limit} characters")
            if pattern is not None and not pattern.match(value):
                raise ProtocolError(f"{where}: {value[:40]!r} is not a valid value")
        return check_str
    if hint is bytes:
        limit = meta.get("max", MAX_MESSAGE)

        def check_bytes(value: Any) -> None:
            if not isinstance(value, bytes):
                raise ProtocolError(f"{where}: expected bytes, got {type(value).__name__}")
            if len(value) > limit:
                raise ProtocolError(f"{where}: longer than {limit} bytes")
        return check_bytes
    raise TypeError(f"{where}: unsupported field type {hint!r}")  # a bug in this module


# ---------------------------------------------------------------------------
# spool files: a Submit kept on disk by the CLI until the broker has committed it


def spool_bytes(msg: Submit) -> bytes:
    """The content of a spool file for `msg` (same checks as the wire)."""
    return pack(_to_plain(msg))


def spool_load(data: bytes) -> Submit:
    """Parse a spool file's content; ProtocolError if it is not a valid Submit."""
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"spool file of {len(data)} bytes exceeds {MAX_MESSAGE}")
    msg = from_plain(Submit, unpack(data))
    assert isinstance(msg, Submit)
    return msg
