"""luzia/submitbody.py packs a Submit without msgspec: it must give protocol's bytes, and
decline (None) whatever it is not sure of, so that protocol judges it (issue 15)."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings, strategies as st

from luzia import protocol, submitbody
from luzia.errors import ProtocolError
from tests.helpers import examples


def reference(job: dict) -> bytes | None:
    """What protocol makes of these fields: the spool file's and the wire's body, or None
    when it refuses them (as the CLI's check does: the JobSpec first, then the Submit)."""
    try:
        return protocol.spool_bytes(protocol.Submit(job=protocol.check(protocol.JobSpec(**job))))
    except (ProtocolError, TypeError, OverflowError):   # a field JobSpec has not, an int
        return None                                     # msgpack has not (JobSpec.__post_init__)


def limits(t: msgspec.inspect.Type) -> tuple[str, tuple]:
    """A msgspec type as submitbody.FIELDS says it."""
    if isinstance(t, msgspec.inspect.StrType):
        assert t.min_length is None
        return "str", (t.max_length, t.pattern)
    if isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        assert t.gt is None and t.lt is None and t.multiple_of is None
        return ("int" if isinstance(t, msgspec.inspect.IntType) else "float"), (t.ge, t.le)
    if isinstance(t, msgspec.inspect.ListType):
        kind, (most, pattern) = limits(t.item_type)
        assert kind == "str" and most is None and t.min_length is None
        return "list", (t.max_length, pattern)
    assert isinstance(t, msgspec.inspect.DictType), t
    assert isinstance(t.key_type, msgspec.inspect.StrType) and t.key_type.pattern is None
    assert isinstance(t.value_type, msgspec.inspect.AnyType) and t.max_length is None
    return "map", ()


def test_the_fields_are_jobspecs_and_the_frames_protocols():
    info = msgspec.inspect.type_info(protocol.JobSpec)
    assert isinstance(info, msgspec.inspect.StructType)
    theirs = []
    for f in info.fields:
        default = f.default_factory() if f.default is msgspec.NODEFAULT and not f.required \
            else submitbody.REQUIRED if f.required else f.default
        theirs.append((f.name, default, *limits(f.type)))
    assert list(submitbody.FIELDS) == theirs, "submitbody.FIELDS must repeat JobSpec's fields"
    submit = msgspec.inspect.type_info(protocol.Submit)
    assert isinstance(submit, msgspec.inspect.StructType)
    assert [f.name for f in submit.fields] == ["job"]
    assert submitbody.FRAMES == (protocol.VERSION, protocol.Submit.kind)
    assert submitbody.MAX_METADATA == protocol.MAX_METADATA
    job: dict[str, Any] = {"id": "113754-a2f5c10e9b3d", "project": "p", "task": "t", "user": "u"}
    body = submitbody.pack(job)
    assert body is not None
    assert submitbody.frames(body) == protocol.encode(protocol.Submit(job=protocol.JobSpec(**job)))


def pattern(regex: str) -> st.SearchStrategy[str]:
    return st.from_regex(regex, fullmatch=True)


job_ids = pattern(protocol.JOB_ID_PATTERN)
texts = st.text(max_size=40) | st.text(st.characters(codec="utf-8"), min_size=30, max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(*submitbody.INT_RANGE) | st.floats() | texts,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(texts, children, max_size=4)),
    max_leaves=12)

# every field of a JobSpec, within its limits; a field left out takes its default
VALID = {
    "id": job_ids,
    "project": pattern(protocol.NAME_PATTERN),
    "task": texts | st.integers(65530, 65536).map(lambda n: "é" * n),
    "user": pattern(protocol.NAME_PATTERN),
    "priority": st.integers(0, 3),
    "type": st.text(max_size=32),
    "timeout": st.floats(0, 30 * 86400),
    "max_retries": st.integers(0, 100),
    "after": st.lists(job_ids, max_size=64),
    "metadata": st.dictionaries(texts, json_values, max_size=6)
                | st.integers(16_370, 16_390).map(lambda n: {"k": "x" * n}),
    "workdir": texts | st.just("/" * 4096),
    "submitted_at": st.floats(0, 2**63),
    "repo": texts,
    "base": st.text(max_size=256),
    "base_commit": st.just("") | pattern(r"[0-9a-f]{40}") | pattern(r"[0-9a-f]{64}"),
}
REQUIRED = ("id", "project", "task", "user")
OPTIONAL = [name for name in VALID if name not in REQUIRED]


@st.composite
def valid_jobs(draw: st.DrawFn) -> dict:
    given_names = [*REQUIRED, *draw(st.lists(st.sampled_from(OPTIONAL), unique=True))]
    return {name: draw(VALID[name]) for name in given_names}


# anything at all in one field: wrong types, out of range, broken patterns, odd floats
ODD = (st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8)
       | st.just(-0.0) | st.just(0) | st.just(math.nan) | st.just(2**64) | st.just("a\n")
       | st.just(("113754-a2f5c10e9b3d",)) | st.just({1: "x"}) | st.just({"t": (1, 2)})
       | st.just({"b": b"x"}) | st.just({"s": {1, 2}}) | st.just({"n": -2**63 - 1})
       | st.just(["113754-A2F5C10E9B3D"]) | st.just("x" * 65537) | st.just("\ud800")
       | st.lists(job_ids, min_size=65, max_size=66) | st.dictionaries(texts, json_values))


@given(job=valid_jobs())
@settings(max_examples=examples(3000))
@example(job={"id": "113754-a2f5c10e9b3d", "project": "p", "task": "t", "user": "u",
              "timeout": 0.0, "priority": 2, "type": "", "after": [], "metadata": {}})
def test_valid_jobs_are_packed_here_byte_for_byte_as_protocol_packs_them(job):
    ours = submitbody.pack(job)
    theirs = reference(job)
    if theirs is None:      # only the metadata's packed size can make a drawn job invalid
        assert ours is None
        return
    assert ours == theirs
    decoded = protocol.decode(submitbody.frames(ours))    # what the broker reads
    assert isinstance(decoded, protocol.Submit) and protocol.spool_bytes(decoded) == ours


@given(job=valid_jobs(), name=st.sampled_from([*VALID, "colour"]), value=ODD)
@settings(max_examples=examples(3000))
def test_anything_else_is_either_packed_as_protocol_packs_it_or_left_to_protocol(job, name, value):
    job[name] = value
    ours = submitbody.pack(job)
    if ours is not None:
        assert ours == reference(job)


@pytest.mark.parametrize("name, value", [
    ("timeout", 0), ("priority", True), ("metadata", {"t": (1,)}),
    ("user", "alice\n"), ("task", "é" * 65537), ("after", ["113754-a2f5c10e9b3d"] * 65),
    ("metadata", {"n": 2**64}), ("metadata", {"k": "x" * 16_384}), ("colour", "red"),
])
def test_what_is_not_plainly_valid_is_left_to_protocol(name, value):
    job = {"id": "113754-a2f5c10e9b3d", "project": "p", "task": "t", "user": "u", name: value}
    assert submitbody.pack(job) is None
