"""CURVE keys (pyzmq's zmq.auth): who may talk to the broker over a network.

Each host has one key pair in `keys.dir` (default `$LUZIA_HOME/keys/`): `host.key` (public,
safe to copy) and `host.key_secret` (mode 0600, never leaves the host). The broker accepts
the public keys in `keys.authorized` (default `keys/authorized/*.key`, one file per host,
named after it) plus its own; agents, CLIs and the supervisor connect with their host's pair
and the broker's public key, `keys.broker` (default `keys/broker.key`; on the broker's own
host, its `host.key`).

CURVE is on for an endpoint that is not local (tcp on another interface than loopback)
unless `broker.insecure`, and everywhere when `keys.curve = true`. Both ends read the same
rule from their own config, so a fleet agrees as long as its configs do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from luzia.config import Config, ensure_private_dir, is_local
from luzia.errors import BrokerUnreachable, ConfigError
from luzia.frozen import Frozen, frozen

if TYPE_CHECKING:
    import zmq

# No logger here: the submit fast path imports this module (see luzia/client.py).

PUBLIC = "host.key"
SECRET = "host.key_secret"


class MissingKeys(BrokerUnreachable):
    """CURVE is on for an endpoint and this host lacks a key it needs (exit 3, like any
    broker that cannot be reached: the message says which file and how to make it)."""


@frozen
class Pair(Frozen):
    """A host's key pair, Z85-encoded as zmq wants them."""

    public: bytes
    secret: bytes


def curve_on(cfg: Config, endpoint: str) -> bool:
    """Does talking to the broker on `endpoint` use CURVE? (The same rule on both ends; the
    supervisor's and agents' own sockets are local and never do.)"""
    ep = cfg.endpoints
    if endpoint not in (ep.submit, ep.agents, ep.control, ep.events):
        return False
    return cfg.keys.curve or (not is_local(endpoint) and not cfg.broker.insecure)


def generate(directory: Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new key pair into `directory` (made 0700); the secret file is 0600.
    Refuses to overwrite an existing pair unless `force` (its public key is authorized
    elsewhere, so replacing it locks this host out until the new one is copied)."""
    import zmq.auth
    ensure_private_dir(directory)
    public, secret = directory / PUBLIC, directory / SECRET
    if not force and (public.exists() or secret.exists()):
        raise ConfigError(f"{public} already exists; keep it (its public key may be authorized "
                          "on the broker) or pass --force to replace it")
    old = os.umask(0o077)     # the secret file is private from its first byte
    try:
        made_public, made_secret = zmq.auth.create_certificates(str(directory), "host")
    finally:
        os.umask(old)
    os.chmod(made_secret, 0o600)
    os.chmod(made_public, 0o644)
    return Path(made_public), Path(made_secret)


def host_pair(cfg: Config, why: str) -> Pair:
    """This host's key pair; MissingKeys (saying how to make it) if it is not there."""
    secret_file = Path(cfg.keys.dir) / SECRET
    public, secret = _read(secret_file, lambda problem: (
        f"{why}: CURVE is on and this host has no key pair ({problem}); run `luzia keys "
        f"generate`, then copy {Path(cfg.keys.dir) / PUBLIC} into the broker host's "
        "keys/authorized/ directory"))
    if not secret:
        raise MissingKeys(f"{why}: {secret_file} holds no secret key; run `luzia keys generate --force`")
    return Pair(public, secret)


def broker_public(cfg: Config, why: str) -> bytes:
    """The broker's public key: `keys.broker`, or this host's own when it runs the broker."""
    path = Path(cfg.keys.broker)
    if not path.exists() and cfg.supervisor.broker:
        path = Path(cfg.keys.dir) / PUBLIC
    public, _ = _read(path, lambda problem: (
        f"{why}: CURVE is on and the broker's public key is missing ({problem}); copy the "
        f"broker host's keys/host.key to {cfg.keys.broker}"))
    return public


def public_key(path: Path) -> str:
    """The public key in a key file, "" if it has none or cannot be read."""
    try:
        public, _ = _read(path, str)
    except MissingKeys:
        return ""
    return public.decode(errors="replace") if public else ""


def _read(path: Path, complaint: Callable[[str], str]) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a key file; MissingKeys(complaint(problem)) if unreadable."""
    import zmq.auth
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise MissingKeys(complaint(f"{path}: {reason(exc)}")) from None


def reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@frozen
class ClientKeys(Frozen):
    """What a connecting socket needs: our pair and the server's public key."""

    pair: Pair
    server: bytes

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.pair.secret
        sock.curve_publickey = self.pair.public
        sock.curve_serverkey = self.server


def client_keys(cfg: Config, endpoint: str) -> ClientKeys | None:
    """The keys for connecting to the broker at `endpoint`; None when CURVE is off there."""
    if not curve_on(cfg, endpoint):
        return None
    why = f"cannot connect to {endpoint}"
    return ClientKeys(host_pair(cfg, why), broker_public(cfg, why))


def secure_client(sock: zmq.Socket, cfg: Config, endpoint: str) -> None:
    """Set CURVE client keys on `sock` (before its connect) when `endpoint` needs them."""
    keys = client_keys(cfg, endpoint)
    if keys is not None:
        keys.apply(sock)


def silence_hint(cfg: Config, endpoint: str) -> str:
    """What to check when a CURVE server does not answer: a refused key looks like silence."""
    if not curve_on(cfg, endpoint):
        return ""
    return (f" (CURVE is on: if the broker is up, its keys/authorized/ may lack this host's "
            f"{Path(cfg.keys.dir) / PUBLIC}, or {cfg.keys.broker} is not the broker's public key)")


def watch_handshake(sock: zmq.Socket) -> zmq.Socket:
    """A monitor of `sock`'s failed CURVE handshakes (call before connect): a refused key is
    silence on the socket itself, but the monitor hears it at once."""
    import zmq
    return sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                   | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


def handshake_failure(monitor: zmq.Socket, cfg: Config, endpoint: str) -> str:
    """One line on why the handshake the monitor saw failed; "" if it saw none."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message
    try:
        event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
    except zmq.Again:
        return ""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"the broker at {endpoint} refused this host's key "
                f"{Path(cfg.keys.dir) / PUBLIC}: its operator must add it to the broker's "
                "keys/authorized/ (docs/DEPLOY.md)")
    return (f"the CURVE handshake with {endpoint} failed: {cfg.keys.broker} is probably not "
            "the broker's public key (copy the broker host's keys/host.key there), or the "
            "broker does not use CURVE")
