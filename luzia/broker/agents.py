"""The broker's side of the agent protocol: Hello/Welcome, heartbeats both ways,
Started/Progress/Done, and the liveness of each agent (missed beats, the lost grace).

Each message is turned into the job edges of lifecycle.py and the agent changes of
fleet.py; nothing here moves a job's state by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from luzia import __version__, protocol
from luzia.broker import gpu, lifecycle, versions, workspace
from luzia.broker.accounts import own_account
from luzia.broker.fleet import Agent
from luzia.broker.job import Job
from luzia.broker.lifecycle import HOLDING
from luzia.broker.model import Model
from luzia.errors import ProtocolError
from luzia.states import JobState

log = logging.getLogger(__name__)

NEVER_STARTED = 10.0   # seconds an agent may take to acknowledge an Assign by Started or a beat


class AgentHandler:
    """Messages from the agents' ROUTER socket, and the heartbeats the broker sends back.
    A LogChunk answers a control request: it goes to `on_log_chunk` (ops/logs.py)."""

    def __init__(self, m: Model, on_log_chunk: Callable[[Model, protocol.LogChunk], None]) -> None:
        self.m = m
        self.on_log_chunk = on_log_chunk

    def on_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            raise ProtocolError("agent message without identity")
        identity = frames[0]
        msg = protocol.decode(frames[1:], expect=protocol.TO_BROKER_FROM_AGENT)
        if isinstance(msg, protocol.Hello):
            self.hello(identity, msg)
            return
        agent = self.m.fleet.by_identity.get(identity)
        if agent is None:
            if identity in self.m.fleet.outdated:
                return      # refused: it hears from us at its next Hello (versions.py)
            # we do not know this peer (we restarted, or it never said Hello): ask for one
            self.m.out.send(identity, protocol.Disconnect(reason="unknown agent; say Hello"))
            return
        now = time.monotonic()
        agent.last_seen = now
        if not agent.live:
            self._revive(agent)
        if isinstance(msg, protocol.Heartbeat):
            self.heartbeat(agent, msg)
        elif isinstance(msg, protocol.Started):
            self.started(agent, msg)
        elif isinstance(msg, protocol.Progress):
            self.progress(agent, msg)
        elif isinstance(msg, protocol.Done):
            self.done(agent, msg)
        elif isinstance(msg, protocol.LogChunk):
            self.on_log_chunk(self.m, msg)

    # messages -------------------------------------------------------------------------
    def hello(self, identity: bytes, msg: protocol.Hello) -> None:
        """An agent (re)joins: adopt the jobs it holds that are still its, requeue the ones
        it came back without, and tell it which held jobs to drop."""
        m, now = self.m, time.monotonic()
        m.out.protocols[identity] = msg.protocol
        why = versions.agent_refusal(m.cfg, msg)
        if why:
            self._refuse_protocol(identity, msg, why, now)
            return
        holder = m.fleet.holder(msg.name, identity, msg.instance)
        if holder is not None:
            self._refuse(holder, identity, msg, now)
            return
        agent = Agent(name=msg.name, identity=identity, slots=msg.slots,
                      capabilities=list(msg.capabilities), tags=list(msg.tags), pid=msg.pid,
                      instance=msg.instance, last_seen=now, protocol=msg.protocol,
                      version=msg.version, accounts=list(msg.accounts))
        old = m.fleet.join(agent)
        m.accounts.apply()
        # an agent may say Hello twice in a row (one queued while we were down, one asked
        # for): the same process again is not news
        again = old is not None and old.pid == agent.pid and old.instance == agent.instance \
            and old.live
        adopt, drop = self._reconcile(agent, msg.held, again)
        adopted = {h.job_id for h in adopt}
        m.out.send(identity, protocol.Welcome(
            heartbeat_interval=m.cfg.broker.heartbeat_interval,
            liveness=m.cfg.broker.liveness, adopt=sorted(adopted), drop=drop,
            protocol=protocol.PROTOCOL, version=__version__))
        for held in adopt:
            job = m.jobs.get(held.job_id)
            if job is None or job.state not in HOLDING:
                continue        # held twice in one Hello, and ended by the first
            if job.state is JobState.LOST:
                lifecycle.resume(m, job, f"re-adopted by {agent.name}")
            if held.exit_code is not None:
                lifecycle.end(m, job, held.exit_code, "")
        (log.debug if again else log.info)(
            "agent %s %s: slots=%d capabilities=%s held=%d adopted=%d dropped=%d protocol=%d%s",
            agent.name, "said Hello again" if again else "rejoined" if old else "joined",
            agent.slots, ",".join(agent.capabilities), len(msg.held), len(adopt), len(drop),
            msg.protocol, f" (Luzia {msg.version})" if msg.version else "")
        m.out.publish_agent("live", agent.to_dict(now, m.sched.agent_score(agent.name)))
        m.dirty = True

    def _refuse_protocol(self, identity: bytes, msg: protocol.Hello, why: str, now: float) -> None:
        """An agent whose protocol this broker does not serve: listed as refused, its earlier
        self (if it had joined before) lost like a silent agent, and told why at most once
        per REFUSE_QUIET, in a Disconnect its release can read and log."""
        m = self.m
        refused = m.fleet.outdated.get(identity)
        if refused is None:
            refused = versions.Refused(msg.name, msg.protocol, msg.version, msg.pid, why)
        refused.last_seen, refused.pid = now, msg.pid
        earlier = m.fleet.mark_outdated(identity, refused)
        if earlier is not None and earlier.live:
            self._bury(earlier, now)
        if refused.due(now):
            refused.answered = now
            log.warning("agent %s refused: %s", msg.name, why)
            m.out.send(identity, protocol.Disconnect(reason=f"refused: {why}", refused=True))
            m.out.publish_agent("refused", refused.to_dict(now))

    def _refuse(self, holder: Agent, identity: bytes, msg: protocol.Hello, now: float) -> None:
        """One live agent per name: a second one (another host or state directory) is told
        no, and tries again later; the first keeps its name and its jobs."""
        clash = self.m.fleet.refused(msg.name, msg.pid, msg.instance, now)
        reason = (f"the name {msg.name} is held by a live agent (pid {holder.pid}, instance "
                  f"{holder.instance}); this one is pid {msg.pid}, instance {msg.instance}: "
                  "two hosts with one name? give each its own agent.name")
        (log.error if clash.count == 1 else log.warning)(
            "agent %s refused (%d time%s): %s", msg.name, clash.count,
            "" if clash.count == 1 else "s", reason)
        self.m.out.send(identity, protocol.Disconnect(reason=reason, refused=True))
        self.m.out.publish_agent("refused", {"name": msg.name, **clash.to_dict(now)})

    def _reconcile(self, agent: Agent, held_jobs: list[protocol.HeldJob], again: bool,
                   ) -> tuple[list[protocol.HeldJob], list[str]]:
        """The held jobs to adopt (still this agent's attempt) and the ids to drop; the jobs
        the broker placed on it that it does not hold go back to the queue — except, when
        the same process says Hello again, an Assign it has not confirmed yet: that Hello
        may have left before the Assign arrived on the same connection, and the agent may
        be running it now. The unconfirmed-Assign check (DECISIONS 14) requeues it if the
        agent's heartbeats never mention it."""
        adopt: list[protocol.HeldJob] = []
        drop: list[str] = []
        for held in held_jobs:
            if self._still_its(agent, held):
                adopt.append(held)
            else:
                drop.append(held.job_id)
        adopted = {h.job_id for h in adopt}
        for job_id in sorted(agent.jobs - adopted):
            job = self.m.jobs.get(job_id)
            if job is None or job.state not in HOLDING:
                continue
            if again and job.state is JobState.ASSIGNED:
                log.info("job %s: agent %s said Hello again without it; its Assign may "
                         "still be on the way", job.id, agent.name)
                continue
            lifecycle.requeue(self.m, job, f"agent {agent.name} came back without it")
        return adopt, drop

    def _still_its(self, agent: Agent, held: protocol.HeldJob) -> bool:
        job = self.m.jobs.get(held.job_id)
        return (job is not None and job.host == agent.name and job.state in HOLDING
                and job.attempt == held.attempt)

    def heartbeat(self, agent: Agent, msg: protocol.Heartbeat) -> None:
        """Its load and credits; jobs it reports are not lost, an Assign it never took is."""
        m = self.m
        agent.cpu, agent.memory = msg.cpu, msg.memory
        agent.gpu_memory, agent.gpu_util = msg.gpu_memory, msg.gpu_util
        agent.gpu_free_gb = msg.gpu_free_gb
        agent.gpu_total_gb = gpu.total_gb(msg.gpu_memory, msg.gpu_free_gb)
        m.fleet.load(agent)
        if msg.degraded != agent.degraded:
            m.fleet.degrade(agent, msg.degraded)
            m.out.publish_agent("degraded" if msg.degraded else "live",
                                {"name": agent.name, "degraded": msg.degraded})
        if msg.slots and msg.slots != agent.slots:
            m.fleet.set_slots(agent, msg.slots)
        agent.reported = set(msg.running)
        workspace.heartbeat(m, agent, msg)
        # an Assign may still be in flight behind this beat; only a long silence means it was lost
        patience = m.cfg.broker.liveness * m.cfg.broker.heartbeat_interval + NEVER_STARTED
        wall = time.time()
        for job_id in sorted(agent.jobs):
            job = m.jobs.get(job_id)
            if job is None:
                continue
            if job_id in agent.reported:
                if job.state is JobState.LOST:
                    lifecycle.resume(m, job, f"agent {agent.name} is back")
            elif (job.state is JobState.ASSIGNED and job.assigned_at is not None
                  and wall - job.assigned_at > patience):
                lifecycle.requeue(m, job, f"agent {agent.name} never started it")
        m.dirty = True

    def started(self, agent: Agent, msg: protocol.Started) -> None:
        job = self._own(agent, msg.job_id, msg.attempt)
        if job is not None and msg.session:
            job.session = msg.session          # `luzia attach` asks for it (jobs.get)
        if job is not None and job.state in (JobState.ASSIGNED, JobState.LOST):
            workspace.started(job, agent, msg)
            lifecycle.start(self.m, job,
                            f"started on {agent.name} session={msg.session} pid={msg.pid}")

    def progress(self, agent: Agent, msg: protocol.Progress) -> None:
        job = self._own(agent, msg.job_id, msg.attempt)
        if job is None:
            return
        if job.state is JobState.ASSIGNED:  # Started was lost or overtaken
            self.started(agent, protocol.Started(job_id=job.id, attempt=job.attempt))
        job.progress, job.message = msg.percent, msg.message
        if msg.stalled != job.stalled:
            log.info("job %s %s", job.id, f"stalled: no output for {msg.stalled_for:.0f}s"
                     if msg.stalled else "no longer stalled")
        job.stalled = msg.stalled
        job.stalled_since = time.time() - msg.stalled_for if msg.stalled else None
        if msg.tail:
            job.tail = list(msg.tail)
        self.m.budgets.record(job, msg.usage)
        workspace.progress(job, msg)
        if msg.needs_input != job.needs_input:
            lifecycle.needs_input(self.m, job, msg.needs_input, list(msg.needs_input_lines))
            return
        if msg.needs_input:       # still waiting; its pane shows another choice now
            job.needs_input_lines = list(msg.needs_input_lines)
        lifecycle.note(self.m, job)

    def done(self, agent: Agent, msg: protocol.Done) -> None:
        job = self._own(agent, msg.job_id, msg.attempt)
        if job is None:
            return
        if msg.tail:
            job.tail = list(msg.tail)
        agent.ended.add(job.id)
        workspace.done(job, msg)
        if not msg.started:          # its command never ran: tried again, not failed
            lifecycle.unstarted(self.m, job, msg.reason)
            return
        if job.state is JobState.ASSIGNED and job.started_at is None:
            job.started_at = time.time()
        self.m.budgets.record(job, msg.usage)
        if msg.limited_until and self.m.cfg.limits.enabled:
            self.m.accounts.mark(job.account or own_account(agent), msg.limited_until, msg.limit)
            self.m.dirty = True
        lifecycle.end(self.m, job, msg.exit_code, msg.reason, msg.limited_until, msg.limit)

    def _own(self, agent: Agent, job_id: str, attempt: int) -> Job | None:
        """The job a report is about, if it is still this agent's attempt."""
        job = self.m.jobs.get(job_id)
        if (job is None or job.host != agent.name or job.attempt != attempt
                or job.state not in HOLDING):
            log.debug("ignoring report for job %s attempt %d from %s (stale)", job_id, attempt,
                      agent.name)
            return None
        return job

    # liveness ---------------------------------------------------------------------------
    def beat(self, now: float) -> None:
        """Heartbeats to live agents; mark silent ones dead; requeue after the grace."""
        m = self.m
        cfg = m.cfg.broker
        for agent in m.fleet:
            if agent.live:
                if now - agent.last_seen > cfg.liveness * cfg.heartbeat_interval:
                    self._bury(agent, now)
                elif agent.identity in m.fleet.by_identity:
                    m.out.send(agent.identity, workspace.beat_for(m, agent))
            elif agent.dead_since is not None and now - agent.dead_since > cfg.lost_grace:
                for job_id in sorted(agent.jobs):
                    job = m.jobs.get(job_id)
                    if job is not None and job.state in HOLDING:
                        lifecycle.requeue(m, job,
                                          f"agent {agent.name} lost for {cfg.lost_grace:g}s")

    def _bury(self, agent: Agent, now: float) -> None:
        m = self.m
        m.fleet.bury(agent, now)
        log.warning("agent %s missed %d heartbeats: no new work for it; its %d jobs are lost "
                    "until it comes back or %gs pass", agent.name, m.cfg.broker.liveness,
                    len(agent.jobs), m.cfg.broker.lost_grace)
        for job_id in sorted(agent.jobs):
            job = m.jobs.get(job_id)
            if job is not None and job.state in (JobState.ASSIGNED, JobState.RUNNING):
                lifecycle.lose(m, job, f"agent {agent.name} stopped beating")
        m.out.publish_agent("dead", {"name": agent.name})

    def _revive(self, agent: Agent) -> None:
        self.m.fleet.revive(agent)
        log.info("agent %s is beating again", agent.name)
        self.m.out.publish_agent("live", {"name": agent.name})
        self.m.dirty = True
