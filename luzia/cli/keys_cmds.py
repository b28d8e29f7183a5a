"""`luzia keys generate|show`: this host's CURVE key pair (see luzia/keys.py and
docs/DEPLOY.md for how a fleet's keys are laid out and copied)."""

from __future__ import annotations

from pathlib import Path

import click


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
    from luzia.config import load
    from luzia.keys import generate as make
    cfg = load()
    public, secret = make(Path(directory or cfg.keys.dir), force=force)
    click.echo(f"public key: {public}\nsecret key: {secret} (mode 0600; never copy it)")
    click.echo(f"next: copy {public.name} to the broker host as keys/authorized/"
               f"{cfg.agent.name}.key; on the broker host itself, give its {public.name} to "
               "every other host as keys/broker.key (docs/DEPLOY.md)")


@keys.command()
def show() -> None:
    """Where this host's keys are, and which are there."""
    from luzia.config import load
    from luzia.keys import PUBLIC, SECRET, public_key
    cfg = load()
    directory = Path(cfg.keys.dir)
    rows = [("public key", directory / PUBLIC), ("secret key", directory / SECRET),
            ("broker's key", Path(cfg.keys.broker))]
    for label, path in rows:
        key = public_key(path)
        shown = key or ("present" if path.exists() else "missing")
        click.echo(f"{label:13} {path}  {shown}")
    authorized = Path(cfg.keys.authorized)
    names = sorted(p.stem for p in authorized.glob("*.key")) if authorized.is_dir() else []
    click.echo(f"{'authorized':13} {authorized}  {', '.join(names) or '(none)'}")
