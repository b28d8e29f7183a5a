"""luzia.protocol: round trips, and nothing but ProtocolError out of any input."""

from __future__ import annotations

import msgpack
import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from luzia import message, protocol as p
from luzia.errors import ProtocolError
from luzia.ids import new_job_id

CLASSES: tuple[type[p.Message], ...] = (*p.MESSAGES.values(), p.JobSpec, p.HeldJob)
HOSTILE = '$(touch /tmp/pwned) "quotes" ; newline\n and \x1b[31m `id` \\ {task} %s'


def job(**kw):
    return p.JobSpec(**{"id": new_job_id(), "project": "demo", "task": HOSTILE, "user": "alice", **kw})


def test_every_message_round_trips():
    j = job(priority=0, after=[new_job_id()], metadata={"k": [1, "v"]})
    msgs = [
        p.Submit(job=j), p.Assign(job=j, attempt=2),
        p.Hello(name="skadi", slots=2, capabilities=["code"], held=[p.HeldJob(job_id=j.id, exit_code=None)]),
        p.Heartbeat(cpu=0.5, memory=0.25, running=[j.id]), p.Started(job_id=j.id, attempt=1),
        p.Progress(job_id=j.id, attempt=1, percent=50, tail=["a", "b"]),
        p.Done(job_id=j.id, attempt=1, exit_code=-9, reason="timeout"),
        p.LogRequest(req=1, job_id=j.id), p.LogChunk(req=1, job_id=j.id, data=b"\x00\xff"),
        p.Welcome(adopt=[j.id]), p.Cancel(job_id=j.id), p.Disconnect(),
        p.Request(req=3, op="jobs.get", args={"id": j.id}), p.Reply(req=3, result={"x": None}),
    ]
    for msg in msgs:
        assert p.decode(p.encode(msg)) == msg
    back = p.decode(p.encode(p.Submit(job=j)))
    assert isinstance(back, p.Submit) and back.job.task == HOSTILE


def test_event_frames_carry_the_topic_first():
    frames = p.encode_event("job.running", {"id": "x"})
    assert frames[0] == b"job.running"
    assert p.decode_event(frames).data == {"id": "x"}


@pytest.mark.parametrize("frames, why", [
    ([b"LZ1", b"SUBMIT"], "expected 3 frames"),
    ([b"LZ9", b"SUBMIT", b""], "unsupported protocol version"),
    ([b"LZ1", b"BOGUS", b""], "unknown message type"),
    ([b"LZ1", b"SUBMIT", b"\xc1"], "bad msgpack"),
    ([b"LZ1", b"SUBMIT", msgpack.packb([1, 2])], "Submit: Expected `object`, got `array`"),
    ([b"LZ1", b"SUBMIT", msgpack.packb({"job": {"id": "nope"}})], "Submit.job.id: Expected `str` matching"),
    ([b"LZ1", b"SUBMIT", msgpack.packb({"job": {"id": "113754-a2f5c10e9b3d"}})],
     "Submit.job: Object missing required field `project`"),
    ([b"LZ1", b"HEARTBEAT", msgpack.packb({"cpu": "high"})], "Heartbeat.cpu: Expected `float`, got `str`"),
    ([b"LZ1", b"HEARTBEAT", msgpack.packb({"cpu": 2.0})], "Heartbeat.cpu: Expected `float` <= 1.0"),
    ([b"LZ1", b"HEARTBEAT", msgpack.packb({"cpu": float("nan")})], "Heartbeat.cpu"),
    ([b"LZ1", b"HEARTBEAT", msgpack.packb({"slots": True})], "Heartbeat.slots: Expected `int`, got `bool`"),
    ([b"LZ1", b"HELLO", msgpack.packb({"name": "../x", "slots": 1, "capabilities": []})], "Hello.name"),
    ([b"LZ1", b"HELLO", msgpack.packb({"name": "x\n", "slots": 1, "capabilities": []})], "Hello.name"),
    ([b"LZ1", b"REPLY", msgpack.packb({"req": 1, "result": msgpack.ExtType(5, b"x")})], "extension"),
    ([b"LZ1", b"REPLY", b"\x82\xa3req\x01\xa6result" + b"\x91" * 100_000 + b"\xc0"], "bad msgpack"),
])
def test_bad_input_raises_protocol_error(frames, why):
    with pytest.raises(ProtocolError, match=why):
        p.decode(frames)


