"""`luzia-web`: the dashboard (docs/WEB.md), a Starlette app served by uvicorn.

Run by the supervisor when `[web] enabled = true` (or `luzia-supervisor --web`, as
`make run` does); it talks to the broker like any client, through the control socket and
the PUB events. It listens on 127.0.0.1:8470 by default; any address but loopback needs
`web.tls_cert` and `web.tls_key`, or it refuses to start and says so. Once it listens it
writes its URL to `<run dir>/web.url`; `luzia web url` prints it with your token.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from luzia import config, layout
from luzia.errors import ConfigError, LuziaError
from luzia.web.tokens import Tokens, host_in_url, loopback, operator

log = logging.getLogger("luzia.web")

GRACE = 2                  # seconds open streams get at shutdown before they are cut


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="luzia-web", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", help="address to listen on (web.host)")
    p.add_argument("--port", type=int, help="port to listen on, 0 for any free one (web.port)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def check_bind(cfg: config.Config) -> None:
    """Loopback, or TLS: a token sent in clear text over a network is a token given away."""
    web = cfg.web
    if not 0 <= web.port <= 65535:
        raise ConfigError(f"web.port must be between 0 and 65535, not {web.port}")
    if bool(web.tls_cert) != bool(web.tls_key):
        raise ConfigError("web.tls_cert and web.tls_key go together: set both or neither")
    for name in ("tls_cert", "tls_key"):
        path = getattr(web, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"web.{name}: no file at {path}")
    if not loopback(web.host) and not web.tls_cert:
        raise ConfigError(
            f"web.host {web.host} is not a loopback address: the dashboard would send its "
            "token in clear text over the network. Set web.tls_cert and web.tls_key (PEM "
            "files), or keep web.host = \"127.0.0.1\" and reach it through an SSH tunnel "
            "(ssh -L 8470:127.0.0.1:8470 HOST) or a TLS reverse proxy (docs/WEB.md)")


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, and without
    # it each keep-alive response waited ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise LuziaError(f"cannot listen on {host_in_url(host)}:{port}: {exc.strerror or exc} "
                         "(set web.port to another port, or 0 for any free one)") from None
    sock.set_inheritable(True)
    return sock


def write_url(cfg: config.Config, url: str) -> None:
    config.ensure_private_dir(cfg.run_dir)
    path = cfg.run_dir / layout.WEB_URL
    tmp = path.with_name(layout.atomic_tmp_name(path.name))
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s web %(levelname)s %(message)s", stream=sys.stderr)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        cfg = config.load({"web": overrides} if overrides else None)
        check_bind(cfg)
        Tokens(cfg).ensure(operator())
        sock = listen(cfg.web.host, cfg.web.port)
    except LuziaError as exc:
        print(f"luzia-web: {exc}", file=sys.stderr)
        return exc.exit_code
    import uvicorn

    from luzia.web.app import asgi
    tls = bool(cfg.web.tls_cert)
    port = sock.getsockname()[1]
    url = f"{'https' if tls else 'http'}://{host_in_url(cfg.web.host)}:{port}"
    write_url(cfg, url)
    log.info("listening on %s (sign in with the URL `luzia web url` prints)", url)
    server = uvicorn.Server(uvicorn.Config(
        asgi(cfg), log_level="debug" if args.verbose else "warning", access_log=False,
        ssl_certfile=cfg.web.tls_cert or None, ssl_keyfile=cfg.web.tls_key or None,
        timeout_graceful_shutdown=GRACE, lifespan="on", proxy_headers=False))
    try:
        server.run(sockets=[sock])
    finally:
        try:
            (cfg.run_dir / layout.WEB_URL).unlink()
        except OSError:
            pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
