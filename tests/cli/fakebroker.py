"""A stand-in broker for the CLI tests: the broker's submit PULL, control ROUTER and events
PUB sockets on the config's ipc:// endpoints, served by one thread with canned answers.

It keeps every Submit and Request it received, turns each Submit into a pending job, and
answers the control ops in OPS (keyed by their wire names, docs/PROTOCOL.md) from its `jobs`
table, with the real broker's errors and replies (luzia/rpc.py). `script()` makes a job
change state step by step (publishing a job.<state> event for each step), so live views
can be tested without a real broker or agent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from luzia import protocol, rpc
from luzia.config import Config
from luzia.errors import Ambiguous, BadRequest, NotFound
from luzia.ids import JOB_PREFIX_RE
from luzia.states import TERMINAL_NAMES, Priority


def job_object(spec: protocol.JobSpec, **over: Any) -> dict[str, Any]:
    """A job object with PROTOCOL.md's fields, as the broker would hold it after a Submit."""
    job = {
        "id": spec.id, "project": spec.project, "user": spec.user,
        "priority": Priority(spec.priority).label, "type": spec.type or "code", "task": spec.task,
        "state": "pending", "reason": "", "host": "", "attempt": 0, "retries": 0,
        "max_retries": spec.max_retries, "timeout": spec.timeout, "progress": -1.0,
        "message": "", "exit_code": None, "why": "no agent is connected", "stalled": False,
        "stalled_since": None, "submitter": None, "session": "", "needs_input": False,
        "needs_input_since": None,
        # workspaces (docs/WORKSPACES.md): empty without a repo
        "repo": spec.repo, "base": spec.base, "base_commit": spec.base_commit, "branch": "",
        "workspace": "", "workspace_host": "", "head_commit": "", "files_changed": None,
        "lines_added": 0, "lines_removed": 0, "push": "", "outcome": "", "outcome_at": None,
        "after": list(spec.after), "metadata": dict(spec.metadata), "workdir": spec.workdir,
        "submitted_at": spec.submitted_at or time.time(), "assigned_at": None,
        "started_at": None, "finished_at": None, "updated_at": time.time(),
        # agent-aware jobs (docs/AGENTS.md)
        "cost_usd": None, "tokens_in": 0, "tokens_out": 0, "cache_read": 0, "cache_write": 0,
        "turns": 0, "model": "", "session_id": "", "account": "", "resume": "",
        "paused_until": None, "pauses": 0,
    }
    job.update(over)
    return job


def make_job(job_id: str, **over: Any) -> dict[str, Any]:
    spec = protocol.JobSpec(id=job_id, project=over.pop("project", "demo"),
                            task=over.pop("task", "a task"), user=over.pop("user", "alice"))
    return job_object(spec, **over)


class FakeBroker:
    """One thread, one poller, like the real one; tests read and change `jobs` under `lock`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, bytes] = {}
        self.tails: dict[str, list[str]] = {}
        self.submits: list[protocol.Submit] = []
        self.requests: list[protocol.Request] = []
        self.bad: list[str] = []        # what did not decode (the CLI sent garbage: a bug)
        self.silent = False             # True: take requests and never answer
        # frames sent instead of the next reply, or a function of the request that makes them
        self.raw_reply: Any = None
        self._scripts: dict[str, tuple[list[dict[str, Any]], float]] = {}
        self._due: list[tuple[float, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self.ctx = zmq.Context()
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.pull = self._bind(zmq.PULL, cfg.endpoints.submit)
        self.router = self._bind(zmq.ROUTER, cfg.endpoints.control)
        self.pub = self._bind(zmq.PUB, cfg.endpoints.events)
        self.thread = threading.Thread(target=self._run, name="fake-broker", daemon=True)
        self.thread.start()

    def _bind(self, kind: int, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
        return sock

    # what tests use -------------------------------------------------------------
    def add(self, job: dict[str, Any], log: bytes = b"", tail: list[str] | None = None) -> str:
        with self.lock:
            self.jobs[job["id"]] = job
            self.logs[job["id"]] = log
            self.tails[job["id"]] = tail or []
        return job["id"]

    def script(self, job_id: str, steps: list[dict[str, Any]], every: float = 0.2) -> None:
        """From the first jobs.get or logs.read of `job_id` on, apply one step every `every`
        seconds: field updates, plus `log` (bytes appended to its output)."""
        with self.lock:
            self._scripts[job_id] = (steps, every)

    def start(self, job_id: str) -> None:
        """Start `job_id`'s script now."""
        with self.lock:
            self._start_script(job_id)

    def ops(self, op: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r.args for r in self.requests if r.op == op]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.ctx.destroy(linger=0)

    # the loop -------------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        while not self._stop.is_set():
            events = dict(poller.poll(10))
            if self.pull in events:
                try:
                    msg = protocol.decode(self.pull.recv_multipart(), expect=(protocol.Submit,))
                except protocol.ProtocolError as exc:
                    self.bad.append(str(exc))
                    continue
                assert isinstance(msg, protocol.Submit)     # decode's expect= guarantees it
                with self.lock:
                    self.submits.append(msg)
                    self.jobs.setdefault(msg.job.id, job_object(msg.job))
                    self.logs.setdefault(msg.job.id, b"")
            if self.router in events:
                identity, *frames = self.router.recv_multipart()
                try:
                    req = protocol.decode(frames, expect=(protocol.Request,))
                except protocol.ProtocolError as exc:
                    self.bad.append(str(exc))
                    continue
                assert isinstance(req, protocol.Request)
                with self.lock:
                    self.requests.append(req)
                    reply = None if self.silent else self._answer(req)
                    raw, self.raw_reply = self.raw_reply, None
                if callable(raw):
                    raw = raw(req)
                if raw is not None:
                    self.router.send_multipart([identity, *raw])
                elif reply is not None:
                    self.router.send_multipart([identity, *protocol.encode(reply)])
            self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = [d for d in self._due if d[0] <= now]
            self._due = [d for d in self._due if d[0] > now]
            for _, job_id, step in due:
                step = dict(step)
                self.logs[job_id] += step.pop("log", b"")
                self.jobs[job_id].update(step, updated_at=time.time())
                state = self.jobs[job_id]["state"]
                self.pub.send_multipart(protocol.encode_event(f"job.{state}", {"id": job_id, "state": state}))

    def _start_script(self, job_id: str) -> None:
        steps, every = self._scripts.pop(job_id, ([], 0.0))
        start = time.monotonic()
        self._due += [(start + every * (i + 1), job_id, step) for i, step in enumerate(steps)]

    def _answer(self, req: protocol.Request) -> protocol.Reply:
        """The reply the real broker's control loop would send (luzia/rpc.py's answer)."""
        return rpc.answer(req, self._call)

    def _call(self, op: str, args: dict[str, Any]) -> Any:
        handler = OPS.get(op)
        if handler is None:
            raise BadRequest(f"unknown operation {op!r}; known: {', '.join(sorted(OPS))}")
        return handler(self, **args)

    def asked_about(self, job_id: str) -> None:
        """A request named the job: its script starts now, if one waits (under the lock)."""
        if job_id in self._scripts:
            self._start_script(job_id)

    def resolve(self, ident: str | None) -> dict[str, Any]:
        """The job a full id or a unique prefix names, with the real broker's errors."""
        if not ident:
            raise BadRequest("no job id given")
        if not JOB_PREFIX_RE.fullmatch(ident):
            raise NotFound(f"no job {ident!r} (ids look like 113754-a2f5c10e9b3d)")
        if ident in self.jobs:
            return self.jobs[ident]
        found = [j for i, j in self.jobs.items() if i.startswith(ident)]
        if not found:
            raise NotFound(f"no job {ident!r}")
        if len(found) > 1:
            raise Ambiguous(f"{ident!r} names more than one job; give more of the id")
        return found[0]


