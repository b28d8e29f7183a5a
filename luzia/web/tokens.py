"""The dashboard's tokens: one per user, in `$LUZIA_HOME/web-tokens.json` (mode 0600).

A token says who a browser is: the user it belongs to may act on their own jobs, an admin
(`web.admins`, and always the operator who runs luzia-web) on every job. The operator's
token is made on first use; `luzia web token show|rotate --user NAME` makes or replaces
another user's. luzia-web reads the file again when it changes, so a rotated token stops
working at once, without a restart.

Standard library only: the supervisor (its banner prints the dashboard's URL) and the CLI
import this without the web server's packages.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from pathlib import Path

from luzia import layout
from luzia.config import Config, _login_name, ensure_private_dir, is_local
from luzia.errors import ConfigError, StateDirError, UsageError

USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
TOKEN_BYTES = 24          # 32 characters of URL-safe base64


def operator() -> str:
    """The user who runs luzia-web (and the fleet): an admin of the dashboard."""
    return _login_name()


def admins(cfg: Config) -> frozenset[str]:
    return frozenset(cfg.web.admins) | frozenset(cfg.admins) | {operator()}   # one admins list


def check_user(user: str) -> str:
    if not USER_RE.fullmatch(user or ""):
        raise UsageError(f"{user!r} is not a user name (letters, digits, _ . @ -; at most 64)")
    return user


class Tokens:
    """The token file: {"users": {user: token}}, written whole and atomically."""

    def __init__(self, cfg: Config) -> None:
        self.path = Path(cfg.home) / layout.WEB_TOKENS
        self._seen: tuple[int, int, int] | None = None
        self._by_user: dict[str, str] = {}

    def users(self) -> dict[str, str]:
        """{user: token}, read again only when the file changed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._by_user = None, {}
            return {}
        except OSError as exc:
            raise StateDirError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        mark = (st.st_ino, st.st_mtime_ns, st.st_size)
        if mark != self._seen:
            self._by_user = self._read()
            self._seen = mark
        return dict(self._by_user)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except OSError as exc:
            raise StateDirError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        except ValueError:
            raise ConfigError(f"{self.path} is not a token file; move it away and run "
                              "`luzia web token rotate` to make a new one") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise ConfigError(f"{self.path} has no \"users\" table")
        return {str(u): t for u, t in users.items() if isinstance(t, str) and t}

    def user_of(self, token: str) -> str | None:
        """The user whose token this is (compared in constant time), or None."""
        if not token:
            return None
        found = None
        for user, known in self.users().items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found

    def ensure(self, user: str) -> str:
        """The user's token, made now if they have none."""
        token = self.users().get(check_user(user))
        return token or self.rotate(user)

    def rotate(self, user: str) -> str:
        """A new token for `user`; the old one stops working."""
        users = self.users()
        users[check_user(user)] = secrets.token_urlsafe(TOKEN_BYTES)
        self._write(users)
        return users[user]

    def revoke(self, user: str) -> bool:
        users = self.users()
        if users.pop(user, None) is None:
            return False
        self._write(users)
        return True

    def _write(self, users: dict[str, str]) -> None:
        ensure_private_dir(self.path.parent)
        tmp = self.path.with_name(layout.atomic_tmp_name(self.path.name))
        data = json.dumps({"users": dict(sorted(users.items()))}, indent=1).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)       # a leftover tmp file may have had another mode
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateDirError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._seen = None


def base_url(cfg: Config) -> str:
    """Where the dashboard is: web.url, else the configured host and port, else (port 0)
    the address luzia-web wrote when it started listening."""
    if cfg.web.url:
        return cfg.web.url.rstrip("/")
    if cfg.web.port == 0:
        try:
            written = (cfg.run_dir / layout.WEB_URL).read_text().strip()
        except OSError:
            written = ""
        if written:
            return written
    scheme = "https" if cfg.web.tls_cert and cfg.web.tls_key else "http"
    return f"{scheme}://{host_in_url(cfg.web.host)}:{cfg.web.port}"


def host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def login_url(cfg: Config, token: str) -> str:
    """The URL that signs a browser in: the token once in the query, then a cookie."""
    return f"{base_url(cfg)}/?token={token}"


def loopback(host: str) -> bool:
    """Is `host` an address only this machine reaches?"""
    return is_local(f"tcp://{host_in_url(host)}:0")
