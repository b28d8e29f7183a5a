"""Control operations: what the CLI asks the broker over the control socket.

One module per noun, named as the CLI's `luzia/cli/<noun>.py`: broker (ping, status),
jobs, logs, queue, agents, history, budget, workspace; and events (luzia-notify's). An op
is a function `(model, args) -> result` listed under its wire name in its module's `OPS`; its
docstring is its protocol documentation (docs/PROTOCOL.md). A LuziaError it raises is
answered with its message and its wire code (errors.py); an op that answers later
returns DEFERRED (logs.read).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from luzia import protocol, rpc
from luzia.broker import versions
from luzia.broker.model import Model
from luzia.broker.ops import agents, broker, budget, events, history, jobs, logs, queue, workspace
from luzia.broker.ops.request import DEFERRED, Args
from luzia.errors import BadRequest, Outdated
from luzia.identity import Submitter

Op = Callable[[Model, Args], Any]

NOUNS = (broker, jobs, logs, queue, agents, history, budget, workspace, events)
OPS: dict[str, Op] = {name: op for noun in NOUNS for name, op in noun.OPS.items()}


def handle(m: Model, identity: bytes, req: protocol.Request, peer: Submitter | None = None) -> None:
    """Answer one request from `peer` (who sent it, peers.py); the reply goes out after the
    turn's commit (DEFERRED: later). A CLI whose protocol the broker does not serve is told
    so (versions.py), whatever it asked."""
    outdated = versions.cli_refusal(m.cfg, req)
    if outdated:
        m.out.reply(identity, rpc.failure(req.req, Outdated(outdated)))
        return
    args = Args(req.args, identity, req.req, peer)
    reply = rpc.answer(req, lambda op, _: _op(op)(m, args))
    if reply.result is not DEFERRED:
        m.out.reply(identity, reply)


def _op(name: str) -> Op:
    op = OPS.get(name)
    if op is None:
        raise BadRequest(f"unknown operation {name!r}; known: {', '.join(sorted(OPS))}")
    return op
