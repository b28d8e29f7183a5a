"""Reading the config: where the file is, and its TOML tables and the LUZIA_* variables
made into typed dataclasses (luzia/config.py's sections), each value checked against its
field's type with its dotted name in the error (`agent.slots: expected a number`).

A value from the environment is a string parsed to the field's type (`LUZIA_AGENT_SLOTS=4`,
a list as commas); one from the file must have the type already. A section whose class has
`PLAIN_LIST = "field"` may be written as a plain list, which is that field.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from luzia.errors import ConfigError

ENV_ALIASES = {  # short names: LUZIA_HOME, seed 001's variables, LUZIA_MAX_PENDING
    "LUZIA_HOME": ("home",),
    "LUZIA_JOBS_DIR": ("jobs_dir",),
    "LUZIA_MAX_JOBS": ("max_jobs",),
    "LUZIA_CACHE_TTL": ("cache_ttl",),
    "LUZIA_MONITOR_INTERVAL": ("monitor_interval",),
    "LUZIA_MAX_PENDING": ("broker", "max_pending"),
}


def default_home() -> str:
    if os.geteuid() == 0:
        return "/var/lib/luzia"
    import platformdirs
    return platformdirs.user_state_dir("luzia")


def config_candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where the config file is looked for, first match wins."""
    env = os.environ if env is None else env
    if env.get("LUZIA_CONFIG"):
        return [Path(env["LUZIA_CONFIG"])]
    xdg = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(xdg) / "luzia" / "luzia.toml", Path("/etc/luzia/luzia.toml")]


def read(root: type, overrides: dict[str, Any] | None = None,
         env: Mapping[str, str] | None = None) -> Any:
    """The first config file there is, then the LUZIA_* variables, then `overrides` (a
    nested dict: flags), as an instance of the dataclass `root` (each table its section's
    dataclass, each value checked against its field's type); `source` is the file's path."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = ""
    for path in config_candidates(env):
        if path.is_file():
            try:
                raw = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read config {path}: {exc}") from None
            source = str(path)
            break
        if env.get("LUZIA_CONFIG"):
            raise ConfigError(f"LUZIA_CONFIG names {path}, which does not exist")
    _merge(raw, _from_env(root, env))
    if overrides:
        _merge(raw, overrides)
    raw["source"] = source
    return _build(root, raw, "")


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _from_env(root: type, env: Mapping[str, str]) -> dict[str, Any]:
    """LUZIA_<SECTION>_<KEY> and ENV_ALIASES as a nested dict of _EnvString values."""
    out: dict[str, Any] = {}
    sections = {f.name for f in dataclasses.fields(root)
                if dataclasses.is_dataclass(_hint(root, f.name))}
    for name, value in env.items():
        if not name.startswith("LUZIA_") or name == "LUZIA_CONFIG":
            continue
        if name in ENV_ALIASES:
            path = ENV_ALIASES[name]
        else:
            rest = name[len("LUZIA_"):].lower()
            section, _, key = rest.partition("_")
            if section in sections and key:
                path = (section, key)
            elif rest in {f.name for f in dataclasses.fields(root)}:
                path = (rest,)
            else:
                continue  # other LUZIA_* variables (job environment) are not config
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _EnvString(value)
    return out


class _EnvString(str):
    """A value from the environment: parsed to the field's type instead of type-checked."""


_HINTS: dict[type, dict[str, Any]] = {}


def _hint(cls: type, name: str) -> Any:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls][name]


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown config key {_join(where, unknown[0])!r}; "
                          f"known keys here: {', '.join(sorted(n for n in names if n != 'source'))}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(_hint(cls, name), value, _join(where, name))
    return cls(**kwargs)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        plain = getattr(hint, "PLAIN_LIST", "")   # a section a plain list may stand for
        if plain and isinstance(value, list):
            value = {plain: value}
        return _build(hint, value, where)
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return {str(k): _coerce(val_t, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (item_t,) = typing.get_args(hint)
        if isinstance(value, _EnvString):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [_coerce(item_t, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if isinstance(value, _EnvString):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, _EnvString):
            try:
                value = hint(value.strip())
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: must not be negative, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported config type {hint!r}")  # pragma: no cover
