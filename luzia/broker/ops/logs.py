"""Job output: `luzia logs ID [-f]` reads output.log from the job's agent, through the
broker. The request waits for the agent's LogChunk (at most LOG_WAIT seconds); with the
agent away, or silent, the reply is the tail the broker keeps."""

from __future__ import annotations

import time
from typing import Any

from luzia import protocol, rpc
from luzia.broker.job import Job
from luzia.broker.model import LogWait, Model
from luzia.broker.ops.request import DEFERRED, Args, resolve
from luzia.errors import BadRequest, Unavailable

LOG_WAIT = 2.0               # seconds a logs.read waits for the agent before using the tail


def read(m: Model, args: Args) -> Any:
    """logs.read {id, offset=0, limit=65536} → {data, offset, size, state, source}: bytes of
    the job's output.log, fetched from its agent; "broker" source = the tail kept here."""
    job = resolve(m, args.get("id", str))
    offset = args.get("offset", int, 0)
    limit = args.get("limit", int, 65536)
    if offset < 0 or not 0 < limit <= protocol.MAX_MESSAGE // 2:
        raise BadRequest("offset must be >= 0 and limit between 1 and 524288")
    agent = m.fleet.get(job.host) if job.host else None
    if agent is None or not agent.live or agent.identity not in m.fleet.by_identity:
        return tail(job)
    token = m.log_waits.add(LogWait(args.identity, args.req, job.id, time.monotonic() + LOG_WAIT))
    m.out.send(agent.identity, protocol.LogRequest(req=token, job_id=job.id, offset=offset,
                                                   limit=limit))
    return DEFERRED


def on_chunk(m: Model, msg: protocol.LogChunk) -> None:
    """The agent's answer to a LogRequest: the waiting request's reply (an agent's error:
    the broker's tail instead)."""
    wait = m.log_waits.pop(msg.req)
    if wait is None:
        return
    job = m.jobs.get(wait.job_id) or m.store.get(wait.job_id)
    if msg.error:
        if job is not None:
            m.out.reply(wait.identity, protocol.Reply(req=wait.req, ok=True, result=tail(job)))
        else:
            m.out.reply(wait.identity, rpc.failure(wait.req, Unavailable(msg.error)))
        return
    state = job.state.value if job is not None else "unknown"
    m.out.reply(wait.identity, protocol.Reply(req=wait.req, ok=True, result={
        "data": msg.data, "offset": msg.offset, "size": msg.size, "state": state,
        "source": "agent"}))


def expire(m: Model, now: float) -> None:
    """Answer the requests whose agent did not answer in time with the broker's tail."""
    for wait in m.log_waits.expired(now):
        job = m.jobs.get(wait.job_id) or m.store.get(wait.job_id)
        if job is not None:
            m.out.reply(wait.identity, protocol.Reply(req=wait.req, ok=True, result=tail(job)))


def tail(job: Job) -> dict[str, Any]:
    """The output lines the broker keeps of `job`, as a logs.read result."""
    data = ("\n".join(job.tail) + ("\n" if job.tail else "")).encode()
    return {"data": data, "offset": 0, "size": len(data), "state": job.state.value,
            "source": "broker"}


OPS = {"logs.read": read}
