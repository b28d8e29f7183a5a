"""LUZIA_CACHE_TTL (`cache_ttl`, 1 s): the CLI's views answered from the last answer.

The older dispatcher kept job status in a 1-second cache (seed 001, docs/GLOSSARY.md). Here
the broker holds the state, and what costs is asking it: so the last answer to each
read-only query a view makes — `jobs.list`, `jobs.get`, `queue.status`, `agents.status`,
`status` — is kept in `$LUZIA_HOME/cache/` for `cache_ttl` seconds, and every `luzia`
process of this user on this host answers the same query from it meanwhile. Many shells
polling `luzia jobs` or running `luzia top` against a remote broker cost it one query per
TTL between them: the first to find the entry old asks, under a lock, and the others wait
for its answer instead of asking too.

A command of this host that changes something (submit, cancel, retry, drain, flush, …)
touches `cache/changed`; an entry from before that is not used, so `luzia cancel X` then
`luzia jobs X` shows the cancel. A change made elsewhere (a job ending, another host's
command) shows within the TTL. `cache_ttl = 0` turns the cache off.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from luzia import layout

if TYPE_CHECKING:
    from luzia.config import Config


class Control(Protocol):
    """What the cache needs of a control connection (luzia.client.Control is one)."""

    cfg: Config
    what: str
    endpoint: str

    def call(self, op: str, **args: Any) -> Any: ...

CACHED_OPS = frozenset({"jobs.list", "jobs.get", "queue.status", "agents.status", "status"})
CHANGING_OPS = frozenset({"jobs.cancel", "jobs.retry", "queue.flush", "agents.drain",
                          "agents.undrain", "agents.forget"})


def cache_dir(cfg: Config) -> Path:
    return Path(cfg.home) / layout.CACHE_DIR


def changed(cfg: Config) -> None:
    """This host changed something: the answers cached so far are not used again. Cheap
    enough for the submit fast path (one utime, nothing when no cache exists)."""
    try:
        os.utime(cache_dir(cfg) / layout.CACHE_CHANGED)
    except OSError:
        pass


def call(ctl: Control, op: str, **args: Any) -> Any:
    """`ctl.call(op, **args)`, answered from the cache when the op is a cached one and its
    entry is younger than the TTL and than the last local change."""
    ttl = ctl.cfg.cache_ttl
    if op in CHANGING_OPS and not args.get("dry_run"):
        try:
            return ctl.call(op, **args)
        finally:                     # even an answer lost to a timeout may have changed it
            changed(ctl.cfg)
    if ttl <= 0 or op not in CACHED_OPS or ctl.what != "broker":
        return ctl.call(op, **args)
    import hashlib  # here, not at the top: the submit fast path imports `changed` only
    import json
    folder = _ready(cache_dir(ctl.cfg))
    if folder is None:
        return ctl.call(op, **args)
    key = json.dumps([ctl.endpoint, op, args], sort_keys=True, default=str)
    entry = folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
    hit = _fresh(entry, folder, ttl)
    if hit is not None:
        return hit[0]
    with _locked(entry.with_suffix(".lock")):      # one asks, the others wait for its answer
        hit = _fresh(entry, folder, ttl)
        if hit is not None:
            return hit[0]
        asked = time.time()         # a change made while the query runs makes it stale
        result = ctl.call(op, **args)
        _store(entry, asked, result)
    return result


def _ready(folder: Path) -> Path | None:
    """The cache directory (0700) with its change stamp; None when it cannot be made."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = folder / layout.CACHE_CHANGED
        if not stamp.exists():
            stamp.touch(mode=0o600)
    except OSError:
        return None
    return folder


def _fresh(entry: Path, folder: Path, ttl: float) -> tuple[Any] | None:
    """(the cached answer,) if it is younger than `ttl` and than the last change."""
    import json
    try:
        changed_at = (folder / layout.CACHE_CHANGED).stat().st_mtime
        data = json.loads(entry.read_text())
    except (OSError, ValueError):
        return None
    asked = data.get("asked") if isinstance(data, dict) else None
    if not isinstance(asked, (int, float)) or asked < changed_at or time.time() - asked >= ttl:
        return None
    return (data.get("result"),)


def _store(entry: Path, asked: float, result: Any) -> None:
    import json
    try:
        text = json.dumps({"asked": asked, "result": result})
    except (TypeError, ValueError):
        return            # not JSON (bytes): not cached
    tmp = entry.with_name(layout.atomic_tmp_name(entry.name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, entry)
    except OSError:
        pass


class _locked:
    """An exclusive flock on `path` while the block runs (no lock when it cannot be had)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        import fcntl
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = -1

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)      # closing releases the lock
