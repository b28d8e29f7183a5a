"""The CLI's end of the broker's control socket, shared by every command: the config, one
connection per command, answers checked before use (they came over the network), and
results printed as JSON the way the broker sent them.

The requests are docs/PROTOCOL.md's control ops; luzia.client.Control sends them.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from luzia.errors import NotFound, ProtocolError

if TYPE_CHECKING:
    from luzia.client import Control
    from luzia.config import Config

JSON_HELP = "JSON instead of a table."      # --json of the queries whose view is a table
SPOOL_PATIENCE = 2.0   # seconds `jobs ID` waits for a job the broker has not taken from the spool


def load_config() -> Config:
    from luzia.config import load
    return load()


def connect() -> Control:
    """A control connection with the root command's --control-timeout."""
    from luzia.client import Control
    timeout = (click.get_current_context().find_object(dict) or {}).get("timeout", 3.0)
    return Control(load_config(), timeout=timeout)


def call(ctl: Control, op: str, **args: Any) -> Any:
    """`ctl.call`, through the answer cache (luzia/cache.py: LUZIA_CACHE_TTL) for the
    queries views repeat; a change made from here voids what was cached."""
    from luzia import cache
    return cache.call(ctl, op, **args)


def ask(op: str, kind: type, **args: Any) -> Any:
    """One control request whose result must be a `kind`; None-valued args are left out."""
    with connect() as ctl:
        result = call(ctl, op, **{k: v for k, v in args.items() if v is not None})
    if not isinstance(result, kind):
        raise ProtocolError(f"the broker answered {op} with a malformed result")
    return result


def checked_job(value: Any, op: str) -> dict[str, Any]:
    """A job object from the broker, with the fields the views branch on checked."""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) \
            or not isinstance(value.get("state"), str):
        raise ProtocolError(f"the broker answered {op} with something that is not a job")
    return value


def checked_jobs(value: Any, op: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ProtocolError(f"the broker answered {op} with something that is not a list of jobs")
    return [checked_job(v, op) for v in value]


def checked_results(value: Any, op: str) -> list[dict[str, Any]]:
    """The per-job results of jobs.cancel and jobs.retry: a list of objects."""
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ProtocolError(f"the broker answered {op} with something that is not a list")
    return value


def fetch_job(ctl: Control, job_id: str) -> dict[str, Any]:
    """jobs.get, patient with a job submitted a moment ago: while its spool file is still
    here the broker has not taken it yet, so ask again for a little while."""
    from luzia.ids import JOB_ID_RE
    spooled = ctl.cfg.spool_dir / f"{job_id}.job" if JOB_ID_RE.fullmatch(job_id) else None
    deadline = time.monotonic() + SPOOL_PATIENCE
    while True:
        try:
            return checked_job(call(ctl, "jobs.get", id=job_id), "jobs.get")
        except NotFound:
            if spooled is None or not spooled.exists():
                raise
            if time.monotonic() > deadline:
                raise NotFound(f"job {job_id} is still in the spool ({spooled.parent}); "
                               "the broker has not taken it yet") from None
        time.sleep(0.05)  # polling step while the broker takes the job


def spooled_job(cfg: Config, ident: str, why: str) -> dict[str, Any] | None:
    """The job `ident` (an id or a unique prefix) as this host's spool holds it, for when
    the broker cannot be asked (`why`): state "spooled", not yet delivered. None if the
    spool has no such job; Ambiguous if the prefix names several."""
    from luzia import layout, protocol
    from luzia.errors import Ambiguous
    from luzia.ids import JOB_PREFIX_RE
    from luzia.states import Priority
    if not JOB_PREFIX_RE.fullmatch(ident) or not cfg.spool_dir.is_dir():
        return None
    found = sorted(cfg.spool_dir.glob(f"{ident}*{layout.SPOOL_SUFFIX}"))
    if len(found) > 1:
        raise Ambiguous(f"{ident!r} names more than one spooled job; give more of the id")
    try:
        spec = protocol.spool_load(found[0].read_bytes()).job if found else None
    except (OSError, ProtocolError):
        return None        # taken by the broker meanwhile, or not readable: not shown
    if spec is None:
        return None
    return {"id": spec.id, "state": "spooled", "project": spec.project, "user": spec.user,
            "priority": Priority(spec.priority).label, "type": spec.type, "task": spec.task,
            "max_retries": spec.max_retries, "attempt": 0, "progress": -1.0, "message": "",
            "why": f"spooled, not yet delivered: {why}", "reason": "", "host": "",
            "after": list(spec.after), "metadata": dict(spec.metadata), "workdir": spec.workdir,
            "submitted_at": spec.submitted_at, "spool_file": str(found[0])}


def dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=json_bytes))


def json_bytes(value: Any) -> Any:
    """json.dumps' `default`: bytes from the wire as text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(type(value).__name__)
