"""The CLI tests' fake broker (tests/cli/fakebroker.py) against the real control ops: the
same requests to both, over their control sockets, and the same kind of answer — the same
keys in every object, the same results of a cancel, the same error codes — for requests
the CLI sends (the fake does not check arguments the CLI always gives). A fake that drifted
from the broker would let the CLI tests pass on answers the broker never gives."""

from __future__ import annotations

from typing import Any

import pytest
import zmq

from luzia import config, protocol
from luzia.broker import ops
from tests.broker.harness import Client, make_broker, spec
from tests.cli.fakebroker import OPS as FAKE_OPS, FakeBroker, job_object

JOB = spec(task="the same job on both")
CASES: list[tuple[str, dict[str, Any]]] = [
    ("ping", {}),
    ("whoami", {}),
    ("jobs.list", {}),
    ("jobs.list", {"state": ["pending"], "limit": 5}),
    ("jobs.get", {"id": JOB.id}),
    ("jobs.get", {"id": JOB.id[:10]}),          # a unique prefix
    ("jobs.get", {"id": "999999-ffffffffffff"}),   # not_found
    ("jobs.get", {"id": "x"}),                   # not_found: not an id at all
    ("logs.read", {"id": JOB.id}),
    ("jobs.cancel", {"ids": [JOB.id], "dry_run": True}),   # pending: would kill
    ("jobs.cancel", {"ids": [JOB.id]}),          # pending: killed
    ("jobs.cancel", {"ids": [JOB.id]}),          # already killed
    ("no.such.op", {}),                          # bad_request
]


def shape(value: Any) -> Any:
    """What must agree between the two: the keys of an object, the length and items of a
    list, the type of anything else."""
    if isinstance(value, dict):
        return sorted(value)
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def answer(reply: protocol.Reply, op: str) -> Any:
    if not reply.ok:
        return ("error", reply.code)
    if op == "jobs.cancel":
        return reply.result                     # ids, states and results: exactly
    return shape(reply.result)


@pytest.fixture
def both(short_tmp):
    real = make_broker(_home(short_tmp / "h"))
    fake = FakeBroker(config.load(env={"LUZIA_CONFIG": str(_config(short_tmp / "f"))}))
    ctx = zmq.Context()
    try:
        yield real, Client(ctx, real), fake, _dealer(ctx, fake.cfg.endpoints.control)
    finally:
        fake.close()
        real.close()
        ctx.destroy(linger=0)


def _home(home):
    home.mkdir()
    return home


def _config(home):
    home.mkdir()
    path = home / "luzia.toml"
    path.write_text(f'home = "{home}"\n')
    return path


def _dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _ask_fake(sock: zmq.Socket, n: int, op: str, args: dict[str, Any]) -> protocol.Reply:
    sock.send_multipart(protocol.encode(protocol.Request(req=n, op=op, args=args)))
    assert sock.poll(5000), f"the fake broker did not answer {op}"
    reply = protocol.decode(sock.recv_multipart(), expect=(protocol.Reply,))
    assert isinstance(reply, protocol.Reply) and reply.req == n
    return reply


def test_the_fake_broker_answers_as_the_real_ops_do(both):
    real, client, fake, dealer = both
    assert set(FAKE_OPS) <= set(ops.OPS), "the fake answers an op the broker does not have"
    real.submit(JOB)
    fake.add(job_object(JOB), log=b"output\n")
    for n, (op, args) in enumerate(CASES, 1):
        ours = answer(client.call(real, op, **args), op)
        fakes = answer(_ask_fake(dealer, n, op, args), op)
        assert fakes == ours, (op, args)
