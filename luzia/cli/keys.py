"""`luzia keys generate|show`: this host's CURVE key pair (see luzia/keys.py and
docs/DEPLOY.md for how a fleet's keys are laid out and copied)."""

from __future__ import annotations

import stat
from pathlib import Path

import click

from luzia.cli.control import dump, load_config


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
@click.option("--dry-run", "-n", is_flag=True, help="Only say what would be written.")
def generate(directory: str | None, force: bool, dry_run: bool) -> None:
    """Write this host's key pair: host.key (public: copy it) and host.key_secret (0600)."""
    from luzia.keys import PUBLIC, SECRET, generate as make
    cfg = load_config()
    folder = Path(directory or cfg.keys.dir)
    if dry_run:
        there = [p for p in (folder / PUBLIC, folder / SECRET) if p.exists()]
        verb = ("would refuse: " + ", ".join(map(str, there)) + " exists (--force replaces it)"
                if there and not force else
                f"would {'replace' if there else 'write'} {folder / PUBLIC} and "
                f"{folder / SECRET} (mode 0600)")
        click.echo(f"{verb}; dry run: nothing was written")
        return
    public, secret = make(folder, force=force)
    click.echo(f"public key: {public}\nsecret key: {secret} (mode 0600; never copy it)")
    click.echo(f"next: copy {public.name} into the broker host's keys/authorized/ as "
               f"{cfg.agent.name}.key; the broker host's own {public.name} goes to every host "
               f"as {cfg.keys.broker} (docs/DEPLOY.md)")


@keys.command()
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {public, broker, secret, authorized}, each with its path.")
def show(as_json: bool) -> None:
    """Where this host's keys are, and which are there."""
    from luzia.keys import PUBLIC, SECRET, public_key
    cfg = load_config()
    directory = Path(cfg.keys.dir)
    public, broker = directory / PUBLIC, Path(cfg.keys.broker)
    secret = directory / SECRET
    try:
        mode: int | None = stat.S_IMODE(secret.stat().st_mode)
    except OSError:
        mode = None
    authorized = Path(cfg.keys.authorized)
    names = sorted(p.stem for p in authorized.glob("*.key")) if authorized.is_dir() else []
    if as_json:
        dump({"public": {"path": str(public), "key": public_key(public) or None},
              "broker": {"path": str(broker), "key": public_key(broker) or None},
              "secret": {"path": str(secret), "present": mode is not None,
                         "mode": None if mode is None else f"{mode:04o}"},
              "authorized": {"path": str(authorized), "names": names}})
        return
    for label, path in (("public key", public), ("broker's key", broker)):
        click.echo(f"{label:13} {path}  {public_key(path) or 'missing'}")
    click.echo(f"{'secret key':13} {secret}  "
               f"{'missing' if mode is None else f'present, mode {mode:04o}'}")
    click.echo(f"{'authorized':13} {authorized}  {', '.join(names) or '(none)'}")


COMMANDS = (keys,)
