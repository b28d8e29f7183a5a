"""The dashboard as a Starlette application: routes, templates, errors, security headers.

`create_app(cfg)` is what luzia-web serves (luzia/web/__main__.py) and what tests drive.
The pages (luzia/web/pages.py) are rendered on the server; a page's live part is the
template's `live` block, which the page's script fetches again (header X-Luzia-Fragment)
when the broker publishes an event, so a page updates without reloading.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luzia.config import Config
from luzia.errors import BrokerUnreachable, LuziaError, NotFound, UsageError
from luzia.web import pages, streams
from luzia.web.auth import Refused
from luzia.web.site import FRAGMENT, HERE, Web

log = logging.getLogger(__name__)

# inline style attributes draw the bars; scripts and everything else come from this site only
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]


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
