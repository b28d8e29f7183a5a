"""The scheduler: which pending job starts next, and on which agent.

Rules (seeds 002–004): strict priority, FIFO (the broker's arrival `seq`) within a
priority, among the jobs eligible now — its user holds fewer locks than its limit (one by
default; a placed job holds its user's lock until it ends, its agent is lost, or it has
run `user_lock_stale` seconds), its project fewer than `max_per_project`, neither its user
nor its project is blocked (over a budget: budgets.py), no other job in its shared work
directory (a project without `repo`), the global cap is not reached, its dependencies are
done, and a live, non-draining agent not held by usage limits, under both ceilings (or
running none of ours: rules.may_add), with a free slot and enough free GPU memory, offers
its type — to the one with the lowest load score (ties by name). An ineligible job never
blocks the ones behind it.
A retry avoids the agents it failed on while another offers its type (rules.py).

Cost. Pending jobs sit in buckets (buckets.py) keyed by (priority, type, GPU need, user,
project, avoided agents, shared workdir): every job of a bucket is eligible or not for the
same reasons, so only a bucket's oldest job is ever a candidate. Per (priority, type, GPU
need, avoided) a heap holds one entry per bucket, ordered by its head's seq. A decision
looks at the top of each heap whose type some agent can take now; a bucket met there whose
user, project or shared workdir is at its limit is *parked* on that limit and pushed back
only when it frees a slot. So a decision only pops entries that went stale or blocked since
they were pushed — never a scan of a user's or project's jobs.
`ReferenceScheduler` (reference.py) is the plain version this one is proven against.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Iterable

from luzia.broker import rules
from luzia.broker.buckets import Bucket, bucket_cls, bucket_key, discard, limits
from luzia.broker.rules import BEHIND, SchedAgent, SchedJob, load_score, may_add, user_limit
from luzia.config import SchedulerConfig
from luzia.states import Priority

log = logging.getLogger(__name__)

LEVELS = len(Priority)


class Scheduler:
    """The indexed scheduler the broker runs (interface and rules: module docstring)."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.agents: dict[str, SchedAgent] = {}
        self.pending: dict[str, SchedJob] = {}          # no open dependency: in a bucket
        self.waiting: dict[str, SchedJob] = {}          # open dependencies: not in a bucket
        self.dependents: dict[str, set[str]] = {}       # dependency id -> waiting job ids
        self.critical: dict[str, SchedJob] = {}         # pending critical jobs (preemption)
        self.counts = [0] * LEVELS                      # pending (both kinds) per priority
        self.buckets: dict[tuple, Bucket] = {}
        # priority -> (type, gpu need, avoid) -> heap of (head seq, bucket)
        self.ready: list[dict[tuple[str, float, frozenset[str]], list]] = [{} for _ in range(LEVELS)]
        # (limit, name) -> buckets parked on it: ("user", u), ("project", p), ("shared", dir)
        self.parked: dict[tuple[str, str], list[Bucket]] = {}
        self._tick = itertools.count()
        # placements: the counts every rule reads
        self.placed: dict[str, tuple[SchedJob, str, int]] = {}   # id -> (job, agent, order)
        self.on_agent: dict[str, set[str]] = {}
        self.by_user: dict[str, set[str]] = {}          # user -> placed jobs holding its lock
        self.by_project: dict[str, int] = {}
        self.by_shared: dict[str, set[str]] = {}       # shared workdir -> placed jobs in it
        # user locks going stale: heap of (deadline, job id); placed jobs whose lock went stale
        self.now = 0.0
        self.lock_deadlines: list[tuple[float, int, str]] = []
        self.stale: set[str] = set()
        self.blocked: dict[tuple[str, str], str] = {}   # ("user"|"project", name) -> why

    # pending ---------------------------------------------------------------------
    def add(self, job: SchedJob) -> None:
        """`job` becomes pending (new, requeued, retried); a second add replaces the first."""
        if job.id in self.placed:
            self.release(job.id)
        if job.id in self.pending or job.id in self.waiting:   # a second add; a new job skips it
            self.remove(job.id)
        self.counts[job.priority] += 1
        if job.priority == Priority.CRITICAL:
            self.critical[job.id] = job
        if job.after:
            self.waiting[job.id] = job
            for dep in job.after:
                self.dependents.setdefault(dep, set()).add(job.id)
        else:
            self._enqueue(job)

    def _enqueue(self, job: SchedJob) -> None:
        self.pending[job.id] = job
        key = bucket_key(job)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(key)
        heapq.heappush(bucket.heap, job)
        bucket.live += 1
        if not bucket.parked and (bucket.entry is None or job.seq < bucket.entry[0]):
            self._announce(bucket, job)

    def _announce(self, bucket: Bucket, head: SchedJob) -> None:
        """Put `bucket` in its ready heap under its head `head` (older entries go stale)."""
        entry = (head.seq, bucket)
        bucket.entry = entry
        priority, cls = bucket.key[0], bucket_cls(bucket.key)
        heap = self.ready[priority].get(cls)
        if heap is None:
            heap = self.ready[priority][cls] = []
        heapq.heappush(heap, entry)

    def remove(self, job_id: str) -> bool:
        """A pending job leaves (cancelled); False if it is not pending here."""
        job = self.pending.pop(job_id, None)
        if job is not None:
            self._left_bucket(job)
        else:
            job = self.waiting.pop(job_id, None)
            if job is None:
                return False
            for dep in job.after:
                waiters = self.dependents.get(dep)
                if waiters is not None:
                    waiters.discard(job_id)
                    if not waiters:
                        del self.dependents[dep]
        self.counts[job.priority] -= 1
        self.critical.pop(job_id, None)
        return True

    def _left_bucket(self, job: SchedJob) -> None:
        """`job` left `pending`; its heap entry goes lazily, or all at once if few remain."""
        key = bucket_key(job)
        bucket = self.buckets[key]
        bucket.live -= 1
        if not bucket.live:
            del self.buckets[key]
            bucket.heap.clear()
            bucket.entry = None
        elif len(bucket.heap) > 2 * bucket.live + 8:    # keep cancelled jobs from piling up
            bucket.heap = [j for j in bucket.heap if self.pending.get(j.id) is j]
            heapq.heapify(bucket.heap)

    def _head(self, bucket: Bucket) -> SchedJob | None:
        heap = bucket.heap
        while heap:
            job = heap[0]
            if self.pending.get(job.id) is job:
                return job
            heapq.heappop(heap)
        return None

    # placed ----------------------------------------------------------------------
    def place(self, job: SchedJob, agent: str, since: float | None = None) -> None:
        """Record a job holding a credit on `agent` since `since` (default: now), e.g. after
        a broker restart; the agent may be unknown."""
        if job.id in self.placed:
            self.release(job.id)
        self.remove(job.id)
        self._hold(job, agent, self.now if since is None else since)

    def _hold(self, job: SchedJob, agent: str, since: float) -> None:
        order = next(self._tick)
        self.placed[job.id] = (job, agent, order)
        self.on_agent.setdefault(agent, set()).add(job.id)
        self.by_project[job.project] = self.by_project.get(job.project, 0) + 1
        if job.shared:
            self.by_shared.setdefault(job.shared, set()).add(job.id)
        stale_after = self.cfg.user_lock_stale
        if stale_after > 0:
            if rules.lock_expired(since, stale_after, self.now):
                self.stale.add(job.id)
            else:
                heapq.heappush(self.lock_deadlines, (since + stale_after, order, job.id))
        if self._holds_lock(job.id, agent):
            self.by_user.setdefault(job.user, set()).add(job.id)

    def release(self, job_id: str) -> None:
        """A placed job no longer holds its credit; wakes what its user/project parked."""
        entry = self.placed.pop(job_id, None)
        if entry is None:
            return
        job, agent, _ = entry
        self.stale.discard(job_id)
        if len(self.lock_deadlines) > 2 * len(self.placed) + 64:    # drop released jobs' entries
            self.lock_deadlines = [e for e in self.lock_deadlines
                                   if e[2] in self.placed and self.placed[e[2]][2] == e[1]]
            heapq.heapify(self.lock_deadlines)
        discard(self.on_agent, agent, job_id)
        discard(self.by_user, job.user, job_id)
        self.by_project[job.project] -= 1
        if not self.by_project[job.project]:
            del self.by_project[job.project]
        discard(self.by_shared, job.shared, job_id)
        for limit, name in limits(job):
            if self._ok(limit, name):
                self._wake(self.parked.pop((limit, name), ()))

    def expire(self, now: float) -> bool:
        """The clock moves to `now`: user locks held longer than `user_lock_stale` are freed.
        True if one was (something may start now)."""
        self.now = now
        freed = False
        heap = self.lock_deadlines
        while heap and heap[0][0] < now:
            _, order, job_id = heapq.heappop(heap)
            entry = self.placed.get(job_id)
            if entry is None or entry[2] != order:
                continue        # released (maybe placed again) since it was pushed
            self.stale.add(job_id)
            log.info("job %s: user %s's lock is stale (held over %gs)", job_id, entry[0].user,
                     self.cfg.user_lock_stale)
            freed |= self._unlock(entry[0].user, job_id)
        return freed

    def _holds_lock(self, job_id: str, agent_name: str) -> bool:
        """A placed job holds its user's lock while its agent is live and the lock is fresh."""
        agent = self.agents.get(agent_name)
        return agent is not None and agent.live and job_id not in self.stale

    def _unlock(self, user: str, job_id: str) -> bool:
        holders = self.by_user.get(user)
        if holders is None or job_id not in holders:
            return False
        discard(self.by_user, user, job_id)
        if self._user_ok(user):
            self._wake(self.parked.pop(("user", user), ()))
        return True

    def _relock(self, agent_name: str) -> None:
        """An agent came, went or was lost: its jobs take or drop their users' locks."""
        for job_id in sorted(self.on_agent.get(agent_name, ())):
            job = self.placed[job_id][0]
            if self._holds_lock(job_id, agent_name):
                self.by_user.setdefault(job.user, set()).add(job_id)
            else:
                self._unlock(job.user, job_id)

    def _wake(self, buckets: Iterable[Bucket]) -> None:
        for bucket in buckets:
            if bucket.parked:
                bucket.parked = False
                head = self._head(bucket)
                if head is not None:
                    self._announce(bucket, head)

    def resolve(self, job_id: str, succeeded: bool) -> list[str]:
        """`job_id` ended: its waiting dependents are freed, or (it failed) removed and
        returned, oldest first, for the broker to fail."""
        failed = []
        for dep_id in sorted(self.dependents.pop(job_id, ()), key=lambda i: self.waiting[i].seq):
            job = self.waiting[dep_id]
            if not succeeded:
                self.remove(dep_id)
                failed.append(dep_id)
                continue
            job.after = job.after - {job_id}
            if not job.after:
                del self.waiting[dep_id]
                self._enqueue(job)
        return failed

    # agents ----------------------------------------------------------------------
    def agent_up(self, agent: SchedAgent) -> None:
        self.agents[agent.name] = agent
        self._relock(agent.name)

    def agent_load(self, name: str, cpu: float, memory: float, gpu_free_gb: float = -1.0) -> None:
        agent = self.agents.get(name)
        if agent is not None:
            agent.cpu, agent.memory, agent.gpu_free_gb = cpu, memory, gpu_free_gb

    def agent_down(self, name: str) -> None:
        agent = self.agents.get(name)
        if agent is not None:
            agent.live = False
            self._relock(name)

    def agent_remove(self, name: str) -> None:
        if self.agents.pop(name, None) is not None:
            self._relock(name)

    def set_draining(self, name: str, draining: bool) -> None:
        agent = self.agents.get(name)
        if agent is not None:
            agent.draining = draining

    def set_limited(self, name: str, until: float, what: str = "") -> None:
        """The agent's accounts are all limited until `until` (0: it has one free again)."""
        agent = self.agents.get(name)
        if agent is not None:
            agent.limited_until, agent.limited = until, what if until else ""

    # blocks (budgets) ----------------------------------------------------------------
    def block(self, kind: str, name: str, reason: str) -> None:
        """No job of this user or project (`kind`) starts until `unblock`; `reason` says why."""
        self.blocked[(kind, name)] = reason

    def unblock(self, kind: str, name: str) -> None:
        if self.blocked.pop((kind, name), None) is not None and self._ok(kind, name):
            self._wake(self.parked.pop((kind, name), ()))

    # rules -----------------------------------------------------------------------
    def _user_ok(self, user: str) -> bool:
        limit = user_limit(self.cfg, user)
        return (("user", user) not in self.blocked
                and (not limit or len(self.by_user.get(user, ())) < limit))

    def _project_ok(self, project: str) -> bool:
        cap = self.cfg.max_per_project
        return (("project", project) not in self.blocked
                and (not cap or self.by_project.get(project, 0) < cap))

    def _ok(self, limit: str, name: str) -> bool:
        """Room under one limit: its user's locks, its project's cap, or one job at a time
        in its shared work directory (a project without `repo`)."""
        if limit == "user":
            return self._user_ok(name)
        return self._project_ok(name) if limit == "project" else not self.by_shared.get(name)

    def _full(self, job: SchedJob) -> tuple[str, str] | None:
        """The first limit `job` is held by that has no room now (None: none is full)."""
        return next((limit for limit in limits(job) if not self._ok(*limit)), None)

    def _open_agents(self) -> list[SchedAgent]:
        """Agents that may take a job now: live, not draining nor limited, a slot free, and
        under the ceilings unless they run nothing of ours (rules.may_add)."""
        out = []
        for a in self.agents.values():
            running = len(self.on_agent.get(a.name, ()))
            if a.open and running < a.slots and may_add(self.cfg, a, running):
                out.append(a)
        return out

    def _best(self, agents: list[SchedAgent], kind: str, gpu: float,
              avoid: frozenset[str] = frozenset()) -> SchedAgent | None:
        if avoid and rules.others_offer(self.agents.values(), kind, avoid):
            agents = [a for a in agents if a.name not in avoid]
        best, best_key = None, None
        for a in agents:
            if kind in a.capabilities and (gpu <= 0 or a.gpu_free_gb >= gpu):
                key = (self.agent_score(a.name), a.name)
                if best_key is None or key < best_key:
                    best, best_key = a, key
        return best

    # decisions -------------------------------------------------------------------
    def pick(self, now: float | None = None) -> tuple[str, str] | None:
        """The next (job id, agent) to start, recorded as placed; None if nothing can start.
        `now` (monotonic) moves the clock first, see `expire`."""
        if now is not None:
            self.expire(now)
        cap = self.cfg.max_concurrent
        if cap and len(self.placed) >= cap:
            return None
        agents = self._open_agents()
        if not agents:
            return None
        takers: dict[tuple[str, float, frozenset[str]], SchedAgent | None] = {}
        for priority in range(LEVELS):
            if not self.counts[priority]:
                continue
            best, best_agent = None, None
            for cls, heap in self.ready[priority].items():
                if not heap:
                    continue
                if cls not in takers:
                    takers[cls] = self._best(agents, *cls)
                if takers[cls] is None:
                    continue        # nobody can take this type now: its heap stays untouched
                entry = self._top(heap)
                if entry is not None and (best is None or entry < best):
                    best, best_agent = entry, takers[cls]
            if best is not None and best_agent is not None:
                return self._start(best, best_agent)
        return None

    def _top(self, heap: list) -> tuple | None:
        """The entry of the oldest startable bucket head; drops stale entries, parks blocked."""
        while heap:
            entry = heap[0]
            seq, bucket = entry
            if bucket.entry is not entry:
                heapq.heappop(heap)
                continue
            head = self._head(bucket)
            if head is None:
                heapq.heappop(heap)
                bucket.entry = None
                continue
            if head.seq != seq:      # its head was cancelled: re-announce the new one
                heapq.heappop(heap)
                self._announce(bucket, head)
                continue
            full = self._full(head)             # the bucket's jobs share user, project, workdir
            if full is None:
                return entry
            heapq.heappop(heap)                 # parked until that limit has room
            bucket.entry = None
            bucket.parked = True
            self.parked.setdefault(full, []).append(bucket)
        return None

    def _start(self, entry: tuple, agent: SchedAgent) -> tuple[str, str]:
        bucket = entry[1]
        heap = self.ready[bucket.key[0]][bucket_cls(bucket.key)]
        heapq.heappop(heap)                     # `entry` is its top
        bucket.entry = None
        job = heapq.heappop(bucket.heap)
        del self.pending[job.id]
        self.counts[job.priority] -= 1
        self.critical.pop(job.id, None)
        bucket.live -= 1
        if bucket.live:
            head = self._head(bucket)
            if head is not None:
                self._announce(bucket, head)
        else:
            del self.buckets[bucket.key]
            bucket.heap.clear()
        self._hold(job, agent.name, self.now)
        return job.id, agent.name

    def why(self, job_id: str, wall: float | None = None) -> str:
        """Why a pending job is not running now; "" if it is not pending here. `wall`: the
        time now (unix), for how long a usage limit still holds."""
        job = self.pending.get(job_id) or self.waiting.get(job_id)
        if job is None:
            return ""
        blocked = self.blocked.get(("user", job.user)) or self.blocked.get(("project", job.project))
        reason = rules.explain(self.cfg, job, self.agents.values(),
                               lambda name: len(self.on_agent.get(name, ())),
                               self.by_user.get(job.user, ()),
                               self.by_project.get(job.project, 0), len(self.placed),
                               self.by_shared.get(job.shared, ()) if job.shared else (),
                               blocked or "", wall)
        return reason or BEHIND

    def preemptions(self, now: float) -> list[tuple[str, str]]:
        """(critical job, low victim) pairs, oldest critical first, if cfg.preempt.

        A critical job qualifies when it has waited `preempt_after` seconds, has no open
        dependency, its user and project are under their limits, and no agent can take it
        now. Its victim is the most recently placed low job (the least work lost) on a
        live, non-draining agent under its ceilings that offers the job's type; each
        victim is named once. The broker stops the victim and requeues it.
        """
        self.expire(now)
        if not self.cfg.preempt or not self.critical:
            return []
        agents = self._open_agents()
        chosen: set[str] = set()
        out = []
        for job in sorted(self.critical.values(), key=lambda j: j.seq):
            if (job.after or now - job.submitted < self.cfg.preempt_after
                    or self._full(job) is not None):
                continue
            cap = self.cfg.max_concurrent
            fits = self._best(agents, job.type, job.gpu_mem_gb, job.avoid)
            if (not cap or len(self.placed) < cap) and fits:
                continue            # it can start: the next pick() starts it
            victim = self._victim(job, chosen)
            if victim is not None:
                chosen.add(victim)
                out.append((job.id, victim))
        return out

    def _victim(self, job: SchedJob, chosen: set[str]) -> str | None:
        best, best_order = None, -1
        for placed, agent_name, order in self.placed.values():
            agent = self.agents.get(agent_name)
            if (placed.priority == Priority.LOW and placed.id not in chosen and order > best_order
                    and agent is not None and agent.open
                    and job.type in agent.capabilities   # the ceilings as without the victim
                    and may_add(self.cfg, agent, len(self.on_agent.get(agent_name, ())) - 1)):
                best, best_order = placed.id, order
        return best

    # introspection -----------------------------------------------------------------
    def pending_count(self) -> int:
        return len(self.pending) + len(self.waiting)

    def pending_by_priority(self) -> dict[int, int]:
        return {p: n for p, n in enumerate(self.counts) if n}

    def running_on(self, agent: str) -> set[str]:
        return set(self.on_agent.get(agent, ()))

    def gpu_needs(self, agent: str) -> list[float]:
        """The GPU memory (GB) each job placed on `agent` needs."""
        return [self.placed[j][0].gpu_mem_gb for j in self.on_agent.get(agent, ())]

    def agent_score(self, name: str) -> float:
        """The agent's load score (rules.load_score); 0 if unknown."""
        agent = self.agents.get(name)
        return load_score(self.cfg, agent, len(self.on_agent.get(name, ()))) if agent else 0.0