def test_sizes_are_bounded():
    with pytest.raises(ProtocolError, match="JobSpec.task"):
        p.check(job(task="x" * (p.MAX_TASK + 1)))
    with pytest.raises(ProtocolError, match="Submit.job.task"):
        p.encode(p.Submit(job=job(task="x" * (p.MAX_TASK + 1))))
    with pytest.raises(ProtocolError, match="JobSpec.metadata"):
        job(metadata={"blob": "x" * p.MAX_METADATA})
    with pytest.raises(ProtocolError):
        p.decode([b"LZ1", b"SUBMIT", b"\x00" * (p.MAX_MESSAGE + 1)])
    with pytest.raises(ProtocolError, match="exceeds"):
        p.encode(p.Reply(req=1, result="x" * p.MAX_MESSAGE))


def test_a_message_that_breaks_a_limit_never_leaves():
    for bad in (p.Heartbeat(cpu=1.5), p.Started(job_id="nope", attempt=1),
                p.Progress(job_id=new_job_id(), attempt=1, tail=["x"] * (p.MAX_TAIL_LINES + 1)),
                p.Done(job_id=new_job_id(), attempt=0, exit_code=0), p.Heartbeat(cpu=float("inf"))):
        with pytest.raises(ProtocolError):
            p.encode(bad)


def test_fields_a_peer_does_not_know_are_ignored_and_missing_ones_take_their_default():
    # a newer peer's field: ignored, not an error (docs/PROTOCOL.md, "Versions")
    frames = [b"LZ1", b"HEARTBEAT", msgpack.packb({"cpu": 0.5, "colour": "red", "nested": {"a": [1]}})]
    assert p.decode(frames) == p.Heartbeat(cpu=0.5)
    spec = {"id": new_job_id(), "project": "demo", "task": "x", "user": "u", "workspace": "w"}
    submit = p.decode([b"LZ1", b"SUBMIT", msgpack.packb({"job": spec, "submitter": "bob"})])
    assert isinstance(submit, p.Submit) and submit.job.id == spec["id"]
    # an older peer leaves out what it does not know: the default, which means what it did
    hello = p.decode([b"LZ1", b"HELLO", msgpack.packb({"name": "old", "slots": 1, "capabilities": []})])
    assert isinstance(hello, p.Hello) and hello.protocol == 1 and hello.version == ""


JOB = "113754-a2f5c10e9b3d"


@pytest.mark.parametrize("kind, body, defaults", [
    # what the first release (protocol 1) sends: the fields added since take their defaults
    (b"HELLO", {"name": "old", "slots": 1, "capabilities": [], "tags": [], "held": [], "pid": 7},
     {"protocol": 1, "version": "", "instance": ""}),
    (b"HEARTBEAT", {"cpu": 0.5, "running": [JOB], "slots": 2}, {"degraded": ""}),
    (b"PROGRESS", {"job_id": JOB, "attempt": 1, "percent": 5.0, "message": "m", "tail": ["t"],
                   "stalled": False, "stalled_for": 0.0},
     {"needs_input": False, "needs_input_lines": []}),
    (b"DONE", {"job_id": JOB, "attempt": 1, "exit_code": 0, "reason": "", "tail": []},
     {"started": True}),
])
def test_a_protocol_1_body_decodes_with_the_later_fields_at_their_defaults(kind, body, defaults):
    msg = p.decode([b"LZ1", kind, msgpack.packb(body)])
    assert {name: getattr(msg, name) for name in defaults} == defaults
    assert set(msgpack.unpackb(p.encode(msg, peer=1)[2])) <= message.V1_FIELDS[type(msg).__name__]


def test_a_protocol_1_peer_is_not_sent_the_later_fields():
    later = [p.Hello(name="a", slots=1, capabilities=[], protocol=2, version="x", instance="f00"),
             p.Heartbeat(degraded="disk full"), p.Disconnect(reason="no", refused=True),
             p.Progress(job_id=JOB, attempt=1, needs_input=True, needs_input_lines=["y/n?"]),
             p.Done(job_id=JOB, attempt=1, exit_code=-1, started=False)]
    for msg in later:
        fields = set(msgpack.unpackb(p.encode(msg, peer=1)[2]))
        assert fields <= message.V1_FIELDS[type(msg).__name__], msg
        assert p.decode(p.encode(msg)) == msg            # a protocol-2 peer gets them all


