"""The config file's TOML, parsed once per change of its text (issue 15).

tomllib's import and parse cost ~2 ms of CPU of every `luzia PROJECT TASK`, a twentieth of
the process; json is loaded anyway (zmq imports it). So the last text parsed and its table
are kept as JSON in this user's cache directory (`$XDG_CACHE_HOME/luzia/config.json`, as
platformdirs.user_cache_dir names it; one entry), and a config file whose text is that text
is not parsed again. The text itself is the key (not the file's times, which a second write
within the same clock tick would not change). A table that JSON cannot hold as it is (a
TOML date) is never kept. The copy is this user's alone (0600 file); a cache that cannot be
read or written is no error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STORE = "config.json"


def read_toml(path: Path) -> dict[str, Any]:
    """`tomllib.loads(path.read_text())`, from the cache while the text is the one kept.
    Raises what those raise: OSError, ValueError (tomllib's TOMLDecodeError, bad UTF-8)."""
    text = path.read_text()
    store = _store()
    if store is not None:
        try:
            kept = json.loads(store.read_bytes())
            if isinstance(kept, dict) and kept.get("text") == text and isinstance(kept.get("toml"), dict):
                return kept["toml"]
        except (OSError, ValueError):
            pass
    import tomllib
    table = tomllib.loads(text)
    if store is not None:
        _keep(store, text, table)
    return table


def _store() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "luzia", STORE) if os.path.isabs(base) else None


def _keep(store: Path, text: str, table: dict[str, Any]) -> None:
    """Write the entry beside, then rename over: a reader sees the old or the new, whole."""
    entry = {"text": text, "toml": table}
    try:
        data = json.dumps(entry).encode()
        if json.loads(data) != entry:
            return             # e.g. a NaN (never equal to itself): parse such a file each time
    except (TypeError, ValueError):
        return                 # a TOML date or time: JSON has none
    tmp = store.with_name(f".{STORE}.{os.getpid()}.tmp")
    try:
        store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, store)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
