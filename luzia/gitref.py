"""Names of git things that several processes check the same way: is a `repo` a URL or a
local path, is a base a name git can resolve (and never an option), is a string a commit id.
And a project's workspace settings, checked when the config loads. Imports only errors.py:
the CLI's submit path and the job's wrapper use it."""

from __future__ import annotations

import os
import re
from typing import Any, TypeGuard

from luzia.errors import ConfigError

# Patterns as text, compiled by `re` on their first use (and cached there): the submit path
# imports this module and uses one of them, and a compile costs ~0.1 ms.
# scheme://..., or scp-like user@host:path (what `git clone` takes); anything else is a path
URL = r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|[^/:@\s]+@[^/:\s]+:)"
# a branch, tag or commit name, with git's revision suffixes (main~2, v1.0^{commit});
# never starting with "-" (it would read as an option)
REF = r"^[A-Za-z0-9_][A-Za-z0-9._/@{}^~+-]{0,255}$"
PREFIX = r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?"   # agent.branch_prefix
COMMIT = r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$"     # sha-1 or sha-256


def is_url(repo: str) -> bool:
    return bool(re.match(URL, repo))


def valid(ref: str) -> bool:
    """A name `git rev-parse` may be asked to resolve; ".." and "@{-1}"-style tricks out."""
    return bool(re.match(REF, ref)) and ".." not in ref and "//" not in ref \
        and not ref.endswith((".lock", "/", "."))


def is_commit(value: object) -> TypeGuard[str]:
    """A full commit id (sha-1 or sha-256), as git prints one."""
    return isinstance(value, str) and re.match(COMMIT, value) is not None


def short(commit: str) -> str:
    return commit[:10]


def check_prefix(prefix: str) -> None:
    """agent.branch_prefix, the start of every workspace branch's name."""
    if not re.fullmatch(PREFIX, prefix or "/"):
        raise ConfigError(f"agent.branch_prefix {prefix!r} is not usable in a branch name "
                          "(letters, digits, . _ - and /)")


def project_repo(where: str, project: Any) -> str:
    """A project's `repo` (config.Project), a local one as an absolute path, with its
    workspace settings checked: ConfigError naming the key (`where`.key) otherwise."""
    if not project.repo:
        for key in ("base", "setup", "copy"):
            if getattr(project, key):
                raise ConfigError(f"{where}.{key} needs {where}.repo (a workspace's settings)")
        return ""
    if project.base and not valid(project.base):
        raise ConfigError(f"{where}.base: {project.base!r} is not a branch, tag or commit name")
    if is_url(project.repo):
        if project.copy:
            raise ConfigError(f"{where}.copy needs a local repo path (files are copied from it), "
                             f"not the URL {project.repo}")
        return str(project.repo)
    for path in project.copy:
        if os.path.isabs(path) or ".." in path.split("/"):
            raise ConfigError(f"{where}.copy: {path!r} must be a path inside the repository")
    return os.path.abspath(os.path.expanduser(project.repo))
