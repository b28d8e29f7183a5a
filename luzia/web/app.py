"""The dashboard as a Starlette application: routes, templates, errors, security headers.

`create_app(cfg)` is what luzia-web serves (luzia/web/__main__.py) and what tests drive.
The pages (luzia/web/pages.py) are rendered on the server; a page's live part is the
template's `live` block, which the page's script fetches again (header X-Luzia-Fragment)
when the broker publishes an event, so a page updates without reloading.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import zmq.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luzia import __version__, layout
from luzia.config import Config
from luzia.errors import BrokerUnreachable, LuziaError, NotFound, UsageError
from luzia.web import fmt, pages, streams
from luzia.web.auth import Auth, Caller, Refused
from luzia.web.broker import BrokerLink, Events, Health
from luzia.web.tokens import Tokens

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
FRAGMENT = "x-luzia-fragment"
# inline style attributes draw the bars; scripts and everything else come from this site only
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]


class Web:
    """What every request handler shares: the broker link, the events, auth, templates."""

    def __init__(self, cfg: Config, health: bool = True) -> None:
        self.cfg = cfg
        self.ctx = zmq.asyncio.Context()
        self.link = BrokerLink(cfg, self.ctx)
        self.events = Events(cfg, self.ctx)
        self.health = Health(f"ipc://{cfg.run_dir}/{layout.WEB_HEALTH}", self.ctx) if health else None
        self.auth = Auth(cfg, Tokens(cfg))
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(fmt.FILTERS)
        self.env.globals.update(version=__version__)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.events.start()
        if self.health is not None:
            self.health.start()
        try:
            yield
        finally:
            self.events.stop()
            if self.health is not None:
                self.health.stop()
            self.link.reset()

    def caller(self, request: Request) -> Caller:
        return self.auth.caller(request)

    def render(self, request: Request, name: str, http_status: int = 200, **context: Any) -> Response:
        """A page, or only its live block when the page's script asks for a fragment."""
        template = self.env.get_template(name)
        context.setdefault("request", request)
        if request.headers.get(FRAGMENT) and "live" in template.blocks:
            body = "".join(template.blocks["live"](template.new_context(context)))
        else:
            body = template.render(context)
        return HTMLResponse(body, status_code=http_status, headers={"cache-control": "no-store"})


def create_app(cfg: Config, health: bool = True) -> Starlette:
    web = Web(cfg, health)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return _error(web, request, exc.status, exc.why)

    async def luzia_error(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, UsageError) \
            else 503 if isinstance(exc, BrokerUnreachable) else 502
        return _error(web, request, status, str(exc))

    routes = [
        Route("/", pages.handler(web, pages.fleet)),
        Route("/jobs", pages.handler(web, pages.jobs)),
        Route("/jobs/{job_id}", pages.handler(web, pages.job)),
        Route("/jobs/{job_id}/{action:str}", pages.handler(web, pages.act), methods=["POST"]),
        Route("/history", pages.handler(web, pages.history)),
        Route("/stats", pages.handler(web, pages.stats)),
        Route("/events", streams.handler(web, streams.events)),
        Route("/jobs/{job_id}/log", streams.handler(web, streams.job_log)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=web.lifespan,
                    exception_handlers={Refused: refused, LuziaError: luzia_error})
    app.state.web = web
    return app   # wrapped by SecurityHeaders in __main__ and the tests alike


def _error(web: Web, request: Request, status: int, why: str) -> Response:
    if "text/html" not in request.headers.get("accept", "") or request.headers.get(FRAGMENT):
        return JSONResponse({"error": why}, status_code=status)
    return web.render(request, "error.html", http_status=status, status_code=status, why=why,
                      signed_in=status != 401)


class SecurityHeaders:
    """Adds CSP and friends to every response (a pure ASGI wrapper: streams stay streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)
        await self.app(scope, receive, with_headers)


def asgi(cfg: Config, health: bool = True) -> ASGIApp:
    """The whole application as served."""
    return SecurityHeaders(create_app(cfg, health))