def test_a_body_leaves_out_defaults_and_a_protocol_1_body_has_only_protocol_1_fields():
    assert msgpack.unpackb(p.encode(p.Heartbeat(cpu=0.5))[2]) == {"cpu": 0.5}
    welcome = p.Welcome(adopt=["113754-a2f5c10e9b3d"], protocol=p.PROTOCOL, version="9.9")
    assert set(msgpack.unpackb(p.encode(welcome)[2])) == {"adopt", "protocol", "version"}
    assert set(msgpack.unpackb(p.encode(welcome, peer=1)[2])) == {
        "heartbeat_interval", "liveness", "adopt", "drop"}
    for cls in CLASSES:
        assert cls.__name__ in message.V1_FIELDS
        assert message.V1_FIELDS[cls.__name__] <= set(cls.__struct_fields__)


def test_every_field_has_a_limit():
    """A string, bytes or list without a bound, or a float that may be inf/nan, is a bug."""
    for cls in CLASSES:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            _bounded(f"{cls.__name__}.{field.name}", field.type)


def _bounded(where, t):
    i = msgspec.inspect
    if isinstance(t, i.UnionType):
        for member in t.types:
            _bounded(where, member)
    elif isinstance(t, (i.StrType, i.BytesType)):
        assert t.max_length is not None or getattr(t, "pattern", None), where
    elif isinstance(t, i.ListType):
        assert t.max_length is not None, where
        _bounded(where + "[]", t.item_type)
    elif isinstance(t, (i.FloatType, i.IntType)):
        assert None not in ((t.ge if t.ge is not None else t.gt), (t.le if t.le is not None else t.lt)), where
    elif isinstance(t, i.DictType):
        assert where.endswith((".metadata", ".args", ".data")), where   # bounded by size
    else:
        assert isinstance(t, (i.BoolType, i.NoneType, i.AnyType, i.StructType)), where


def test_no_pattern_takes_a_trailing_newline():
    """`$` matches before a final newline: every pattern ends in \\Z, and "name\\n" is refused."""
    from luzia.ids import JOB_ID_RE, JOB_PREFIX_RE
    jid = new_job_id()
    assert JOB_ID_RE.fullmatch(jid) and not JOB_ID_RE.match(jid + "\n")
    assert not JOB_PREFIX_RE.match(jid[:8] + "\n")
    for bad in (job(user="alice\n"), job(project="demo\n"), job(id=jid + "\n"),
                job(after=[jid + "\n"]), p.Request(req=1, op="ping\n"),
                p.Hello(name="gpu1\n", slots=1, capabilities=[]),
                p.Hello(name="gpu1", slots=1, capabilities=["code\n"]),
                p.Heartbeat(running=[jid + "\n"])):
        with pytest.raises(ProtocolError, match="matching regex"):
            p.check(bad)
    for cls in CLASSES:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            for t in _strings(field.type):
                assert t.pattern is None or t.pattern.endswith("\\Z"), (cls, field.name)


def _strings(t):
    i = msgspec.inspect
    if isinstance(t, i.StrType):
        yield t
    elif isinstance(t, i.ListType):
        yield from _strings(t.item_type)
    elif isinstance(t, i.UnionType):
        for member in t.types:
            yield from _strings(member)


def test_decode_accepts_only_the_socket_s_messages():
    frames = p.encode(p.Disconnect())
    with pytest.raises(ProtocolError, match="not accepted"):
        p.decode(frames, expect=(p.Submit,))


def test_spool_files_round_trip_and_reject_garbage():
    msg = p.Submit(job=job())
    assert p.spool_load(p.spool_bytes(msg)) == msg
    with pytest.raises(ProtocolError):
        p.spool_load(b"\x93\x01")


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(p.MESSAGES)), body=msgpack_values)
def test_random_bodies_never_raise_anything_but_protocol_error(kind, body):
    try:
        p.decode([p.VERSION, kind, msgpack.packb(body, use_bin_type=True)])
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.binary(max_size=64), max_size=5))
def test_random_frames_never_raise_anything_but_protocol_error(frames):
    try:
        p.decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(p.MESSAGES)), data=st.data())
def test_mutated_valid_bodies_never_raise_anything_but_protocol_error(kind, data):
    cls = p.MESSAGES[kind]
    names = sorted(cls.__struct_fields__)
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    body = {name: data.draw(msgpack_values) for name in chosen}
    try:
        p.decode([p.VERSION, kind, msgpack.packb(body, use_bin_type=True)])
    except ProtocolError:
        pass
