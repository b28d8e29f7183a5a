"""The job views of `luzia jobs`: the list (a table), one job in detail, and the line per
change of `--watch` without a terminal; plain text, or rich on a terminal. Everything from
the broker passes through `clean`.
"""

from __future__ import annotations

import time
from typing import Any

from luzia.cli.budget import attempt_cost, cost_cell, usage_lines
from luzia.cli.render import STATE_STYLE, TERMINAL, age, bar, clean, fancy, num, stamp
from luzia.states import exit_text

TABLE_HEAD = ("ID", "STATE", "PROJECT", "USER", "PRIO", "AGE", "PROGRESS", "COST", "HOST", "NOTE")


def show(view: Any) -> None:
    """A list of jobs as the table, one job in detail."""
    if isinstance(view, list):
        jobs_table(view)
    else:
        job_detail(view)


def note(job: dict[str, Any]) -> str:
    """The one thing to say about a job in a list: why pending, the message, or the reason."""
    state = clean(job.get("state"))
    if state == "pending":
        return job.get("why") or job.get("reason") or ""
    if state in TERMINAL and state != "completed":
        return job.get("reason") or job.get("message") or ""
    return job.get("message") or job.get("reason") or ""


def table_rows(jobs: list[dict[str, Any]], now: float | None = None) -> list[tuple[str, ...]]:
    """The list view's cells, every one of them cleaned."""
    now = time.time() if now is None else now
    rows: list[tuple[str, ...]] = []
    for j in jobs:
        submitted = num(j.get("submitted_at"))
        rows.append((clean(j.get("id"), 24), state_cell(j, now), clean(j.get("project"), 24),
                     clean(j.get("user"), 16), clean(j.get("priority"), 10),
                     age(now - submitted) if submitted is not None else "-",
                     bar(j.get("progress"), 10), cost_cell(j), clean(j.get("host"), 20) or "-",
                     clean(note(j), 50)))
    return rows


def stalled_for(job: dict[str, Any], now: float) -> str:
    """How long a running job's output has not changed ("" unless it is flagged stalled)."""
    if not job.get("stalled") or clean(job.get("state")) != "running":
        return ""
    since = num(job.get("stalled_since"))
    return age(now - since) if since is not None else "?"


def needs_input(job: dict[str, Any]) -> bool:
    """A running job whose pane waits for a person (issue 14)."""
    return bool(job.get("needs_input")) and clean(job.get("state")) == "running"


def state_cell(job: dict[str, Any], now: float) -> str:
    """`running`; `running (needs input)` for one waiting for a person, `running (stalled
    5m)` for one without output for a while."""
    stalled = stalled_for(job, now)
    state = clean(job.get("state"), 12)
    if needs_input(job):
        return f"{state} (needs input)"
    return f"{state} (stalled {stalled})" if stalled else state


