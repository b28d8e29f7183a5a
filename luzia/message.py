"""A message: a frozen dataclass whose every field is checked when it is built, and its
conversion to and from the plain maps that msgpack carries. The messages themselves, their
frames and the protocol's own limits are in luzia/protocol.py; this is the machinery under
them, and the only other module that touches msgpack.

A field says its checks with `field(default, max=, min=, pattern=, items=)`: `max` is a
string's length, a number's upper bound or a map's packed size; `min` a number's lower
bound; `pattern` a regex a string (or each string in a list) must match; `items` a list's
length. A field that names no limit gets the defaults below. Anything wrong raises
ProtocolError, whether the message came off the wire or was built by our own code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar

import msgpack

from luzia.errors import ProtocolError
from luzia.frozen import Frozen

MAX_MESSAGE = 1 << 20          # bytes in one frame; sockets also set zmq.MAXMSGSIZE
MAX_NAME = 64
MAX_LINE = 2048                # a string field without a pattern or a limit of its own
MAX_LIST = 1024                # a list field without an `items` limit


def field(default: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A message field with checks: max (length or value), min, pattern, items (list length)."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=checks)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=checks)
    return dataclasses.field(default=default, metadata=checks)


class Message(Frozen):
    """Base of every message. Subclasses are `@frozen` dataclasses with a `kind` (the TYPE
    frame)."""

    kind: ClassVar[bytes] = b""

    def __post_init__(self) -> None:
        _check(self)


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


# a class's field names, its required names, and a converter for each nested-message field
_Shape = tuple[frozenset[str], frozenset[str], list[tuple[str, Callable[[Any], Any]]]]
_SHAPES: dict[type, _Shape] = {}


def _shape(cls: type) -> _Shape:
    """Field names, required names and converters for nested messages, built once per class."""
    if cls not in _SHAPES:
        fields = _fields(cls)
        required = frozenset(n for n, (_, f) in fields.items()
                             if f.default is dataclasses.MISSING
                             and f.default_factory is dataclasses.MISSING)
        nested: list[tuple[str, Callable[[Any], Any]]] = []
        for name, (hint, _) in fields.items():
            if isinstance(hint, type) and issubclass(hint, Message):
                nested.append((name, functools.partial(from_plain, hint)))
            elif typing.get_origin(hint) is list:
                (item,) = typing.get_args(hint)
                if isinstance(item, type) and issubclass(item, Message):
                    where = f"{cls.__name__}.{name}"
                    nested.append((name, functools.partial(_nested_list, item, where=where)))
        _SHAPES[cls] = (frozenset(fields), required, nested)
    return _SHAPES[cls]


def _nested_list(item: type[Message], value: Any, *, where: str) -> list[Message]:
    if not isinstance(value, list):
        raise ProtocolError(f"{where}: expected a list")
    if len(value) > MAX_LIST:
        raise ProtocolError(f"{where}: more than {MAX_LIST} items")
    return [from_plain(item, v) for v in value]


def to_plain(msg: Message) -> dict[str, Any]:
    """The message as a plain map (nested messages too), ready for `pack`."""
    out = {}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, Message):
            value = to_plain(value)
        elif isinstance(value, list) and value and isinstance(value[0], Message):
            value = [to_plain(v) for v in value]
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
