"""A message: a frozen msgspec Struct whose fields carry their limits, and the one place that
turns messages into msgpack bodies and back. The messages themselves, their frames and the
protocol's own limits are in luzia/protocol.py; this is the machinery under them, and the
only other module that touches msgpack.

A field says its limits in its type, `Annotated[str, Meta(max_length=32)]`, or with one of
the names below (`Line`, `JobId`, `Name`, `Count`, ...): msgspec checks them all, in C, while
it decodes. Building a message does not check it (a Struct's `__init__` does not); `check`
does, and `body` checks what it encodes, so a message that breaks a limit never leaves
(ProtocolError, as for one that arrives).

Compatibility between releases (docs/PROTOCOL.md, "Versions"): a body leaves out the fields
that hold their default (`omit_defaults`), and a decoder fills in the default of a field the
body does not have and ignores a field it does not know. Protocol 1 (the first release) was
stricter: it refused unknown fields, so a body for a protocol-1 peer carries only the fields
that protocol 1 had (`V1_FIELDS`).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, ClassVar, TypeVar

# msgspec reads annotations with typing_extensions when it is installed (the dashboard's
# packages bring it): 7 ms of a one-shot submit's import for what Python 3.11's typing does
if "typing_extensions" not in sys.modules:
    sys.modules["typing_extensions"] = None      # type: ignore[assignment]  # import fails
    try:
        import msgspec
    finally:
        del sys.modules["typing_extensions"]
import msgspec  # noqa: E402
from msgspec import Meta  # noqa: E402

from luzia.errors import ProtocolError

MAX_MESSAGE = 1 << 20          # bytes in one frame; sockets also set zmq.MAXMSGSIZE
MAX_NAME = 64
MAX_LINE = 2048                # a string field without a limit of its own
MAX_LIST = 1024                # a list field without a limit of its own
BIG = 2**63 - 1                # numbers without a range of their own stay within +-this

# field types with their limits, named once (a field with a limit of its own says it inline)
Line = Annotated[str, Meta(max_length=MAX_LINE)]
Count = Annotated[int, Meta(ge=0, le=BIG)]                 # offsets, sizes, pids, request ids
Seconds = Annotated[float, Meta(ge=0, le=30 * 86400)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
Unknown = Annotated[float, Meta(ge=-1, le=1)]              # a fraction, or -1: not measured
Map = dict[str, Any]                                        # bounded by the frame's size


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every message: a frozen Struct with a `kind` (its TYPE frame). A subclass
    repeats `frozen=True` (msgspec does not inherit it from a base's options)."""

    kind: ClassVar[bytes] = b""


M = TypeVar("M", bound=Message)

_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[type, msgspec.msgpack.Decoder] = {}     # one per class, built at first use


def _no_ext(code: int, data: memoryview) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _decoder(cls: type) -> msgspec.msgpack.Decoder:
    dec = _DECODERS.get(cls)
    if dec is None:
        dec = _DECODERS[cls] = msgspec.msgpack.Decoder(cls, ext_hook=_no_ext)
    return dec


def body(msg: Message, peer: int = 0) -> bytes:
    """The msgpack body of `msg`, checked against every limit (ProtocolError if one is
    broken). `peer` 1: only the fields protocol 1 knows (V1_FIELDS)."""
    try:
        data = _ENCODER.encode(to_plain(msg, v1=True) if peer == 1 and _newer_than_v1(type(msg))
                               else msg)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise ProtocolError(f"{type(msg).__name__}: cannot be encoded: {exc}") from None
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"{type(msg).__name__}: {len(data)} bytes exceeds {MAX_MESSAGE}")
    parse(type(msg), data)        # what we send passes the checks the peer will make
    return data


def parse(cls: type[M], data: bytes | memoryview) -> M:
    """Decode and check a body as `cls`; ProtocolError for anything wrong."""
    decoder = _decoder(cls)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError(_where(cls, str(exc))) from None
    except (msgspec.DecodeError, RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError(f"bad msgpack body: {exc.__class__.__name__}: {str(exc)[:100]}") from None


def check(msg: M) -> M:
    """`msg` itself if every field is within its limits (ProtocolError otherwise)."""
    body(msg)
    return msg


def from_plain(cls: type[M], obj: Any) -> M:
    """Build a message from plain values (a map read from JSON), checking every field."""
    try:
        return msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        raise ProtocolError(_where(cls, str(exc))) from None


def to_plain(msg: Message, v1: bool = False) -> dict[str, Any]:
    """Every field of the message (defaults too) as plain values, nested messages as maps;
    with `v1`, only the fields protocol 1 had (V1_FIELDS)."""
    keep = V1_FIELDS[type(msg).__name__] if v1 else msg.__struct_fields__
    out = {}
    for name in msg.__struct_fields__:
        if name not in keep:
            continue
        value = getattr(msg, name)
        if isinstance(value, Message):
            value = to_plain(value, v1)
        elif isinstance(value, list) and value and isinstance(value[0], Message):
            value = [to_plain(v, v1) for v in value]
        out[name] = value
    return out


def replace(msg: M, **changes: Any) -> M:
    """A copy of `msg` with some fields changed (checked when it is sent, as any message)."""
    return msgspec.structs.replace(msg, **changes)


def pack(obj: Any) -> bytes:
    """Plain values as msgpack (what a field's size limit is measured in)."""
    return _ENCODER.encode(obj)


def _where(cls: type, error: str) -> str:
    """msgspec's "Expected ... - at `$.job.user`" as "Submit.job.user: Expected ..."."""
    what, _, path = error.partition(" - at `$")
    return f"{cls.__name__}{path.rstrip('`')}: {what}"


# ---------------------------------------------------------------------------
# protocol 1: the first release refused a field it did not know

V1_FIELDS: dict[str, frozenset[str]] = {name: frozenset(fields.split()) for name, fields in {
    "JobSpec": "id project task user priority type timeout max_retries after metadata workdir "
               "submitted_at",
    "HeldJob": "job_id attempt exit_code",
    "Submit": "job",
    "Hello": "name slots capabilities tags held pid",
    "Heartbeat": "cpu memory gpu_memory gpu_util gpu_free_gb running slots",
    "Started": "job_id attempt session pid",
    "Progress": "job_id attempt percent message tail stalled stalled_for",
    "Done": "job_id attempt exit_code reason tail",
    "LogChunk": "req job_id offset data size error",
    "Welcome": "heartbeat_interval liveness adopt drop",
    "Assign": "job attempt",
    "Cancel": "job_id reason",
    "LogRequest": "req job_id offset limit",
    "Disconnect": "reason",
    "Request": "req op args",
    "Reply": "req ok result error code",
    "Event": "topic data",
}.items()}


_NEWER_THAN_V1: dict[type, bool] = {}


def _newer_than_v1(cls: type[Message]) -> bool:
    """Has `cls`, or a message inside it, a field protocol 1 did not know?"""
    if cls not in _NEWER_THAN_V1:
        from msgspec import inspect  # only when a message first goes to a protocol-1 peer

        def newer(t: Any) -> bool:
            if isinstance(t, inspect.StructType):
                return (not V1_FIELDS[t.cls.__name__].issuperset(t.cls.__struct_fields__)
                        or any(newer(f.type) for f in t.fields))
            if isinstance(t, inspect.ListType):
                return newer(t.item_type)
            if isinstance(t, inspect.UnionType):
                return any(newer(m) for m in t.types)
            return False
        _NEWER_THAN_V1[cls] = newer(inspect.type_info(cls))
    return _NEWER_THAN_V1[cls]