def summary(jobs: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for j in jobs:
        state = clean(j.get("state"))
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def plain_table(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs yet; submit one with: luzia PROJECT \"what to do\""
    rows = [TABLE_HEAD, *table_rows(jobs)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n\n" + summary(jobs)


def rich_table(jobs: list[dict[str, Any]]) -> Any:
    """The list view as a rich renderable (for print and for Live)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    if not jobs:
        return Text(plain_table(jobs))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for h in TABLE_HEAD:
        table.add_column(h, overflow="fold" if h == "NOTE" else "ellipsis", no_wrap=h != "NOTE")
    for row in table_rows(jobs):
        # Text cells, never markup: a task's "[red]" is text like any other
        cells = [Text(c) for c in row]
        cells[1].stylize(STATE_STYLE.get(row[1].split(" ")[0], ""))
        table.add_row(*cells)
    return Group(table, Text(""), Text(summary(jobs)))


def jobs_table(jobs: list[dict[str, Any]]) -> None:
    if fancy():
        from rich.console import Console
        Console().print(rich_table(jobs))
    else:
        print(plain_table(jobs))


def status_line(job: dict[str, Any]) -> str:
    """`RUNNING [██████░░░░░░░░░░░░░░] 30% message` — the head of the detail view."""
    return f"{clean(job.get('state')).upper()} {bar(job.get('progress'))} " \
           f"{clean(job.get('message'), 60)}".rstrip()


def job_lines(job: dict[str, Any], now: float | None = None) -> list[str]:
    """One job in detail, as plain lines."""
    now = time.time() if now is None else now
    lines = [
        status_line(job),
        f"job        {clean(job.get('id'))}  ({attempts_text(job)})",
        f"project    {clean(job.get('project'))}   user {clean(job.get('user'))}   "
        f"priority {clean(job.get('priority'))}   type {clean(job.get('type')) or '-'}",
        f"host       {clean(job.get('host')) or '-'}",
        f"task       {clean(job.get('task'), 200)}",
    ]
    return (lines + _time_lines(job, now) + _note_lines(job, now) + usage_lines(job, now)
            + workspace_lines(job) + _more_lines(job))


def attempts_text(job: dict[str, Any]) -> str:
    """Which attempt this is and why, so the count never reads "4 of 3": `attempt 2 of 3`
    within the retry budget, `attempt 4 (3 allowed + 1 manual retry)` past it, `attempt 3
    of 3, waiting` for a pending job's next one, `not started yet (1 allowed)`."""
    state = clean(job.get("state"))
    ran = int(num(job.get("attempt")) or 0)
    allowed = 1 + int(num(job.get("max_retries")) or 0)
    if state == "spooled":
        return f"not started yet ({allowed} allowed)"
    if not ran:
        return f"not started yet ({allowed} allowed)" if state == "pending" else \
            f"never started ({allowed} allowed)"
    found = job.get("causes")
    causes: dict[str, Any] = found if isinstance(found, dict) else {}
    counts = {k: int(num(causes.get(k)) or 0) for k in ("automatic", "manual", "requeued")}
    waiting = state == "pending"
    if waiting and causes.get("next") in counts:
        counts[str(causes["next"])] += 1           # the attempt it waits for
    current = ran + 1 if waiting else ran
    extra = counts["manual"] + counts["requeued"]
    if not causes:          # an older broker: no causes, say only what is certain
        counts["automatic"] = current - 1
    tail = ", waiting" if waiting else ""
    if not extra and current <= allowed:
        return f"attempt {current} of {allowed}{tail}"
    planned = current - extra                     # the first run and its automatic retries
    first = (f"{planned} allowed" if planned == allowed else
             f"{planned} of {allowed} allowed" if planned < allowed else
             f"{planned} by automatic retries, {allowed} allowed each time")
    parts = [first]
    if counts["manual"]:
        parts.append(f"{counts['manual']} manual retr{'y' if counts['manual'] == 1 else 'ies'}")
    if counts["requeued"]:
        why = clean(causes.get("requeued_why"), 60)
        parts.append(f"{counts['requeued']} requeued" + (f": {why}" if why else ""))
    return f"attempt {current} ({' + '.join(parts)}){tail}"


def _time_lines(job: dict[str, Any], now: float) -> list[str]:
    """When it was submitted, started and finished, and how long it waited and ran."""
    submitted = num(job.get("submitted_at")) or now
    started, finished = num(job.get("started_at")), num(job.get("finished_at"))
    waited = (started or finished or now) - submitted
    ran = ((finished or now) - started) if started else None
    by = f" by {clean(job.get('submitter'), 32)}" if job.get("submitter") else ""
    lines = [f"submitted  {stamp(submitted)}{by}   waited {age(waited)}"]
    if started:
        lines.append(f"started    {stamp(started)}   " + (f"ran {age(ran)}" if finished
                                                            else f"running for {age(ran)}"))
    if finished:
        code = num(job.get("exit_code"))
        lines.append(f"finished   {stamp(finished)}   "
                     f"{exit_text(None if code is None else int(code))}")
    return lines


def _note_lines(job: dict[str, Any], now: float) -> list[str]:
    """Its message, why it waits or why it ended, whether it is stalled or needs input."""
    lines = []
    if job.get("message"):
        lines.append(f"message    {clean(job['message'], 200)}")
    if clean(job.get("state")) in ("pending", "spooled") and job.get("why"):
        lines.append(f"why        {clean(job['why'], 200)}")
    if job.get("reason"):        # a pending job's too: "retry 1/2 after exit 1"
        lines.append(f"reason     {clean(job['reason'], 200)}")
    if stalled_for(job, now):
        lines.append(f"stalled    no output for {stalled_for(job, now)} (snapshot: "
                     "stall-snapshot.txt in its job directory)")
    if needs_input(job):
        lines += waiting_lines(job, now)
    return lines


def waiting_lines(job: dict[str, Any], now: float) -> list[str]:
    """Since when the job waits for a person, how to answer, and what its pane shows."""
    since = num(job.get("needs_input_since"))
    job_id = clean(job.get("id"))
    out = [f"attention  needs input{' for ' + age(now - since) if since is not None else ''}: "
           f"answer with luzia reply {job_id} \"...\" (or luzia attach {job_id})"]
    shown = job.get("needs_input_lines")
    if isinstance(shown, list) and shown:
        out.append("its screen:")
        out += ["  " + clean(line, 200) for line in shown[-10:]]
    return out


def _more_lines(job: dict[str, Any]) -> list[str]:
    """Its attempts (when more than one) and the last lines of its output."""
    lines = []
    attempts = job.get("attempts")
    if isinstance(attempts, list) and len(attempts) > 1:
        lines.append("attempts:")
        lines += ["  " + attempt_line(a) for a in attempts[-10:] if isinstance(a, dict)]
    tail = job.get("tail")
    tail = tail if isinstance(tail, list) else []
    if tail:
        lines.append("output (last lines):")
        lines += ["  " + clean(t, 200) for t in tail[-10:]]
    return lines


def attempt_line(attempt: dict[str, Any]) -> str:
    """`#2 gpu1  exit 1  timeout` for one past or current attempt of a job."""
    code = num(attempt.get("exit_code"))
    ended = "running" if code is None and not attempt.get("finished_at") else \
        exit_text(None if code is None else int(code))
    return (f"#{int(num(attempt.get('attempt')) or 0)} {clean(attempt.get('host'), 30) or '-'}  "
            f"{stamp(attempt.get('started_at'))}  {ended}{attempt_cost(attempt)}  "
            f"{clean(attempt.get('reason'), 80)}"
            + (f"  base {clean(attempt['base_commit'], 64)[:10]}" if attempt.get("base_commit") else "")
            ).rstrip()


def workspace_lines(job: dict[str, Any], verbose: bool = False) -> list[str]:
    """The workspace part of a job's detail view (none without a repo)."""
    if not job.get("repo"):
        return []
    lines = []
    name = clean(job.get("branch"), 256)
    if name:
        lines.append(f"branch     {name}  ({_changes(job)}; {_outcome(job)})")
    base, commit = clean(job.get("base"), 256), clean(job.get("base_commit"), 64)
    lines.append(f"base       {base or 'HEAD'}" + (f" @ {commit[:10]}" if commit else
                                                   " (fixed when it starts)"))
    path, host = clean(job.get("workspace"), 4096), clean(job.get("workspace_host"), 255)
    if path:
        lines.append(f"workspace  {host}:{path}")
    elif name:
        why = "discarded" if job.get("outcome") == "discarded" else "after agent.workspace_keep"
        lines.append(f"workspace  removed ({why})")
    if job.get("push"):
        lines.append(f"push       {clean(job.get('push'), 200)}")
    if verbose:
        lines.append(f"repo       {clean(job.get('repo'), 300)}")
    return lines


def _changes(job: dict[str, Any]) -> str:
    files = num(job.get("files_changed"))
    if clean(job.get("state")) not in TERMINAL:
        return "running"
    if files is None:
        return "changes not known"
    if files == 0:
        return "no changes"
    added, removed = int(num(job.get("lines_added")) or 0), int(num(job.get("lines_removed")) or 0)
    return f"{int(files)} files, +{added} −{removed}"


def _outcome(job: dict[str, Any]) -> str:
    outcome = clean(job.get("outcome"), 32)
    return {"merged": "merged", "squashed": "merged (squash)", "discarded": "discarded"}.get(
        outcome, "not merged")


def rich_job(job: dict[str, Any]) -> Any:
    from rich.text import Text
    lines = job_lines(job)
    text = Text(lines[0], style=f"bold {STATE_STYLE.get(clean(job.get('state')), '')}".strip())
    for line in lines[1:]:
        text.append("\n" + line)
    return text


def job_detail(job: dict[str, Any]) -> None:
    if fancy():
        from rich.console import Console
        Console(highlight=False).print(rich_job(job))
    else:
        print("\n".join(job_lines(job)))


def change_line(job: dict[str, Any]) -> str:
    """One line per change for --watch without a terminal."""
    return f"{stamp(time.time())}  {clean(job.get('id'))}  {status_line(job)}"

