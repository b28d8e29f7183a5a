"""The broker's side of CURVE: its key pair on its listening sockets and a ZAP handler
(pyzmq's ThreadAuthenticator) that lets in the public keys of luzia/keys.py's rule.

The ZAP handler runs in the authenticator's own thread: pyzmq's handler is a coroutine,
and a thread keeps handshakes answered while a broker turn is busy. It shares nothing
mutable with the broker's loop (it reads key files and logs), so the loop stays lock-free.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from luzia.config import Config, ensure_private_dir, is_local
from luzia.errors import ConfigError
from luzia.identity import key_user, operator
from luzia.keys import PUBLIC, SECRET, MissingKeys, Pair, host_pair, reason

if TYPE_CHECKING:
    import zmq
    from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

REFUSED_LOG_EVERY = 60.0     # seconds between two log lines about the same refused key


class Authorized:
    """The ZAP callback: a client key is let in if it is the broker's own or a `*.key` file in
    the authorized directory. Runs in the authenticator's thread and touches nothing of the
    broker's; the directory is read again when it changes, so adding a host needs no restart."""

    def __init__(self, directory: Path, own: bytes) -> None:
        self.directory = directory
        self.own = own
        self.names: dict[bytes, str] = {}
        self.stamp: tuple | None = None
        self.refused: dict[bytes, float] = {}
        self.operator = operator()
        self.reload()

    def reload(self) -> None:
        import zmq.auth
        paths = sorted(self.directory.glob("*.key"))
        stamp = tuple((p.name, *_changed(p)) for p in paths)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        names = {}
        for path in paths:
            try:
                public, _ = zmq.auth.load_certificate(str(path))
            except (OSError, ValueError) as exc:
                log.warning("CURVE: ignoring %s: %s", path, reason(exc))
                continue
            names[public] = path.stem
        self.names = names
        log.info("CURVE: %d authorized keys in %s (%s)", len(names), self.directory,
                 ", ".join(sorted(names.values())) or "none")

    def user_of(self, key: bytes) -> str:
        """The user a let-in key connects as (its connection's User-Id, the submitter of what
        it sends): the operator for the broker's own key, else its file's name (identity.py)."""
        if key == self.own:
            return self.operator
        return key_user(self.names.get(key, ""))

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: may this client key connect?"""
        if key == self.own:
            return True
        try:
            self.reload()
        except OSError as exc:     # an exception here would end the ZAP thread: every
            log.error("CURVE: cannot read %s: %s", self.directory, reason(exc))  # handshake hangs
        name = self.names.get(key)
        if name is not None:
            log.debug("CURVE: %s connected", name)
            return True
        now = time.monotonic()
        if now - self.refused.get(key, -REFUSED_LOG_EVERY) >= REFUSED_LOG_EVERY:
            if len(self.refused) > 1000:     # many strangers: forget them rather than grow
                self.refused.clear()
            self.refused[key] = now
            log.warning("CURVE: refused a client with unknown public key %s (not in %s)",
                        key.decode(errors="replace"), self.directory)
        return False


def _changed(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


@dataclass
class ServerKeys:
    """The broker's CURVE set-up: its pair for its sockets, and the running authenticator."""

    pair: Pair
    auth: ThreadAuthenticator

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.pair.secret
        sock.curve_publickey = self.pair.public
        sock.curve_server = True

    def stop(self) -> None:
        self.auth.stop()


def broker_keys(cfg: Config, ctx: zmq.Context, endpoints: dict[str, str]) -> ServerKeys | None:
    """CURVE for the broker's listeners, or None when none needs it. Refuses (one line) a
    non-local listener without keys; logs a loud warning at every start when insecure."""
    wide = [f"{ep} ({name})" for name, ep in endpoints.items() if not is_local(ep)]
    if wide and cfg.broker.insecure and not cfg.keys.curve:
        log.warning("INSECURE: listening on %s without CURVE (--insecure / broker.insecure): "
                    "anyone who can reach these ports can submit jobs, i.e. run commands on "
                    "the agents' hosts", ", ".join(wide))
        return None
    if not wide and not cfg.keys.curve:
        return None
    secret_file = Path(cfg.keys.dir) / SECRET
    where = wide[0] if wide else "its endpoints (keys.curve = true)"
    try:
        pair = host_pair(cfg, f"refusing to listen on {where}")
    except MissingKeys:
        raise ConfigError(
            f"refusing to listen on {where} without CURVE keys: run `luzia keys generate` on "
            f"this host (writes {secret_file} and {PUBLIC}), put each agent's and CLI host's "
            f"public key in {cfg.keys.authorized}/, or pass --insecure") from None
    from zmq.auth.thread import ThreadAuthenticator
    from zmq.utils import z85
    authorized = Authorized(ensure_private_dir(Path(cfg.keys.authorized)), pair.public)

    class KeyUsers(ThreadAuthenticator):
        """pyzmq's authenticator, answering the key's user as its connection's User-Id."""

        def curve_user_id(self, client_public_key: bytes) -> str:
            return authorized.user_of(z85.encode(client_public_key))

    auth = KeyUsers(ctx, log=logging.getLogger("luzia.broker.zap"))
    auth.start()
    auth.configure_curve_callback("*", credentials_provider=authorized)
    log.info("CURVE on for %s; broker public key %s", ", ".join(endpoints.values()),
             pair.public.decode())
    return ServerKeys(pair, auth)
