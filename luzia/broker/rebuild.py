"""Rebuilding what a lost job database held, from what survives beside it.

A missing or zero-length luzia.db next to job directories means the history is gone: the
broker says so loudly and, before it restores its queue, puts back the jobs that were not
finished: each job directory whose end the broker never acknowledged holds the job's spec
in meta.json (written by the agent of this host). Such a job comes back as `running` on
that agent, so the agent's Hello re-adopts it if it still has it (a finished one reports
its exit code then) and the broker requeues it if not; nothing runs twice because of the
rebuild. The spool needs nothing: the broker takes its files at start, as always.

`luzia db recover` asks for the same (the meta row `rebuild`) for the jobs a salvage lost.
Finished jobs are not rebuilt: their output stays in their directories.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from luzia import layout, protocol
from luzia.broker.job import Job
from luzia.broker.store import Store
from luzia.config import Config
from luzia.errors import ProtocolError
from luzia.jobstatus import attempt_record
from luzia.states import JobState

log = logging.getLogger(__name__)

SHOWN = 10         # job ids named in a log line


def if_needed(store: Store, cfg: Config) -> list[str]:
    """Rebuild when the database was just created beside earlier work, or recover asked for
    it; the ids rebuilt (committed)."""
    asked = store.meta("rebuild")
    if not store.opened.created and not asked:
        return []
    dirs = _job_dirs(Path(cfg.jobs_dir))
    spooled = _spooled(cfg.spool_dir)
    if not asked and not dirs:
        if spooled:
            log.warning("no job database was at %s; the spool holds %d jobs, taken as new "
                        "submissions. Unless this is a new installation, the job history was "
                        "lost (see `luzia db check`)", store.path, spooled)
        return []
    why = asked.get("why", "asked for") if isinstance(asked, dict) else _lost(store)
    if not asked:
        log.error("job database %s %s, but %s holds %d job directories: the job history and "
                  "the agents' drains are gone; rebuilding the unfinished jobs from their "
                  "directories (the spool's %d jobs are taken as usual)", store.path, why,
                  cfg.jobs_dir, len(dirs), spooled)
    agent = _local_agent(cfg)
    rebuilt, finished = [], 0
    for path in dirs:
        found = _unfinished(path)
        if found is None:
            finished += 1
        elif store.get(found[0].id) is None:
            _insert(store, found, agent, why)
            rebuilt.append(found[0].id)
    store.set_meta("rebuild", None)
    store.set_meta("rebuilt", {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "why": why,
                               "jobs": len(rebuilt), "ids": rebuilt[:50]})
    store.commit()
    (log.error if rebuilt else log.warning)(
        "rebuilt %d unfinished jobs as running on agent %s (its Hello re-adopts those it still "
        "has; the rest are requeued)%s; %d finished jobs are not in the history any more, "
        "their output stays in %s", len(rebuilt), agent, _some(rebuilt), finished, cfg.jobs_dir)
    return rebuilt


def _lost(store: Store) -> str:
    return "was empty (0 bytes)" if store.opened.existed else "was missing"


def _job_dirs(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if (p / layout.META).is_file())
    except OSError:
        return []


def _spooled(spool: Path) -> int:
    try:
        return sum(1 for p in spool.iterdir() if p.name.endswith(layout.SPOOL_SUFFIX))
    except OSError:
        return 0


def _unfinished(path: Path) -> tuple[protocol.JobSpec, dict[str, Any], dict[str, Any]] | None:
    """(spec, meta, status) of a job directory whose end the broker never acknowledged."""
    try:
        status, _ = attempt_record(path)     # meta.json's, or status.json once it changed
        if not status or status.get("acked"):
            return None
        meta = json.loads((path / layout.META).read_text())
        spec = protocol.from_plain(protocol.JobSpec, meta["job"])
        assert isinstance(spec, protocol.JobSpec)       # from_plain builds the class asked for
    except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
        log.warning("job directory %s cannot be rebuilt: %s", path, exc)
        return None
    if spec.id != path.name:
        log.warning("job directory %s holds job %s: not rebuilt", path, spec.id)
        return None
    return spec, meta, status


def _local_agent(cfg: Config) -> str:
    """The agent that wrote this host's job directories: the one health socket in the run
    directory, else this host's configured agent name."""
    prefix = "agent-"
    try:
        names = [p.name[len(prefix):] for p in Path(cfg.run_dir).iterdir()
                 if p.name.startswith(prefix) and p.is_socket()]
    except OSError:
        names = []
    return names[0] if len(names) == 1 else cfg.agent.name


def _insert(store: Store, found: tuple[protocol.JobSpec, dict[str, Any], dict[str, Any]],
            agent: str, why: str) -> None:
    spec, meta, status = found
    attempt = int(status.get("attempt") or meta.get("attempt") or 1)
    started = float(meta.get("created_at") or status.get("started_at") or time.time())
    job = Job(id=spec.id, seq=store.next_seq, project=spec.project, user=spec.user, task=spec.task,
              priority=spec.priority, type=spec.type or "code", timeout=spec.timeout,
              max_retries=spec.max_retries, workdir=spec.workdir,
              submitted_at=spec.submitted_at or started, state=JobState.RUNNING,
              after=list(spec.after), metadata=dict(spec.metadata), host=agent, attempt=attempt,
              assigned_at=started, started_at=started, updated_at=time.time())
    store.insert(job)
    store.save(job, f"rebuilt from its job directory (the job database {why})")


def _some(ids: list[str]) -> str:
    if not ids:
        return ""
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return f": {', '.join(ids[:SHOWN])}{more}"
