"""luzia-web: the dashboard (docs/WEB.md). A Starlette app served by uvicorn, talking to the
broker like any client; the supervisor runs it next to the broker when `[web] enabled`."""
