"""`luzia retry ID...`: run a failed, killed or lost job again as a new attempt (broker op
jobs.retry, luzia/broker/control_jobs.py)."""

from __future__ import annotations

import json

import click

from luzia.errors import LuziaError, ProtocolError


class NotRetried(LuziaError):
    """Some of the named jobs were not retried (completed, still running, ...)."""

    exit_code = 1


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of {id, state, result}.")
def retry(job_ids, as_json) -> None:
    """Run failed, killed or lost jobs again: same id, next attempt, back in the queue.

    One line per job: retrying, or not retried and why (a completed job is not run
    again: submit its task anew; a pending or running one is left alone). Exit 1 if any
    job was not retried; an unknown id retries none of them (exit 2)."""
    from luzia.cli import render
    from luzia.cli.app import _control
    with _control() as ctl:
        results = ctl.call("jobs.retry", ids=list(job_ids))
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ProtocolError("the broker answered jobs.retry with something that is not a list")
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for res in results:
            click.echo(f"{render.clean(res.get('id'))}: {render.clean(res.get('result'))}")
    refused = [r for r in results if r.get("result") != "retrying"]
    if refused:
        raise NotRetried(f"{len(refused)} of {len(results)} jobs not retried")
