"""`luzia config show`: the effective configuration (file < LUZIA_* env vars, luzia/config.py)
and where it was read from. Asks no broker.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from luzia.cli.control import dump, load_config


@click.group()
def config() -> None:
    """The effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON, with `source` and `candidates`.")
def config_show(as_json) -> None:
    """Print the effective config (file < LUZIA_* env vars) and where it was read from."""
    from luzia.config import config_candidates
    cfg = load_config()
    data = cfg.to_dict()
    data["candidates"] = [str(p) for p in config_candidates()]
    if as_json:
        dump(data)
        return
    click.echo(f"# read from: {cfg.source or '(no config file; built-in defaults)'}")
    click.echo(f"# looked for: {', '.join(data.pop('candidates'))}")
    data.pop("source", None)
    click.echo(toml(data))


def toml(data: dict[str, Any], prefix: str = "") -> str:
    """`data` as TOML text (scalars and lists as JSON values, which TOML reads the same)."""
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            tables.append((_key(key), value))
        else:
            scalars.append(f"{_key(key)} = {json.dumps(value)}")
    out = "\n".join(scalars)
    for key, value in tables:
        name = f"{prefix}{key}"
        body = toml(value, f"{name}.")
        out += f"\n\n[{name}]\n{body}" if body else f"\n\n[{name}]"
    return out.strip()


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


COMMANDS = (config,)
