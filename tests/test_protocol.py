"""luzia.protocol: round trips, and nothing but ProtocolError out of any input."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from luzia import protocol as p
from luzia.errors import ProtocolError
from luzia.ids import new_job_id

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
    ([b"LZ1", b"SUBMIT", msgpack.packb([1, 2])], "must be a map"),
    ([b"LZ1", b"SUBMIT", msgpack.packb({"job": {"id": "nope"}})], "missing field"),
    ([b"LZ1", b"HEARTBEAT", msgpack.packb({"cpu": "high"})], "expected float"),
    ([b"LZ1", b"HEARTBEAT", msgpack.packb({"cpu": 2.0})], "outside"),
    ([b"LZ1", b"HEARTBEAT", msgpack.packb({"extra": 1})], "unknown field"),
    ([b"LZ1", b"HELLO", msgpack.packb({"name": "../x", "slots": 1, "capabilities": []})], "not a valid"),
])
def test_bad_input_raises_protocol_error(frames, why):
    with pytest.raises(ProtocolError, match=why):
        p.decode(frames)


def test_sizes_are_bounded():
    with pytest.raises(ProtocolError):
        job(task="x" * (p.MAX_TASK + 1))
    with pytest.raises(ProtocolError):
        job(metadata={"blob": "x" * p.MAX_METADATA})
    with pytest.raises(ProtocolError):
        p.decode([b"LZ1", b"SUBMIT", b"\x00" * (p.MAX_MESSAGE + 1)])


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
    names = sorted(f.name for f in dataclasses.fields(cls))
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    body = {name: data.draw(msgpack_values) for name in chosen}
    try:
        p.decode([p.VERSION, kind, msgpack.packb(body, use_bin_type=True)])
    except ProtocolError:
        pass
