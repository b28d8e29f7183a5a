"""The broker's side of the agent protocol: Hello/Welcome, heartbeats both ways, credits,
Assign/Started/Progress/Done, liveness and the requeue of a lost agent's jobs."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from luzia import protocol
from luzia.broker import gpu
from luzia.broker.fleet import Agent
from luzia.broker.scheduler import SchedAgent, SchedJob
from luzia.errors import ProtocolError
from luzia.states import AgentState, JobState

if TYPE_CHECKING:
    from luzia.broker.server import Broker
    from luzia.broker.store import Job

log = logging.getLogger(__name__)

HOLDING = (JobState.ASSIGNED, JobState.RUNNING, JobState.LOST)
NEVER_STARTED = 10.0   # seconds an agent may take to acknowledge an Assign by Started or a beat


class AgentHandler:
    def __init__(self, broker: "Broker") -> None:
        self.b = broker
        self.cfg = broker.cfg

    # messages -------------------------------------------------------------------
    def on_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            raise ProtocolError("agent message without identity")
        identity = frames[0]
        msg = protocol.decode(frames[1:], expect=protocol.TO_BROKER_FROM_AGENT)
        if isinstance(msg, protocol.Hello):
            self.hello(identity, msg)
            return
        agent = self.b.fleet.by_identity.get(identity)
        if agent is None:
            # we do not know this peer (we restarted, or it never said Hello): ask for one
            self.b.send_agent(identity, protocol.Disconnect(reason="unknown agent; say Hello"))
            return
        now = time.monotonic()
        agent.last_seen = now
        if agent.state is AgentState.DEAD:
            self._revive(agent)
        if isinstance(msg, protocol.Heartbeat):
            self.heartbeat(agent, msg, now)
        elif isinstance(msg, protocol.Started):
            self.started(agent, msg)
        elif isinstance(msg, protocol.Progress):
            self.progress(agent, msg)
        elif isinstance(msg, protocol.Done):
            self.done(agent, msg)
        elif isinstance(msg, protocol.LogChunk):
            from luzia.broker import control
            control.on_log_chunk(self.b, msg)

    def hello(self, identity: bytes, msg: protocol.Hello) -> None:
        now = time.monotonic()
        agent = Agent(name=msg.name, identity=identity, slots=msg.slots,
                      capabilities=list(msg.capabilities), tags=list(msg.tags), pid=msg.pid,
                      last_seen=now)
        old = self.b.fleet.join(agent)
        agent.draining = agent.name in self.b.drained   # kept over reconnects and restarts
        self.b.sched.agent_up(self._sched_agent(agent))
        adopt, drop = [], []
        for held in msg.held:
            job = self.b.jobs.get(held.job_id)
            if (job is not None and job.host == agent.name and job.state in HOLDING
                    and job.attempt == held.attempt):
                adopt.append(held)
            else:
                drop.append(held.job_id)
        adopted = {h.job_id for h in adopt}
        for job_id in sorted(agent.jobs - adopted):
            job = self.b.jobs.get(job_id)
            if job is not None and job.state in HOLDING:
                self.b.requeue(job, f"agent {agent.name} came back without it")
        self.b.send_agent(identity, protocol.Welcome(
            heartbeat_interval=self.cfg.broker.heartbeat_interval,
            liveness=self.cfg.broker.liveness, adopt=sorted(adopted), drop=drop))
        for held in adopt:
            job = self.b.jobs[held.job_id]
            if job.state is JobState.LOST:
                job.move(JobState.RUNNING, "")
                self.b.store.save(job, f"re-adopted by {agent.name}")
                self.b.publish(job)
            if held.exit_code is not None:
                self.b.ended(job, held.exit_code, "")
        # an agent may say Hello twice in a row (one queued while we were down, one asked
        # for): the same process again is not news
        again = old is not None and old.pid == agent.pid and old.state is not AgentState.DEAD
        (log.debug if again else log.info)(
            "agent %s %s: slots=%d capabilities=%s held=%d adopted=%d dropped=%d",
            agent.name, "said Hello again" if again else "rejoined" if old else "joined",
            agent.slots, ",".join(agent.capabilities), len(msg.held), len(adopt), len(drop))
        self.b.publish_agent("live", agent.to_dict(now, self.b.sched.agent_score(agent.name)))
        self.b.dirty = True

    def heartbeat(self, agent: Agent, msg: protocol.Heartbeat, now: float) -> None:
        agent.cpu, agent.memory = msg.cpu, msg.memory
        agent.gpu_memory, agent.gpu_util, agent.gpu_free_gb = msg.gpu_memory, msg.gpu_util, msg.gpu_free_gb
        agent.gpu_total_gb = gpu.total_gb(msg.gpu_memory, msg.gpu_free_gb)
        self._load(agent)
        if msg.slots and msg.slots != agent.slots:
            self.credits(agent, msg.slots)
        agent.reported = set(msg.running)
        # an Assign may still be in flight behind this beat; only a long silence means it was lost
        patience = self.cfg.broker.liveness * self.cfg.broker.heartbeat_interval + NEVER_STARTED
        wall = time.time()
        for job_id in sorted(agent.jobs):
            job = self.b.jobs.get(job_id)
            if job is None:
                continue
            if job_id in agent.reported:
                if job.state is JobState.LOST:
                    job.move(JobState.RUNNING, "")
                    self.b.store.save(job, f"agent {agent.name} is back")
                    self.b.publish(job)
            elif (job.state is JobState.ASSIGNED and job.assigned_at is not None
                  and wall - job.assigned_at > patience):
                self.b.requeue(job, f"agent {agent.name} never started it")
        self.b.dirty = True

    def credits(self, agent: Agent, slots: int) -> None:
        """The agent changed its credits (adaptive credits): schedule with the new count."""
        log.info("agent %s: credits %d -> %d", agent.name, agent.slots, slots)
        agent.slots = slots
        self.b.sched.agent_up(self._sched_agent(agent))

    def started(self, agent: Agent, msg: protocol.Started) -> None:
        job = self._own(agent, msg.job_id, msg.attempt)
        if job is None:
            return
        if job.state in (JobState.ASSIGNED, JobState.LOST):
            job.move(JobState.RUNNING, "")
            job.started_at = time.time()
            self.b.store.save(job, f"started on {agent.name} session={msg.session} pid={msg.pid}")
            self.b.store.save_attempt(job)
            self.b.publish(job)
            log.info("job %s running on %s (attempt %d)", job.id, agent.name, job.attempt)

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
        self.b.store.save(job)
        self.b.publish(job)

    def done(self, agent: Agent, msg: protocol.Done) -> None:
        job = self._own(agent, msg.job_id, msg.attempt)
        if job is None:
            return
        if msg.tail:
            job.tail = list(msg.tail)
        if job.state is JobState.ASSIGNED and job.started_at is None:
            job.started_at = time.time()
        agent.ended.add(job.id)
        self.b.ended(job, msg.exit_code, msg.reason)

    def _own(self, agent: Agent, job_id: str, attempt: int) -> "Job | None":
        job = self.b.jobs.get(job_id)
        if job is None or job.host != agent.name or job.attempt != attempt or job.state not in HOLDING:
            log.debug("ignoring report for job %s attempt %d from %s (stale)", job_id, attempt,
                      agent.name)
            return None
        return job

    # periodic -------------------------------------------------------------------
    def beat(self, now: float) -> None:
        """Heartbeats to live agents; mark silent ones dead; requeue after the grace."""
        interval = self.cfg.broker.heartbeat_interval
        for agent in self.b.fleet:
            if agent.state is not AgentState.DEAD:
                if now - agent.last_seen > self.cfg.broker.liveness * interval:
                    self._bury(agent, now)
                    continue
                if agent.identity in self.b.fleet.by_identity:
                    self._beat(agent)
            elif agent.dead_since is not None and now - agent.dead_since > self.cfg.broker.lost_grace:
                for job_id in sorted(agent.jobs):
                    job = self.b.jobs.get(job_id)
                    if job is not None and job.state in HOLDING:
                        self.b.requeue(job, f"agent {agent.name} lost for "
                                            f"{self.cfg.broker.lost_grace:g}s")

    def _beat(self, agent: Agent) -> None:
        """A heartbeat lists the jobs we hold on the agent: it acknowledges every Done since."""
        self.b.send_agent(agent.identity, protocol.Heartbeat(running=sorted(agent.jobs)))
        agent.ended.clear()

    def _bury(self, agent: Agent, now: float) -> None:
        agent.state = AgentState.DEAD
        agent.dead_since = now
        self.b.sched.agent_down(agent.name)
        log.warning("agent %s missed %d heartbeats: no new work for it; its %d jobs are lost "
                    "until it comes back or %gs pass", agent.name, self.cfg.broker.liveness,
                    len(agent.jobs), self.cfg.broker.lost_grace)
        for job_id in sorted(agent.jobs):
            job = self.b.jobs.get(job_id)
            if job is not None and job.state in (JobState.ASSIGNED, JobState.RUNNING):
                job.move(JobState.LOST, f"agent {agent.name} stopped beating")
                self.b.store.save(job, job.reason)
                self.b.publish(job)
        self.b.publish_agent("dead", {"name": agent.name})

    def _revive(self, agent: Agent) -> None:
        agent.state = AgentState.LIVE
        agent.dead_since = None
        self.b.sched.agent_up(self._sched_agent(agent))
        log.info("agent %s is beating again", agent.name)
        self.b.publish_agent("live", {"name": agent.name})
        self.b.dirty = True

    # credits --------------------------------------------------------------------
    def assign(self, job: "Job", agent_name: str) -> None:
        agent = self.b.fleet.get(agent_name)
        assert agent is not None, f"scheduler picked unknown agent {agent_name}"
        if job.id in agent.ended:
            # its last attempt ended there and the agent still waits for our ack: ack first, or
            # it would take this Assign for a repeat and report the old end (DECISIONS 14)
            self._beat(agent)
        job.move(JobState.ASSIGNED, "")
        job.host = agent.name
        job.attempt += 1
        job.assigned_at = time.time()
        job.started_at = job.finished_at = job.exit_code = None
        job.progress, job.message, job.stalled = -1.0, "", False
        agent.jobs.add(job.id)
        self._load(agent)
        self.b.store.save(job, f"assigned to {agent.name} (attempt {job.attempt})")
        self.b.store.save_attempt(job)
        self.b.send_agent(agent.identity, protocol.Assign(job=spec_of(job), attempt=job.attempt))
        self.b.publish(job)
        log.info("job %s assigned to %s (attempt %d)", job.id, agent.name, job.attempt)

    def release(self, job: "Job") -> None:
        agent = self.b.fleet.get(job.host)
        if agent is not None:
            agent.jobs.discard(job.id)
            self._load(agent)
        self.b.sched.release(job.id)

    def cancel(self, job: "Job", reason: str = "cancelled") -> None:
        agent = self.b.fleet.get(job.host)
        if agent is None or agent.state is AgentState.DEAD:
            self.b.finish(job, JobState.KILLED, "cancelled (agent unreachable)")
            return
        self.b.send_agent(agent.identity, protocol.Cancel(job_id=job.id, reason=reason))
        log.info("job %s: cancel sent to %s (%s)", job.id, agent.name, reason)

    def restore(self, job: "Job") -> None:
        """After a broker restart: the job holds a credit on an agent that has not said Hello."""
        agent = self.b.fleet.get(job.host)
        if agent is None:
            agent = Agent(name=job.host, identity=b"", slots=1, capabilities=[],
                          state=AgentState.DEAD, dead_since=time.monotonic(),
                          last_seen=time.monotonic())
            self.b.fleet.by_name[agent.name] = agent
        agent.jobs.add(job.id)
        agent.slots = max(agent.slots, len(agent.jobs))
        # not lost yet, only not heard from: its jobs keep their users' locks until it says
        # Hello or `lost_grace` requeues them; it takes no new work meanwhile
        self.b.sched.agent_up(replace(self._sched_agent(agent), live=True, draining=True))
        held_for = max(0.0, time.time() - (job.assigned_at or time.time()))
        self.b.sched.place(SchedJob(id=job.id, seq=job.seq, priority=job.priority, user=job.user,
                                    project=job.project, type=job.type), agent.name,
                           since=time.monotonic() - held_for)

    def _load(self, agent: Agent) -> None:
        self.b.sched.agent_load(agent.name, agent.cpu, agent.memory, self._gpu_offer(agent))

    def _gpu_offer(self, agent: Agent) -> float:
        """The GPU memory `agent` offers new work: measured free, less what its jobs reserve."""
        needs = []
        for job_id in agent.jobs:
            job = self.b.jobs.get(job_id)
            if job is not None:
                needs.append(gpu.need(self.cfg.scheduler, job.type, job.metadata))
        agent.gpu_reserved_gb = math.fsum(needs)
        return gpu.offer(agent.gpu_free_gb, agent.gpu_total_gb, needs)

    def _sched_agent(self, agent: Agent) -> SchedAgent:
        return SchedAgent(name=agent.name, slots=agent.slots,
                          capabilities=frozenset(agent.capabilities), cpu=agent.cpu,
                          memory=agent.memory, gpu_free_gb=self._gpu_offer(agent),
                          live=agent.state is not AgentState.DEAD,
                          draining=agent.draining or agent.state is AgentState.DRAINING)


def spec_of(job: "Job") -> protocol.JobSpec:
    return protocol.JobSpec(id=job.id, project=job.project, task=job.task, user=job.user,
                            priority=job.priority, type=job.type, timeout=job.timeout,
                            max_retries=job.max_retries, after=list(job.after),
                            metadata=dict(job.metadata), workdir=job.workdir,
                            submitted_at=job.submitted_at)
