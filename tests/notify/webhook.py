"""A real HTTP server on 127.0.0.1 that takes the JSON Apprise's json:// sends, for the
notification tests: every POST is kept (path and decoded body); it answers 200, or the
status a test sets."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook:
    def __init__(self, port: int = 0) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.status = 200
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:     # noqa: N802 - http.server's name
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size)
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {"raw": body.decode(errors="replace")}
                with hook.lock:
                    status = hook.status
                    if status == 200:
                        hook.received.append((self.path, data))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass        # quiet: the test reads `received`

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def messages(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [d for p, d in self.received if path is None or p == f"/{path}"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
