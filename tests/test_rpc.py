"""luzia.rpc and the wire codes of luzia.errors: a control op's error reaches the client as a
class it can catch, and the serving loop survives whatever a peer sends."""

from __future__ import annotations

import logging

import pytest
import zmq

from luzia import protocol, rpc
from luzia.errors import Ambiguous, BadRequest, LuziaError, NotFound, ProtocolError, error_for_code
from luzia.supervisor.control import UnknownProgram
from tests.helpers import wait_for

log = logging.getLogger(__name__)


def every_error(cls: type[LuziaError] = LuziaError) -> list[type[LuziaError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in every_error(child))]


@pytest.mark.parametrize("cls", every_error(), ids=lambda cls: cls.__name__)
def test_a_wire_code_comes_back_as_a_class_that_catches_the_raised_one(cls):
    back = error_for_code(cls.code, "why")
    assert str(back) == "why" and isinstance(back, LuziaError)
    assert issubclass(cls, type(back))       # `except type(back)` on the client catches `cls`
    if cls.code != LuziaError.code:          # a named code keeps the CLI's exit code too
        assert back.exit_code == cls.exit_code


def test_an_unknown_code_is_a_plain_luzia_error():
    assert type(error_for_code("from-a-newer-broker", "x")) is LuziaError


def op(name: str, args: dict) -> object:
    if name == "echo":
        return args
    if name == "missing":
        raise UnknownProgram("no program 'x' here")
    if name == "ambiguous":
        raise Ambiguous("2 jobs start with 1234")
    raise BadRequest("x" * (protocol.MAX_LINE * 2))


def test_answer_carries_the_result_or_the_error_and_its_code():
    ok = rpc.answer(protocol.Request(req=1, op="echo", args={"a": 1}), op)
    assert (ok.req, ok.ok, ok.result) == (1, True, {"a": 1})
    missing = rpc.answer(protocol.Request(req=2, op="missing"), op)
    assert (missing.ok, missing.code) == (False, NotFound.code)
    assert isinstance(error_for_code(missing.code, missing.error), NotFound)
    assert rpc.answer(protocol.Request(req=3, op="ambiguous"), op).code == "ambiguous"
    long = rpc.answer(protocol.Request(req=4, op="long"), op)   # cut, and still a valid Reply
    assert long.code == "bad_request" and len(long.error) == protocol.MAX_LINE
    assert protocol.decode(protocol.encode(long)) == long


def test_a_router_answers_requests_and_counts_what_is_not_one(short_tmp):
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        for sock in (router, dealer):
            sock.setsockopt(zmq.LINGER, 0)
        router.bind(f"ipc://{short_tmp}/r")
        dealer.connect(f"ipc://{short_tmp}/r")
        bad = rpc.BadFrames(log, "the test socket")
        dealer.send_multipart([b"garbage"])
        dealer.send_multipart(protocol.encode(protocol.Disconnect()))    # a message, not a request
        dealer.send_multipart(protocol.encode(protocol.Request(req=7, op="echo", args={"k": "v"})))
        answered = []

        def serve() -> bool:
            for identity, req in rpc.requests(router, 16, bad):
                rpc.send(router, identity, rpc.answer(req, op), log)
                answered.append(req.req)
            return bool(answered)
        wait_for(serve, 10)
        assert answered == [7] and bad.count == 2
        assert dealer.poll(10_000)
        reply = protocol.decode(dealer.recv_multipart(), expect=(protocol.Reply,))
        assert isinstance(reply, protocol.Reply) and reply.result == {"k": "v"}
    finally:
        router.close(0)
        dealer.close(0)
        ctx.term()


def test_parse_refuses_a_frame_without_identity():
    with pytest.raises(ProtocolError):
        rpc.parse([b"only"])
