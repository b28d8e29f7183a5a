"""`luzia web`: the dashboard's address and tokens (docs/WEB.md).

    luzia web url                    the sign-in URL with your token (opens the dashboard)
    luzia web token show [--user U]  a user's token, made if they have none
    luzia web token rotate [--user U]  a new token; the old one (and its cookies) stop working
    luzia web token revoke --user U  remove a user's token

Run on the broker's host, as the user who owns the state directory (the token file is
`$LUZIA_HOME/web-tokens.json`, mode 0600): that is the operator, who hands other users
their URL.
"""

from __future__ import annotations

import json

import click

from luzia import config
from luzia.errors import NotFound
from luzia.web import tokens

USER_HELP = "The user the token is for (default: you, the operator)."


def _tokens() -> tuple[config.Config, tokens.Tokens]:
    cfg = config.load()
    return cfg, tokens.Tokens(cfg)


@click.group(help=__doc__.split("\n\n")[0])
def web() -> None:
    pass


@web.command(help="Print the dashboard's sign-in URL (with the token once; a cookie keeps it).")
@click.option("--user", "-u", default=None, help=USER_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: {url, base, user}.")
def url(user: str | None, as_json: bool) -> None:
    cfg, store = _tokens()
    user = user or tokens.operator()
    link = tokens.login_url(cfg, store.ensure(user))
    if as_json:
        click.echo(json.dumps({"url": link, "base": tokens.base_url(cfg), "user": user}))
    else:
        click.echo(link)


@web.group(help="Show, rotate or revoke a user's dashboard token.")
def token() -> None:
    pass


@token.command(help="Print a user's token, made now if they have none.")
@click.option("--user", "-u", default=None, help=USER_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: {user, token}.")
def show(user: str | None, as_json: bool) -> None:
    _, store = _tokens()
    user = user or tokens.operator()
    token = store.ensure(user)
    click.echo(json.dumps({"user": user, "token": token}) if as_json else token)


DRY_RUN_HELP = "Only say what would happen; change nothing."


@token.command(help="Replace a user's token: the old one, and every browser signed in with "
                    "it, stop working at once.")
@click.option("--user", "-u", default=None, help=USER_HELP)
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
def rotate(user: str | None, dry_run: bool) -> None:
    cfg, store = _tokens()
    user = user or tokens.operator()
    if dry_run:
        had = "replace its token (the old one would stop working)" if user in store.users() \
            else "make its first token"
        click.echo(f"{user}: would {had}; dry run: nothing was changed")
        return
    new = store.rotate(user)
    click.echo(f"new token for {user}; sign in again with:\n{tokens.login_url(cfg, new)}")


@token.command(help="Remove a user's token: they can no longer open the dashboard.")
@click.option("--user", "-u", required=True, help="The user whose token goes.")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
def revoke(user: str, dry_run: bool) -> None:
    _, store = _tokens()
    if user not in store.users():
        raise NotFound(f"{user} has no dashboard token")
    if dry_run:
        click.echo(f"{user}: would revoke its dashboard token; dry run: nothing was changed")
        return
    if not store.revoke(user):
        raise NotFound(f"{user} has no dashboard token")
    click.echo(f"{user}'s dashboard token is revoked")


COMMANDS = (web,)
