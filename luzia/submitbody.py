"""A Submit's body packed without msgspec, for the one-shot submit (issue 15).

`import msgspec` is the largest piece of a fresh `luzia PROJECT TASK` process (≈ 18 ms of
CPU, with inspect, uuid, decimal, datetime and platform under it), and the CLI needs it
only to pack one message. Here the same body is packed with msgpack (which zmq's floor
imports anyway), byte for byte what `protocol.spool_bytes(Submit(job=JobSpec(**fields)))`
gives, but only for fields that are plainly valid: `pack` returns None for anything it is
not sure of (a value out of a limit, a type it does not pack the way msgspec does), and the
caller hands those to luzia/protocol.py, which judges them and says what is wrong.

Nothing is decided here that msgspec would decide otherwise: FIELDS repeats JobSpec's
fields, defaults and limits, and tests/test_submitbody.py holds it equal to protocol.JobSpec
(read with msgspec.inspect) and the bytes equal to protocol's over many random jobs. The
broker still decodes every Submit with msgspec, the one judge of what it takes.
"""

from __future__ import annotations

import re
from typing import Any

from luzia.ids import JOB_ID_RE

FRAMES = (b"LZ1", b"SUBMIT")       # protocol.VERSION, Submit.kind
MAX_METADATA = 16 * 1024           # protocol.MAX_METADATA: bytes of metadata, packed
INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack and msgspec both pack as an integer

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
COMMIT = r"^(?:[0-9a-f]{40}(?:[0-9a-f]{24})?)?\Z"
REQUIRED = object()

# protocol.JobSpec's fields in its order: (name, default, kind, limits), the limits as
# msgspec.inspect says them: str (max_length, pattern), int and float (ge, le),
# list of str (max_length, item pattern), map (str keys, any plain values)
FIELDS: tuple[tuple[str, Any, str, tuple[Any, ...]], ...] = (
    ("id", REQUIRED, "str", (None, JOB_ID_RE.pattern)),
    ("project", REQUIRED, "str", (None, NAME)),
    ("task", REQUIRED, "str", (64 * 1024, None)),
    ("user", REQUIRED, "str", (None, NAME)),
    ("priority", 2, "int", (0, 3)),
    ("type", "", "str", (32, None)),
    ("timeout", 0.0, "float", (0, 30 * 86400)),
    ("max_retries", 0, "int", (0, 100)),
    ("after", [], "list", (64, JOB_ID_RE.pattern)),
    ("metadata", {}, "map", ()),
    ("workdir", "", "str", (4096, None)),
    ("submitted_at", 0.0, "float", (0, 2**63)),
    ("repo", "", "str", (4096, None)),
    ("base", "", "str", (256, None)),
    ("base_commit", "", "str", (None, COMMIT)),
)
NAMES = frozenset(name for name, *_ in FIELDS)


def frames(body: bytes) -> list[bytes]:
    """A Submit's frames on the wire, as protocol.encode makes them."""
    return [*FRAMES, body]


def body(job: dict[str, Any]) -> bytes:
    """The Submit body for a JobSpec's fields, the spool file's and the wire's: packed here
    when they are plainly valid, else by protocol, which judges them (ProtocolError)."""
    data = pack(job)
    if data is None:
        from luzia import protocol
        data = protocol.spool_bytes(protocol.Submit(job=protocol.check(protocol.JobSpec(**job))))
    return data


def pack(job: dict[str, Any]) -> bytes | None:
    """The Submit body for a JobSpec's fields (missing ones take their default), or None
    when they are not plainly valid: protocol judges those."""
    if not NAMES.issuperset(job):
        return None
    import msgpack
    out: dict[str, Any] = {}
    for name, default, kind, limits in FIELDS:
        value = job.get(name, default)
        if value is REQUIRED or not _fits(value, kind, limits):
            return None
        # msgspec's omit_defaults: an empty list or map, else the default object itself
        # (a float equal to 0.0 is still sent: msgspec compares by identity)
        if value is default or (kind in ("list", "map") and not value):
            continue
        out[name] = value
    try:
        if out.get("metadata") and len(msgpack.packb(out["metadata"])) > MAX_METADATA:
            return None
        return msgpack.packb({"job": out})
    except (TypeError, ValueError, OverflowError):   # e.g. a str that is not UTF-8
        return None


def _fits(value: Any, kind: str, limits: tuple[Any, ...]) -> bool:
    if kind == "str":
        return _text(value, *limits)
    if kind in ("int", "float"):
        low, high = limits
        return type(value) is (int if kind == "int" else float) and low <= value <= high
    if kind == "list":
        most, pattern = limits
        return (type(value) is list and len(value) <= most
                and all(_text(item, None, pattern) for item in value))
    return type(value) is dict and _plain(value)


def _text(value: Any, most: int | None, pattern: str | None) -> bool:
    return (type(value) is str and (most is None or len(value) <= most)
            and (pattern is None or re.search(pattern, value) is not None))


def _plain(value: Any) -> bool:
    """Packed alike by msgpack and msgspec, and read back as the same value: maps with str
    keys, lists, str, int in range, float, bool, None (what JSON gives)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str for key in item):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not INT_RANGE[0] <= item <= INT_RANGE[1]:
                return False
        elif kind not in (str, float, bool, type(None)):
            return False
    return True
