"""What every request handler of the dashboard shares (`Web`): the broker link, the live
events, auth, and the templates with their fragment rendering. The routes are app.py's; the
handlers (pages.py, streams.py) take a `Web`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import zmq.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from luzia import __version__, layout
from luzia.config import Config
from luzia.web import fmt
from luzia.web.auth import Auth, Caller
from luzia.web.broker import BrokerLink, Events, Health
from luzia.web.tokens import Tokens

HERE = Path(__file__).parent
FRAGMENT = "x-luzia-fragment"


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
