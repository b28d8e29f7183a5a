"""Building the typed config from its layers (config.py): TOML tables and LUZIA_* strings,
merged, then checked and coerced into the frozen dataclasses, field by field, with the
key's dotted path in every error. Knows nothing of Luzia's own sections; a section whose
class has `PLAIN_LIST = "field"` may be written as a plain list, which is that field.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

from luzia.errors import ConfigError


def merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def from_env(env: Mapping[str, str], root: type,
             aliases: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """The LUZIA_* variables as a nested table of `root`'s keys: LUZIA_<SECTION>_<KEY>, a
    top-level LUZIA_<KEY>, or a name in `aliases`; other LUZIA_* variables are not config."""
    out: dict[str, Any] = {}
    sections: set[str] | None = None   # read at the first variable that needs them
    for name, value in env.items():
        if not name.startswith("LUZIA_") or name == "LUZIA_CONFIG":
            continue
        if name in aliases:
            path = aliases[name]
        else:
            rest = name[len("LUZIA_"):].lower()
            section, _, key = rest.partition("_")
            if sections is None:
                sections = {f.name for f in dataclasses.fields(root)
                            if dataclasses.is_dataclass(_hint(root, f.name))}
            if section in sections and key:
                path = (section, key)
            elif rest in {f.name for f in dataclasses.fields(root)}:
                path = (rest,)
            else:
                continue  # other LUZIA_* variables (job environment) are not config
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = EnvString(value)
    return out


class EnvString(str):
    """A value from the environment: parsed to the field's type instead of type-checked."""


_TYPES: dict[tuple[str, str], Any] = {}   # (module, annotation's text) -> the type it names


def _hint(cls: type, name: str) -> Any:
    """The type of `cls`'s field `name`. Its annotation is text (`from __future__ import
    annotations`), evaluated in its class's module as typing.get_type_hints would, but only
    this one and each distinct text once: get_type_hints evaluates every annotation of the
    class and its bases (an eval each), and a submit builds its config on every run."""
    owner = next(k for k in cls.__mro__ if name in vars(k).get("__annotations__", {}))
    text = vars(owner)["__annotations__"][name]
    if not isinstance(text, str):
        return text
    key = (owner.__module__, text)
    if key not in _TYPES:
        _TYPES[key] = eval(text, vars(sys.modules[owner.__module__]))  # noqa: S307 (our source)
    return _TYPES[key]


def build(cls: type, raw: Any, where: str) -> Any:
    """`cls` (a frozen dataclass) from the table `raw`; `where` names it in errors."""
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
        return build(hint, value, where)
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return {str(k): _coerce(val_t, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (item_t,) = typing.get_args(hint)
        if isinstance(value, EnvString):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [_coerce(item_t, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if isinstance(value, EnvString):
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
        if isinstance(value, EnvString):
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
