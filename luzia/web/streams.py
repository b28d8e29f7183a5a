"""Server-sent event streams: the broker's events for live pages, and a job's log.

`/events` passes on every job.* and agent.* event the broker publishes (its PUB socket,
luzia/web/broker.py's Events); a page's script fetches its live part again when one
concerns it. `/jobs/ID/log` sends the job's output.log as it grows: the broker fetches it
from the job's agent (logs.read), from the last LOG_TAIL bytes on, and again whenever the
job publishes an event or a monitor interval passes; a job that ended closes the stream.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from luzia.errors import LuziaError
from luzia.states import TERMINAL_NAMES
from luzia.text import strip_terminal
from luzia.web.auth import Caller
from luzia.web.broker import CLOSED, TIMED_OUT

if TYPE_CHECKING:
    from luzia.web.site import Web

KEEPALIVE = 15.0           # seconds between comments on a quiet stream (proxies close idle ones)
LOG_TAIL = 64 * 1024       # a log stream starts this far from the end of the log
LOG_CHUNK = 64 * 1024
HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}

Stream = Callable[["Web", Request, Caller], AsyncIterator[str]]


def handler(web: Web, stream: Stream) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        caller = web.caller(request)
        return StreamingResponse(stream(web, request, caller), media_type="text/event-stream",
                                 headers=HEADERS)
    return endpoint


def sse(data: Any, event: str = "") -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def events(web: Web, request: Request, caller: Caller) -> AsyncIterator[str]:
    yield ": connected\n\n"
    with web.events.subscribe() as sub:
        while True:
            event = await sub.get(KEEPALIVE)
            if event is TIMED_OUT:
                yield ": keepalive\n\n"
            elif event is CLOSED:
                return
            else:
                yield sse({}, "reload") if event is None else sse(event)


async def job_log(web: Web, request: Request, caller: Caller) -> AsyncIterator[str]:
    """The job's output as `log` events (text to append); `tail` replaces the whole view
    (its agent is away: the lines the broker keeps); `end` when the job has ended."""
    job_id = request.path_params["job_id"]
    interval = max(0.2, web.cfg.monitor_interval)
    wake = _JobEvents(web, job_id)
    offset = -1
    last_tail = None
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode   # chunks split characters
    try:
        while True:
            try:
                read = await web.link.call("logs.read", id=job_id, offset=max(0, offset),
                                           limit=1 if offset < 0 else LOG_CHUNK)
            except LuziaError as exc:
                yield sse(str(exc), "problem")
                await wake.wait(interval * 5)
                if wake.closed:
                    return
                continue
            if read.get("source") == "broker":
                text = _text(read.get("data"))
                if text != last_tail:
                    last_tail = text
                    yield sse(text, "tail")
            elif offset < 0:           # the first read asks only for the size
                offset = max(0, int(read.get("size") or 0) - LOG_TAIL)
                continue
            else:
                data = read.get("data") or b""
                offset = int(read.get("offset") or 0) + len(data)
                if data:
                    yield sse(strip_terminal(decode(data)), "log")
                if len(data) >= LOG_CHUNK:
                    continue           # more is there now
            if read.get("state") in TERMINAL_NAMES:
                yield sse(read.get("state"), "end")
                return
            await wake.wait(interval)
            if wake.closed:
                return
    finally:
        wake.close()


def _text(data: Any) -> str:
    raw = data if isinstance(data, bytes) else str(data or "").encode()
    return strip_terminal(raw.decode(errors="replace"))


class _JobEvents:
    """Wakes a log stream early when the broker publishes an event of its job."""

    def __init__(self, web: Web, job_id: str) -> None:
        self.job_id = job_id
        self.sub = web.events.subscribe()
        self.closed = False

    async def wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while (left := until - loop.time()) > 0:
            event = await self.sub.get(left)
            if event is TIMED_OUT or event is None:
                return
            if event is CLOSED:
                self.closed = True
                return
            if str(event.get("id", "")).startswith(self.job_id):
                return

    def close(self) -> None:
        self.sub.close()
