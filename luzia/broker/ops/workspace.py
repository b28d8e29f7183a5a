"""Workspaces: what `luzia merge` and `luzia discard` tell the broker (docs/WORKSPACES.md).

The branch itself is merged where the user's checkout is, by the CLI; the broker only
records the outcome. A discard is done by the agent that holds the worktree: the broker
records it and asks that agent in its heartbeats until the agent reports it done.
"""

from __future__ import annotations

from typing import Any

from luzia.broker import workspace
from luzia.broker.job import Job
from luzia.broker.model import Model
from luzia.broker.ops.request import Args, job_view, resolve
from luzia.errors import BadRequest, Refused

HOW = ("merged", "squashed")


def merged(m: Model, args: Args) -> dict[str, Any]:
    """workspace.merged {id, how: merged|squashed} → job: record that the CLI merged the
    job's branch into the user's checkout. Refused for a job that has not ended or whose
    workspace was discarded."""
    how = args.get("how", str, "merged")
    if how not in HOW:
        raise BadRequest(f"how must be one of {', '.join(HOW)}")
    job = _ended_workspace(m, args, "merged")
    if job.outcome == "discarded":
        raise Refused(f"job {job.id}'s workspace was discarded")
    workspace.merged(m, job, how)
    return job_view(m, job)


def discard(m: Model, args: Args) -> dict[str, Any]:
    """workspace.discard {id} → job + {removing: bool}: the job's agent removes its worktree
    and branch (removing: an agent holds one; it is asked in every heartbeat until it says
    it is done, so a discard waits for an agent that is down). Refused for a job that has
    not ended; discarding twice is no error."""
    job = _ended_workspace(m, args, "discarded")
    removing = job.outcome == "discarded" and job.id in m.discards.get(job.workspace_host, ())
    if job.outcome != "discarded":
        removing = workspace.discard(m, job)
    out = job_view(m, job)
    out["removing"] = removing
    return out


def _ended_workspace(m: Model, args: Args, what: str) -> Job:
    job = resolve(m, args.get("id", str))
    if not job.repo:
        raise Refused(f"job {job.id} ran without a workspace (its project has no repo)")
    if job.id in m.jobs:
        raise Refused(f"job {job.id} is {job.state.value}; it can be {what} once it has "
                      f"ended (luzia cancel {job.id})")
    return job


OPS = {"workspace.merged": merged, "workspace.discard": discard}
