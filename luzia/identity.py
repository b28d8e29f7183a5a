"""Who submitted a job, and whom they may submit as (docs/DECISIONS.md, "Who submitted").

The submitter comes from something the sender cannot forge: on the broker's host the Unix
user of the ipc connection (the kernel's SO_PEERCRED, which libzmq puts in each message's
`Peer-Address` property), or the owner of the spool file it wrote; over tcp, the user of the
client's CURVE key, named by its file in `keys/authorized/` (`alice.key`, or
`alice@laptop.key` for one of several keys of alice's). A job's `user` keeps its meaning (its
project's owner unless given), but may name someone other than the submitter or the owner
only when the submitter is an admin: the config's `admins`, the user the broker runs as,
and root.

Shared by the broker (which judges every submission) and the CLI's submit path (which
judges first when it can tell): the standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

NOT_ALLOWED = "not allowed: "     # how a rejection for the job's user begins (the CLI's exit 2)


@dataclass(frozen=True)
class Submitter:
    """Who sent a submission: a user name (None: nothing tells, e.g. tcp without CURVE)."""

    name: str | None
    admin: bool = False


def unix_user(uid: int) -> str:
    """The login name of `uid`; `uid<N>` when it has no passwd entry (containers)."""
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def operator() -> str:
    """The user this process runs as: on the broker, the fleet's operator (an admin)."""
    return unix_user(os.geteuid())


def admins(configured: Iterable[str], operator_name: str) -> frozenset[str]:
    """The config's `admins`, the operator and root: they may submit as anyone."""
    return frozenset(configured) | {operator_name, "root"}


def key_user(stem: str) -> str:
    """The user of an authorized key file `<stem>.key`: `alice` and `alice@laptop` are alice
    (the operator names the file, so a key's owner cannot pick the name)."""
    return stem.split("@", 1)[0]


def refusal(submitter: str | None, user: str, owner: str | None, admin: bool) -> str:
    """Why `submitter` may not submit a job as `user`, "" if they may: a job is its
    submitter's or its project owner's (`owner`), anyone's only for an admin."""
    if admin or user == owner or (submitter is not None and user == submitter):
        return ""
    who = submitter if submitter is not None else "a client the broker cannot identify"
    return (f"{NOT_ALLOWED}{who} may not submit as {user!r}: --user may name only yourself or "
            f"the project's owner ({owner or 'none'}) unless you are an admin (admins in the "
            "broker's config)")
