"""The dashboard's pages: each asks the broker (control ops, docs/PROTOCOL.md) and renders
a template. Filters and paging are the broker's work (`jobs.list` offset/host/text,
`jobs.count`), so a page costs the same with 100 or 100,000 jobs in history.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from luzia.errors import BadRequest
from luzia.states import JOB_STATE_NAMES, RETRYABLE_NAMES, TERMINAL_NAMES
from luzia.web import charts
from luzia.web.auth import Caller, Refused
from luzia.web.diff import job_diff
from luzia.web.fmt import seconds

if TYPE_CHECKING:
    from luzia.web.site import Web

Page = Callable[["Web", Request, Caller], Awaitable[Response]]
ACTIVE = tuple(s for s in JOB_STATE_NAMES if s not in TERMINAL_NAMES)   # paused too: cancel ends it
STATE_GROUPS = {"active": list(ACTIVE), "finished": sorted(TERMINAL_NAMES)}
FILTERS = ("user", "project", "host", "q")
FLASH = "luzia_flash"
FORM_MAX = 4096             # bytes of a POSTed form
STATS_DAYS = 14


def handler(web: Web, page: Page) -> Callable[[Request], Awaitable[Response]]:
    """A route: sign in with ?token= if given, else the caller must have a token."""
    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            signed_in = web.auth.sign_in(request)
            if signed_in is not None:
                return signed_in
        return await page(web, request, web.caller(request))
    return endpoint


# ---------------------------------------------------------------------------
# the fleet at a glance


async def fleet(web: Web, request: Request, caller: Caller) -> Response:
    link = web.link
    status, queue, agents, running = await asyncio.gather(
        link.call("status"), link.call("queue.status", verbose=True, limit=10),
        link.call("agents.status"), link.call("jobs.list", state=["assigned", "running"], limit=100))
    order = ["critical", "high", "normal", "low"]
    by_priority = [(p, queue["by_priority"].get(p, 0)) for p in order]
    return web.render(request, "fleet.html", live="fleet", caller=caller, status=status,
                      queue=queue, by_priority=by_priority, agents=agents, running=running,
                      deepest=max([n for _, n in by_priority] + [1]), nav="fleet")


# ---------------------------------------------------------------------------
# the job list and history


def list_filters(request: Request) -> dict[str, Any]:
    """The list's filters from the query string, as the broker's jobs.list takes them."""
    q = request.query_params
    states: list[str] = []
    for value in q.getlist("state"):
        states += STATE_GROUPS.get(value, [value] if value in JOB_STATE_NAMES else [])
    out: dict[str, Any] = {"state": states}
    for name in FILTERS:
        value = q.get(name, "").strip()[:200]
        out["text" if name == "q" else name] = value
    return out


def page_number(request: Request) -> int:
    try:
        return max(1, min(100_000, int(request.query_params.get("page", "1"))))
    except ValueError:
        return 1


async def listing(web: Web, request: Request, filters: dict[str, Any]) -> dict[str, Any]:
    """One page of jobs matching `filters`, with the total count when the broker gives it."""
    size = web.cfg.web.page_size
    page = page_number(request)
    listed, counted = await asyncio.gather(
        web.link.call("jobs.list", limit=size, offset=(page - 1) * size, **filters),
        _count(web, filters), return_exceptions=True)
    if isinstance(listed, BaseException):
        raise listed
    total = counted.get("total") if isinstance(counted, dict) else None
    by_state = counted.get("by_state", {}) if isinstance(counted, dict) else {}
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page", "token")]

    def link_to(n: int) -> str:
        return "?" + urlencode([*params, ("page", str(n))])
    first = (page - 1) * size + 1
    more = len(listed) == size and (total is None or first + size - 1 < total)
    return {"jobs": listed, "total": total, "by_state": by_state, "page": page,
            "first": first, "last": first + len(listed) - 1,
            "newer": link_to(page - 1) if page > 1 else "", "older": link_to(page + 1) if more else "",
            "query": dict(request.query_params), "states": request.query_params.getlist("state")}


async def _count(web: Web, filters: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return await web.link.call("jobs.count", **filters)
    except BadRequest:            # a broker from before jobs.count: no total shown
        return None


async def jobs(web: Web, request: Request, caller: Caller) -> Response:
    data = await listing(web, request, list_filters(request))
    return web.render(request, "jobs.html", live="jobs", caller=caller, nav="jobs",
                      state_names=JOB_STATE_NAMES, **data)


async def history(web: Web, request: Request, caller: Caller) -> Response:
    filters = list_filters(request)
    filters["state"] = [s for s in filters["state"] if s in TERMINAL_NAMES] or sorted(TERMINAL_NAMES)
    data = await listing(web, request, filters)
    for job in data["jobs"]:
        job["wait"] = _span(job.get("submitted_at"), job.get("started_at"))
        job["run"] = _span(job.get("started_at"), job.get("finished_at"))
    return web.render(request, "history.html", live="history", caller=caller, nav="history",
                      state_names=sorted(TERMINAL_NAMES), **data)


def _span(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return max(0.0, b - a)
    return None


# ---------------------------------------------------------------------------
# one job


async def job(web: Web, request: Request, caller: Caller) -> Response:
    found = await web.link.call("jobs.get", id=request.path_params["job_id"])
    diff = await job_diff(found)
    flash = request.cookies.get(FLASH, "")
    response = web.render(request, "job.html", live=f"job:{found['id']}", caller=caller,
                          job=found, diff=diff, actions=actions(found, caller), flash=flash,
                          attention=attention(found), usage=usage(found), nav="jobs")
    if flash:
        response.delete_cookie(FLASH, path="/")
    return response


def actions(job: dict[str, Any], caller: Caller) -> list[str]:
    """The buttons this caller gets for this job in its state."""
    if not caller.may_act(job):
        return []
    state = job.get("state")
    out = []
    if state in ACTIVE:
        out.append("cancel")
    if state in RETRYABLE_NAMES:
        out.append("retry")
    return out      # no Merge: `luzia merge` merges in the user's checkout (WORKSPACES.md)


def attention(job: dict[str, Any]) -> dict[str, Any] | None:
    """A job waiting for a person (`needs_input`), with the pane's last lines if given
    (`needs_input_lines`, in jobs.get's job)."""
    flag = job.get("needs_input")
    if not flag:
        return None
    detail = flag if isinstance(flag, dict) else {}
    lines = job.get("needs_input_lines") or detail.get("lines") or job.get("pane") or \
        job.get("last_lines") or []
    if isinstance(lines, str):
        lines = lines.splitlines()
    return {"since": detail.get("since") or job.get("needs_input_since"),
            "prompt": detail.get("prompt") or (flag if isinstance(flag, str) else ""),
            "lines": [str(line) for line in lines][-40:]}


def usage(job: dict[str, Any]) -> list[tuple[str, Any]]:
    """Cost and tokens, when the broker knows them: [(label, value)] (the broker's
    `cost_usd`, `tokens_in`… of docs/AGENTS.md, or a `cost` and a `tokens` dict)."""
    out: list[tuple[str, Any]] = []
    cost = job.get("cost", job.get("cost_usd"))
    if isinstance(cost, (int, float)):
        out.append(("cost", cost))
    out += [(key.replace("_", " "), job[key]) for key in USAGE_KEYS
            if isinstance(job.get(key), (int, float)) and job[key]]
    tokens = job.get("tokens")
    if isinstance(tokens, dict):
        out += [(f"tokens {k.replace('_', ' ')}", v) for k, v in tokens.items()
                if isinstance(v, (int, float))]
    elif isinstance(tokens, (int, float)):
        out.append(("tokens", tokens))
    return out


USAGE_KEYS = ("tokens_in", "tokens_out", "cache_read", "cache_write", "turns")

OPS = {"cancel": ("jobs.cancel", "ids"), "retry": ("jobs.retry", "ids")}


async def act(web: Web, request: Request, caller: Caller) -> Response:
    """POST /jobs/ID/cancel|retry: a button, checked for CSRF and for the caller's right."""
    action = request.path_params["action"]
    if action not in OPS:
        raise Refused(404, f"no action {action!r}; there are {', '.join(OPS)}")
    web.auth.check_post(request, caller, await small_form(request))
    found = await web.link.call("jobs.get", id=request.path_params["job_id"])
    if not caller.may_act(found):
        raise Refused(403, f"{caller.user} may not {action} job {found['id']} of "
                           f"{found.get('user')}: only its user or an admin may")
    op, key = OPS[action]
    args: dict[str, Any] = {key: [found["id"]] if key == "ids" else found["id"]}
    result = await web.link.call(op, **args)
    line = _outcome(action, result)
    if caller.bearer:
        return JSONResponse({"id": found["id"], "action": action, "result": result})
    response = RedirectResponse(f"/jobs/{found['id']}", status_code=303)
    response.set_cookie(FLASH, line[:200], max_age=60, httponly=True, samesite="strict", path="/")
    return response


async def small_form(request: Request) -> dict[str, str]:
    """A button's urlencoded body (a few fields; anything bigger is refused)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            raise Refused(413, "refused: a button's form is never that large")
    try:
        fields = parse_qs(body.decode("latin-1"), max_num_fields=16)
    except ValueError:
        raise Refused(400, "refused: a button's form has a few fields, not that many") from None
    return {k: v[0] for k, v in fields.items()}


def _outcome(action: str, result: Any) -> str:
    row = result[0] if isinstance(result, list) and result and isinstance(result[0], dict) else result
    said = row.get("result") if isinstance(row, dict) else None
    return f"{action}: {said or 'done'}"


# ---------------------------------------------------------------------------
# stats


async def stats(web: Web, request: Request, caller: Caller) -> Response:
    try:
        days = max(1, min(90, int(request.query_params.get("days", STATS_DAYS))))
    except ValueError:
        days = STATS_DAYS
    first = datetime.date.today() - datetime.timedelta(days=days - 1)
    since = time.mktime(first.timetuple())          # local midnight, as the broker's by_day
    data = await web.link.call("stats", since=since, days=days)
    by_day = data.get("by_day") or []
    labels = [row["day"] for row in by_day]
    charts_out = []
    if by_day:
        charts_out.append(("Runs per day", charts.bars("runs per day", labels, [
            charts.Series("completed", "ok", [r.get("completed", 0) for r in by_day]),
            charts.Series("failed", "bad", [r.get("failed", 0) for r in by_day]),
            charts.Series("killed", "warn", [r.get("killed", 0) for r in by_day])])))
        charts_out.append(("Mean wait per day", charts.bars("mean wait per day", labels, [
            charts.Series("mean wait", "wait", [r.get("mean_wait") or 0 for r in by_day])],
            label=seconds)))
        costs = [r.get("cost", r.get("cost_usd")) for r in by_day]
        if any(isinstance(c, (int, float)) and c > 0 for c in costs):
            charts_out.append(("Cost per day", charts.bars("cost per day", labels, [
                charts.Series("cost", "cost", [c or 0 for c in costs])],
                label=lambda v: f"${v:,.2f}")))
    return web.render(request, "stats.html", live="stats", caller=caller, nav="stats",
                      data=data, charts=charts_out, days=days)
