"""Fuzz every socket of ONE real broker process (started once for this module) with
hypothesis-made frames: random bytes, valid-looking frames with random bodies, and
oversized messages. The broker stays up, answers a normal ping, counts what it dropped,
and loses none of the jobs submitted around the fuzzing."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings, strategies as st

from luzia import protocol
from luzia.ids import new_job_id
from tests.fleet import LocalFleet
from tests.helpers import wait_for

EXAMPLES = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
KINDS = sorted(protocol.MESSAGES) + [b"", b"NOPE"]

plain = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
                     | st.text(max_size=30)
                     | st.binary(max_size=30),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
bodies = st.one_of(st.binary(max_size=300), plain.map(msgpack.packb),
                   st.dictionaries(st.sampled_from(["id", "job", "name", "slots", "req", "op",
                                                    "args", "job_id", "attempt", "running"]),
                                   plain, max_size=5).map(msgpack.packb))
framed = st.tuples(st.sampled_from([protocol.VERSION, b"LZ0", b""]), st.sampled_from(KINDS),
                   bodies).map(list)
frames = st.one_of(framed, st.lists(st.binary(max_size=200), min_size=1, max_size=5))


@pytest.fixture(scope="module")
def fleet():
    tmp = Path(tempfile.mkdtemp(prefix="lz", dir="/tmp"))
    fleet = LocalFleet(tmp / "h")
    fleet.start_broker()
    fleet.submitted = [  # type: ignore[attr-defined]  # the ids the module's tests add to
fleet.submit("demo", "before the fuzzing")]
    yield fleet
    fleet.close()
    shutil.rmtree(tmp, ignore_errors=True)


class Fuzzer:
    """One socket of the given kind on one broker endpoint, plus a valid submission now and then."""

    def __init__(self, fleet: LocalFleet, kind: int, endpoint: str) -> None:
        self.fleet = fleet
        self.sock = fleet.ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.connect(f"ipc://{fleet.home}/run/{endpoint}")
        self.push = fleet.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 1000)
        self.push.connect(f"ipc://{fleet.home}/run/submit")
        self.sent = 0

    def send(self, parts: list[bytes]) -> None:
        self.sock.send_multipart(parts)
        self.sent += 1
        if self.sent % 25 == 0:     # a real job in the middle of the garbage
            spec = protocol.JobSpec(id=new_job_id(), project="demo", task=f"amid fuzz {self.sent}",
                                    user="fuzz", submitted_at=time.time())
            self.push.send_multipart(protocol.encode(protocol.Submit(job=spec)))
            self.fleet.submitted.append(spec.id)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.sock.close(0)
        self.push.close()


def bad_frames(fleet: LocalFleet) -> dict[str, int]:
    return fleet.control("status", timeout=10)["bad_frames"]


def oversized(fleet: LocalFleet, kind: int, endpoint: str) -> None:
    """Past zmq.MAXMSGSIZE ZeroMQ drops the connection before the broker sees a byte."""
    sock = fleet.ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{fleet.home}/run/{endpoint}")
    sock.send_multipart([protocol.VERSION, b"SUBMIT", b"\x00" * (2 << 20)])
    time.sleep(0.05)   # let the 2 MiB leave before the socket closes (no event to wait on)
    sock.close(0)


@pytest.mark.parametrize("kind, endpoint, name", [
    (zmq.PUSH, "submit", "submit"), (zmq.DEALER, "agents", "agents"),
    (zmq.DEALER, "control", "control")], ids=["submit", "agents", "control"])
@pytest.mark.timeout(60)
def test_fuzzed_socket_keeps_the_broker_up_counting_and_losing_nothing(fleet, kind, endpoint, name):
    before = bad_frames(fleet)[name]
    fuzzer = Fuzzer(fleet, kind, endpoint)

    @EXAMPLES
    @given(frames)
    def fuzz(parts):
        fuzzer.send(parts)
    try:
        fuzz()
        oversized(fleet, kind, endpoint)
    finally:
        fuzzer.close()
    assert fleet.control("ping", timeout=10)["name"] == "broker"
    wait_for(lambda: bad_frames(fleet)[name] - before >= fuzzer.sent * 0.9, 20,
             message=f"bad frames on {name} counted")
    fleet.submitted.append(fleet.submit("demo", f"after fuzzing {name}"))
    wait_for(lambda: all(fleet.state(i) == "pending" for i in fleet.submitted), 20,
             message="every job submitted around the fuzzing is there")
    status = fleet.control("status")
    assert status["jobs"].get("pending") == len(fleet.submitted)
    assert fleet.procs["broker"].poll() is None
