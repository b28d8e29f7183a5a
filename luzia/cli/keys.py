"""`luzia keys generate|show`: this host's CURVE key pair (see luzia/keys.py and
docs/DEPLOY.md for how a fleet's keys are laid out and copied)."""

from __future__ import annotations

import stat
from pathlib import Path

import click

from luzia.cli.control import load_config


@click.group()
def keys() -> None:
    """CURVE keys: who may talk to the broker over the network."""


@keys.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), metavar="DIR",
              help="Where to write host.key and host.key_secret (default: keys.dir, "
                   "$LUZIA_HOME/keys).")
@click.option("--force", is_flag=True,
              help="Replace an existing pair (the old public key stops working wherever it "
                   "was authorized).")
def generate(directory: str | None, force: bool) -> None:
    """Write this host's key pair: host.key (public: copy it) and host.key_secret (0600)."""
    from luzia.keys import generate as make
    cfg = load_config()
    public, secret = make(Path(directory or cfg.keys.dir), force=force)
    click.echo(f"public key: {public}\nsecret key: {secret} (mode 0600; never copy it)")
    click.echo(f"next: copy {public.name} into the broker host's keys/authorized/ as "
               f"{cfg.agent.name}.key; the broker host's own {public.name} goes to every host "
               f"as {cfg.keys.broker} (docs/DEPLOY.md)")


@keys.command()
def show() -> None:
    """Where this host's keys are, and which are there."""
    from luzia.keys import PUBLIC, SECRET, public_key
    cfg = load_config()
    directory = Path(cfg.keys.dir)
    for label, path in (("public key", directory / PUBLIC), ("broker's key", Path(cfg.keys.broker))):
        click.echo(f"{label:13} {path}  {public_key(path) or 'missing'}")
    secret = directory / SECRET
    try:
        mode = f"present, mode {stat.S_IMODE(secret.stat().st_mode):04o}"
    except OSError:
        mode = "missing"
    click.echo(f"{'secret key':13} {secret}  {mode}")
    authorized = Path(cfg.keys.authorized)
    names = sorted(p.stem for p in authorized.glob("*.key")) if authorized.is_dir() else []
    click.echo(f"{'authorized':13} {authorized}  {', '.join(names) or '(none)'}")


COMMANDS = (keys,)