# ---------------------------------------------------------------------------
# the control ops it answers: each a function of the fake and the request's args, found by
# its wire name in OPS (docs/PROTOCOL.md). The real ops are the broker's, one module per
# noun; a contract test can send the same requests to both through these names.


def ping(fake: FakeBroker) -> dict[str, Any]:
    return {"pid": os.getpid(), "version": "fake", "uptime": 1.0, "name": "broker"}


def jobs_list(fake: FakeBroker, limit: int = 50, state: list[str] | None = None,
              project: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
    jobs = sorted(fake.jobs.values(), key=lambda j: j["submitted_at"], reverse=True)
    jobs = [j for j in jobs if (not state or j["state"] in state)
            and project in (None, j["project"]) and user in (None, j["user"])]
    return jobs[:limit]


def jobs_get(fake: FakeBroker, id: str) -> dict[str, Any]:
    job = fake.resolve(id)
    fake.asked_about(job["id"])
    causes = {"automatic": 0, "manual": 0, "requeued": 0, "requeued_why": "", "next": None}
    return dict(job, tail=fake.tails.get(job["id"], []), attempts=[], causes=causes,
                needs_input_lines=job.get("needs_input_lines", []))


def logs_read(fake: FakeBroker, id: str, offset: int = 0, limit: int = 65536) -> dict[str, Any]:
    job = fake.resolve(id)
    fake.asked_about(job["id"])
    log = fake.logs[job["id"]]
    return {"data": log[offset:offset + limit], "offset": offset, "size": len(log),
            "state": job["state"], "source": "agent"}


def jobs_cancel(fake: FakeBroker, ids: list[str], dry_run: bool = False) -> list[dict[str, Any]]:
    jobs = [fake.resolve(i) for i in ids]      # all or nothing
    out = []
    for job in jobs:
        if job["state"] in TERMINAL_NAMES:
            result = f"already {job['state']}"
        elif dry_run:
            result = "would kill" if job["state"] == "pending" else \
                f"would cancel: its agent {job['host']} stops it"
        elif job["state"] == "pending":
            job.update(state="killed", reason="cancelled", finished_at=time.time())
            result = "killed"
        else:
            result = "cancelling"
        out.append({"id": job["id"], "state": job["state"], "result": result})
    return out


def whoami(fake: FakeBroker) -> dict[str, Any]:
    """What the broker says to a client of its own Unix user over ipc: its operator, an admin."""
    from luzia.identity import operator
    return {"user": operator(), "admin": True}


OPS: dict[str, Callable[..., Any]] = {
    "ping": ping,
    "whoami": whoami,
    "jobs.list": jobs_list,
    "jobs.get": jobs_get,
    "jobs.cancel": jobs_cancel,
    "logs.read": logs_read,
}


def spool_files(cfg: Config) -> list[Path]:
    return sorted(cfg.spool_dir.glob("*.job")) if cfg.spool_dir.is_dir() else []
