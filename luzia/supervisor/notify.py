"""systemd's notify protocol (sd_notify), written directly: one datagram of KEY=VALUE lines
to $NOTIFY_SOCKET (a path, or an abstract socket name starting with '@'). No systemd
library; without $NOTIFY_SOCKET every call is a no-op."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Tells systemd: READY=1, WATCHDOG=1, STATUS=<one line>, STOPPING=1."""

    def __init__(self, path: str | None = None, watchdog_usec: str | None = None) -> None:
        path = os.environ.get("NOTIFY_SOCKET", "") if path is None else path
        # '@name' is an abstract socket: a NUL byte in front, nothing on the file system
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = os.environ.get("WATCHDOG_USEC", "") if watchdog_usec is None else watchdog_usec
        # systemd sets WATCHDOG_PID too; if it names another process the watchdog is not ours
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and mine else 0.0
        self.sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float:
        """How often to send WATCHDOG=1: half of systemd's timeout (as sd_watchdog_enabled
        recommends); every 5 s when no timeout is set."""
        return self.watchdog / 2 if self.watchdog else 5.0

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def watchdog_ping(self, status: str) -> None:
        self.send(WATCHDOG="1", STATUS=status)

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def stopping(self, status: str = "stopping") -> None:
        self.send(STOPPING="1", STATUS=status)

    def send(self, **fields: str) -> None:
        if not self.address:
            return
        data = "\n".join(f"{k}={v.replace(chr(10), ' ')}" for k, v in fields.items()).encode()
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.sendto(data, self.address)
        except OSError as exc:  # systemd gone or not listening: nothing to tell
            log.debug("notify %s failed: %s", self.address.replace("\0", "@"), exc)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
